package faults

import (
	"fmt"
	"sort"
	"time"
)

// The checks of the etcd API's side of the workload: its KV operations are
// in the KV history porcupine checks (checkKV); here are the serializable
// reads' session guarantees and the etcd watches' guarantees, as etcd's
// robustness suite states them (tests/robustness/validate/watch.go).

// etcdFigures are the etcd API's figures and verdicts of one run.
type etcdFigures struct {
	ok, failed  [3]int
	longestGap  time.Duration
	serialReads int
	serialBack  int // a serializable read older than one the client read before from the same member
	serialPhan  int // a serializable read of a value not written, or at another version
	serialStale int // older than a write acknowledged before it was sent (allowed: a figure)
	serialMax   time.Duration

	truth        string // where the expected events come from: "etcd", "etcd (live)", "merged"
	truthEvents  int
	events       int // delivered
	progress     int // progress notifications
	watches      int // Watch calls
	compacted    int // of them, ended as compacted
	rereads      int
	unordered    int // an event older than one delivered before (Ordered)
	duplicates   int // an event (revision, key) delivered twice (Unique)
	split        int // a revision's events over two responses (Atomic)
	bookmark     int // an event at or below a progress notification's revision, or a progress notification going back (Bookmarkable)
	missing      int // an event of a covered revision not delivered (Reliable)
	resume       int // a watch whose first event is not the first one from its start revision (Resumable)
	differs      int // an event delivered other than it happened (value, revisions, PrevKv), or one that never happened
	prevMissing  int // a PrevKv left out (etcd does so once the previous state is compacted)
	rereadWrong  int // a re-read that is not the directory's state at its revision
	ackedMissing int // an acknowledged write with no event at its revision
}

// String is the etcd API's part of the line `make test-faults` prints.
func (e *etcdFigures) String() string {
	return fmt.Sprintf("etcd api ops %d (%d failed), longest unavailability %v | serializable reads %d: time travel %d, phantoms %d, %d stale (at most %v) | "+
		"etcd watch events %d (%s truth %d), progress %d, watches %d (%d compacted, %d re-reads): "+
		"ordered %d, unique %d, atomic %d, bookmarkable %d, reliable %d, resumable %d, differing %d, prevKV missing %d, re-reads wrong %d, acked writes missing %d",
		e.ok[0]+e.ok[1]+e.ok[2], e.failed[0]+e.failed[1]+e.failed[2], e.longestGap.Round(time.Millisecond),
		e.serialReads, e.serialBack, e.serialPhan, e.serialStale, e.serialMax.Round(time.Millisecond),
		e.events, e.truth, e.truthEvents, e.progress, e.watches, e.compacted, e.rereads,
		e.unordered, e.duplicates, e.split, e.bookmark, e.missing, e.resume, e.differs, e.prevMissing, e.rereadWrong, e.ackedMissing)
}

// violations counts what fails a run; a PrevKv left out fails it unless
// the fault compacts etcd.
func (e *etcdFigures) violations(compacts bool) int {
	n := e.serialBack + e.serialPhan + e.unordered + e.duplicates + e.split + e.bookmark + e.missing + e.resume +
		e.differs + e.rereadWrong + e.ackedMissing
	if !compacts {
		n += e.prevMissing
	}
	return n
}

// checkSerializable checks the etcd clients' serializable reads: from one
// member, a client never reads a key at a version older than it read
// before, nor a header revision older (etcd's serializable reads are a
// member's state, which only moves forward); every value read was written,
// at its version. Staleness (a newer version acknowledged before the read
// was sent) is allowed and measured.
func (r *report) checkSerializable(rec *recorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	e := &r.etcd
	type session struct {
		client int
		member uint64
	}
	revs := map[session]int64{}
	versions := map[session]map[string]int64{}
	acks := acknowledged(rec)
	for _, s := range rec.serial {
		e.serialReads++
		ses := session{s.client, s.member}
		if s.rev < revs[ses] {
			e.serialBack++
			r.note("serializable read back in time: client %d on member %x read at revision %d after %d", s.client, s.member, s.rev, revs[ses])
		}
		revs[ses] = max(revs[ses], s.rev)
		if versions[ses] == nil {
			versions[ses] = map[string]int64{}
		}
		if s.version == 0 {
			continue
		}
		if s.version < versions[ses][s.key] {
			e.serialBack++
			r.note("serializable read back in time: client %d on member %x read %s at version %d after %d", s.client, s.member, s.key, s.version, versions[ses][s.key])
		}
		versions[ses][s.key] = max(versions[ses][s.key], s.version)
		if v, ok := rec.writes[s.value]; !ok || (v != 0 && v != s.version) {
			e.serialPhan++
			r.note("serializable read of a phantom: %+v (written: %v at %d)", s, ok, v)
		}
		if first := staleSince(acks[s.key], s.version, s.call); first >= 0 {
			e.serialStale++
			e.serialMax = max(e.serialMax, time.Duration(s.call-first))
		}
	}
}

// ack is a write acknowledged at a time (recorder's), at a version.
type ack struct{ version, at int64 }

// acknowledged returns the successful writes of the history by key; rec.mu
// is held.
func acknowledged(rec *recorder) map[string][]ack {
	acks := map[string][]ack{}
	for _, op := range rec.ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		switch {
		case (in.Kind == opCreate || in.Kind == opUpdate || in.Kind == opPut || in.Kind == opCAS) && out.Outcome == outOK:
			acks[in.Key] = append(acks[in.Key], ack{out.Version, op.Return})
		}
	}
	return acks
}

// staleSince returns when the first write of a version newer than version
// was acknowledged before call, -1 if none was.
func staleSince(acks []ack, version, call int64) int64 {
	var first int64 = -1
	for _, a := range acks {
		if a.version > version && a.at < call && (first < 0 || a.at < first) {
			first = a.at
		}
	}
	return first
}

// eventTruth is the sequence of events every etcd watch of the directory
// must deliver, by revision, each revision's events in their order.
type eventTruth struct {
	source  string
	byRev   map[int64][]etcdEvent
	revs    []int64 // sorted
	reached int64   // it is known up to this revision
	// complete: from a revision before the first write of the directory,
	// so that it gives every key's state at every revision (PrevKv,
	// re-reads).
	complete bool
}

// newEventTruth orders events (a watch's, on etcd itself) into a truth,
// with each event's PrevKv derived from the events before it.
func newEventTruth(source string, events []etcdEvent, reached int64) *eventTruth {
	t := &eventTruth{source: source, byRev: map[int64][]etcdEvent{}, reached: reached, complete: true}
	state := map[string]etcdKV{}
	for _, ev := range events {
		ev.Prev = state[ev.Key]
		if ev.Delete {
			delete(state, ev.Key)
		} else {
			state[ev.Key] = ev.KV
		}
		if len(t.byRev[ev.Rev]) == 0 {
			t.revs = append(t.revs, ev.Rev)
		}
		t.byRev[ev.Rev] = append(t.byRev[ev.Rev], ev)
	}
	sort.Slice(t.revs, func(i, j int) bool { return t.revs[i] < t.revs[j] })
	return t
}

// mergedTruth is the truth where there is no etcd to ask (topod on bolt):
// every revision's events as the first watch that delivered them did; the
// others must agree (counted as differing).
func (r *report) mergedTruth(logs []*etcdWatchLog) *eventTruth {
	t := &eventTruth{source: "merged", byRev: map[int64][]etcdEvent{}}
	for _, w := range logs {
		w.mu.Lock()
		for _, op := range w.ops {
			t.reached = max(t.reached, op.reached)
			for rev, evs := range byRevision(op) {
				if prev, ok := t.byRev[rev]; ok {
					if !sameEvents(prev, evs) {
						r.etcd.differs++
						r.note("etcd watchers disagree on revision %d: %+v and %+v", rev, prev, evs)
					}
					continue
				}
				t.byRev[rev] = evs
				t.revs = append(t.revs, rev)
			}
		}
		w.mu.Unlock()
	}
	sort.Slice(t.revs, func(i, j int) bool { return t.revs[i] < t.revs[j] })
	return t
}

// byRevision groups the events a watch delivered by revision (a duplicate
// of an event already delivered left out: unique counts it).
func byRevision(op *etcdWatchOp) map[int64][]etcdEvent {
	out := map[int64][]etcdEvent{}
	type id struct {
		rev int64
		key string
	}
	seen := map[id]bool{}
	for _, resp := range op.resps {
		for _, ev := range resp.events {
			if seen[id{ev.Rev, ev.Key}] {
				continue
			}
			seen[id{ev.Rev, ev.Key}] = true
			out[ev.Rev] = append(out[ev.Rev], ev)
		}
	}
	return out
}

func sameEvents(a, b []etcdEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// stateAt is the directory's state at rev, from a complete truth.
func (t *eventTruth) stateAt(rev int64) map[string]etcdKV {
	state := map[string]etcdKV{}
	for _, r := range t.revs {
		if r > rev {
			break
		}
		for _, ev := range t.byRev[r] {
			if ev.Delete {
				delete(state, ev.Key)
			} else {
				state[ev.Key] = ev.KV
			}
		}
	}
	return state
}

// first returns the first event at or after rev.
func (t *eventTruth) first(rev int64) (etcdEvent, bool) {
	i := sort.Search(len(t.revs), func(i int) bool { return t.revs[i] >= rev })
	if i == len(t.revs) {
		return etcdEvent{}, false
	}
	return t.byRev[t.revs[i]][0], true
}

// checkEtcdWatch checks what one etcd watcher saw against the truth:
// Ordered (no event older than one delivered before, across the watcher's
// watches: each starts after what the last one reached), Unique (no
// revision and key twice), Atomic (a revision's events in one response),
// Bookmarkable (no event at or below a progress notification's revision,
// and progress never going back), Reliable (every event of the revisions a
// watch covered, from its start revision to the last it reached, delivered
// exactly as it happened, PrevKv included: etcd watches do not coalesce),
// Resumable (a watch from revision R delivers first the first event at or
// after R), and its re-reads (after a compaction) are the directory's state
// at their revision.
func (r *report) checkEtcdWatch(w *etcdWatchLog, t *eventTruth) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := &r.etcd
	type id struct {
		rev int64
		key string
	}
	seen := map[id]bool{}
	var lastEvent, lastProgress, lastRespRev int64
	for _, op := range w.ops {
		e.watches++
		if op.ended == "compacted" {
			e.compacted++
		}
		if s := op.reread; s != nil {
			e.rereads++
			if t.complete && s.rev <= t.reached {
				want := t.stateAt(s.rev)
				same := len(want) == len(s.kvs)
				for k, v := range want {
					same = same && s.kvs[k] == v
				}
				if !same {
					e.rereadWrong++
					r.note("%s: re-read at revision %d from member %x is %+v, the directory then was %+v", w.name, s.rev, s.member, s.kvs, want)
				}
			}
		}
		for _, resp := range op.resps {
			if resp.progress {
				e.progress++
				// Never back: not below a revision the watcher had
				// reached, nor below its watch's start (etcd answers
				// no progress request for a watch that starts after
				// the member's revision).
				if resp.rev < max(lastProgress, lastEvent, op.start-1) {
					e.bookmark++
					r.note("%s: progress notification at revision %d in a watch from %d (last event %d, last progress %d)", w.name, resp.rev, op.start, lastEvent, lastProgress)
				}
				lastProgress = max(lastProgress, resp.rev)
				continue
			}
			if len(resp.events) == 0 {
				continue
			}
			if resp.events[0].Rev == lastRespRev {
				e.split++
				r.note("%s: revision %d's events split over two responses", w.name, lastRespRev)
			}
			lastRespRev = resp.events[len(resp.events)-1].Rev
			for _, ev := range resp.events {
				e.events++
				if ev.Rev < lastEvent {
					e.unordered++
					r.note("%s: event %+v after revision %d", w.name, ev, lastEvent)
				}
				if ev.Rev <= lastProgress {
					e.bookmark++
					r.note("%s: event %+v after a progress notification at revision %d", w.name, ev, lastProgress)
				}
				if seen[id{ev.Rev, ev.Key}] {
					e.duplicates++
					r.note("%s: event %+v delivered twice", w.name, ev)
				}
				seen[id{ev.Rev, ev.Key}] = true
				lastEvent = max(lastEvent, ev.Rev)
			}
		}
		r.compareWatch(w.name, op, t)
	}
}

// compareWatch compares the events op delivered with the truth's, over the
// revisions it covered (its start to what it reached, as far as the truth
// is known).
func (r *report) compareWatch(name string, op *etcdWatchOp, t *eventTruth) {
	e := &r.etcd
	got := byRevision(op)
	hi := min(op.reached, t.reached)
	if len(got) > 0 {
		var firstGot etcdEvent
		for _, resp := range op.resps {
			if len(resp.events) > 0 {
				firstGot = resp.events[0]
				break
			}
		}
		if want, ok := t.first(op.start); firstGot.Rev <= t.reached && (!ok || want.Rev != firstGot.Rev || want.Key != firstGot.Key) {
			e.resume++
			r.note("%s: watch from revision %d delivered first %+v, the first event from there is %+v", name, op.start, firstGot, want)
		}
	}
	revs := map[int64]bool{}
	for rev := range got {
		if rev <= hi {
			revs[rev] = true
		}
	}
	i := sort.Search(len(t.revs), func(i int) bool { return t.revs[i] >= op.start })
	for ; i < len(t.revs) && t.revs[i] <= hi; i++ {
		revs[t.revs[i]] = true
	}
	for rev := range revs {
		want, have := t.byRev[rev], got[rev]
		for j := range max(len(want), len(have)) {
			switch {
			case j >= len(have):
				e.missing++
				r.note("%s: watch from revision %d (reached %d) missed %+v", name, op.start, op.reached, want[j])
			case j >= len(want):
				e.differs++
				r.note("%s: watch from revision %d delivered %+v, which did not happen (revision %d: %+v)", name, op.start, have[j], rev, want)
			case have[j] == want[j]:
			case !have[j].Prev.Present && want[j].Prev.Present && sameBut(have[j], want[j]):
				e.prevMissing++
				r.note("%s: watch from revision %d delivered %+v without its PrevKv %+v", name, op.start, have[j], want[j].Prev)
			default:
				e.differs++
				r.note("%s: watch from revision %d delivered %+v, etcd's event is %+v", name, op.start, have[j], want[j])
			}
		}
	}
}

// sameBut says whether a and b differ at most by their PrevKv.
func sameBut(a, b etcdEvent) bool {
	a.Prev, b.Prev = etcdKV{}, etcdKV{}
	return a == b
}

// checkAcked checks that every write acknowledged with its revision (the
// plugin's creates and updates, the etcd clients' puts, compare-and-sets
// and deletes) is in the truth, as written: an answer of a revision at
// which nothing of the kind happened is a lie. With a merged truth, only
// the revisions some watch covered are checked.
func (r *report) checkAcked(rec *recorder, t *eventTruth, logs []*etcdWatchLog) {
	covered := func(rev int64) bool {
		if t.source != "merged" {
			return rev <= t.reached
		}
		for _, w := range logs {
			w.mu.Lock()
			for _, op := range w.ops {
				if op.start <= rev && rev <= op.reached {
					w.mu.Unlock()
					return true
				}
			}
			w.mu.Unlock()
		}
		return false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, op := range rec.ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if out.Outcome != outOK || out.Version == 0 || !covered(out.Version) {
			continue
		}
		var found bool
		switch in.Kind {
		case opCreate, opUpdate, opPut, opCAS:
			for _, ev := range t.byRev[out.Version] {
				found = found || (ev.Key == in.Key && !ev.Delete && valueOf([]byte(ev.KV.Value)) == in.Value)
			}
		case opDel:
			for _, ev := range t.byRev[out.Version] {
				found = found || (ev.Key == in.Key && ev.Delete)
			}
		default:
			continue
		}
		if !found {
			r.etcd.ackedMissing++
			r.note("acknowledged %s: no such event at revision %d (%s truth: %+v)", kvModel.DescribeOperation(in, out), out.Version, t.source, t.byRev[out.Version])
		}
	}
}
