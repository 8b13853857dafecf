package etcdapi

import (
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// Journal is the window of a mirror's recent events that etcd watches are
// served from: every event of every revision, in order, none coalesced,
// bounded by count and bytes. A watch from a revision older than the
// window is canceled as etcd cancels a watch from a compacted revision
// (CompactRevision set), and its client re-reads and watches again.
//
// A watcher is a small struct in an index by key (as etcd's
// watcherGroup): an event costs only the watchers of its key. It holds
// no queue: a watcher with events pending has the revision of the first
// one, and its stream reads the window from there when it sends (take).
// A stream too slow to keep up falls behind the window and its watchers
// are canceled as compacted, rather than queueing without bound.
type Journal struct {
	maxEvents int
	maxBytes  int64

	mu     sync.Mutex
	events []journalEvent // events[off:] are held, in revision order
	off    int
	bytes  int64
	// compacted: the events of revisions at or below it are not held; a
	// watch must start after it.
	compacted int64
	rev       int64 // the mirror's revision
	index     watcherIndex
	evicted   int64 // events dropped from the window, for metrics
}

type journalEvent struct {
	kvmirror.Change
	size int64
	at   time.Time // when it reached the window
}

// NewJournal returns a journal holding at most maxEvents events and
// maxBytes bytes of keys and values.
func NewJournal(maxEvents int, maxBytes int64) *Journal {
	return &Journal{maxEvents: max(maxEvents, 1), maxBytes: max(maxBytes, 1), index: newWatcherIndex()}
}

var _ kvmirror.Journal = (*Journal)(nil)

// Reset is part of kvmirror.Journal: the mirror listed again at rev, so
// the events before rev are unknown and every watcher may have missed
// some: each is canceled as compacted.
func (j *Journal) Reset(rev int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events, j.off, j.bytes = nil, 0, 0
	j.compacted, j.rev = rev, rev
	j.index.all(func(w *watcher) {
		w.lost = true
		w.stream.wake(w)
	})
}

// Append is part of kvmirror.Journal.
func (j *Journal) Append(changes []kvmirror.Change, rev int64) {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range changes {
		r := c.KV.ModRevision
		if r <= j.compacted {
			// The events of a listing's own revision, which the mirror
			// watches from: they make a watch from that revision
			// servable.
			if r != j.compacted || (len(j.events) > j.off && j.events[len(j.events)-1].KV.ModRevision != r) {
				continue
			}
		}
		e := journalEvent{Change: c, size: int64(len(c.KV.Key) + len(c.KV.Value) + len(c.Prev.Value) + 128), at: now}
		j.events = append(j.events, e)
		j.bytes += e.size
		j.index.each(c.KV.Key, func(w *watcher) {
			if r < w.next {
				return
			}
			w.last = r
			if !w.pending {
				w.pending, w.from = true, r
				w.stream.wake(w)
			}
		})
	}
	if len(j.events) > j.off && j.events[j.off].KV.ModRevision <= j.compacted {
		j.compacted = j.events[j.off].KV.ModRevision - 1
	}
	j.rev = max(j.rev, rev)
	j.evict()
}

// evict drops the oldest revisions while the window is over its bounds;
// a revision's events go together.
func (j *Journal) evict() {
	for len(j.events) > j.off && (len(j.events)-j.off > j.maxEvents || j.bytes > j.maxBytes) {
		r := j.events[j.off].KV.ModRevision
		for len(j.events) > j.off && j.events[j.off].KV.ModRevision == r {
			j.bytes -= j.events[j.off].size
			j.events[j.off] = journalEvent{}
			j.off++
			j.evicted++
		}
		j.compacted = r
	}
	if j.off > len(j.events)/2 && j.off > 1024 {
		j.events = append([]journalEvent(nil), j.events[j.off:]...)
		j.off = 0
	}
}

// Stats is a snapshot of a journal, for metrics.
type Stats struct {
	Events   int
	Bytes    int64
	Oldest   int64 // the oldest revision a watch can start from
	Watchers int
	Evicted  int64
}

// Stats returns the journal's size.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Stats{Events: len(j.events) - j.off, Bytes: j.bytes, Oldest: j.compacted + 1, Watchers: j.index.n, Evicted: j.evicted}
}

// Rev returns the revision the journal has reached.
func (j *Journal) Rev() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rev
}

// add registers w to start at start (0: after the current revision). It
// returns false if start is older than the window: w is then not added.
func (j *Journal) add(w *watcher, start int64) (ok bool, compactRev, rev int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if start == 0 {
		start = j.rev + 1
	}
	if start <= j.compacted {
		return false, j.compacted + 1, j.rev
	}
	w.next = start
	if start <= j.rev {
		// Catching up: which held events are its own is not known.
		w.pending, w.from, w.last = true, start, math.MaxInt64
		w.stream.wake(w)
	}
	j.index.add(w)
	return true, 0, j.rev
}

// remove takes w out; it sends nothing more.
func (j *Journal) remove(w *watcher) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !w.removed {
		w.removed = true
		j.index.remove(w)
	}
}

// rewind moves w back to revision from, so that the next take returns
// its events from there again (w could not send them). It finds them as a
// watch catching up does; if the window has moved past from, w is lost.
func (j *Journal) rewind(w *watcher, from int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if w.removed {
		return
	}
	w.next, w.from, w.pending, w.last = from, from, true, math.MaxInt64
}

// batch is what take found for a watcher.
type batch struct {
	events []journalEvent
	// rev is the revision the watcher has then seen everything up to.
	rev int64
	// compactRev, if set: the watcher lost events (the window moved past
	// them) and must be canceled.
	compactRev int64
	more       bool
}

// take returns w's pending events from the window, up to about maxBytes
// (whole revisions), and moves w past them.
func (j *Journal) take(w *watcher, maxBytes int64) batch {
	j.mu.Lock()
	defer j.mu.Unlock()
	if w.removed {
		return batch{}
	}
	if w.lost || (w.pending && w.from <= j.compacted) {
		return batch{compactRev: j.compacted + 1}
	}
	if !w.pending {
		return batch{rev: j.rev}
	}
	live := j.events[j.off:]
	i := sort.Search(len(live), func(i int) bool { return live[i].KV.ModRevision >= w.from })
	var b batch
	var size int64
	// No event after w.last is w's: Append marks every one.
	for ; i < len(live) && live[i].KV.ModRevision <= w.last; i++ {
		e := &live[i]
		r := e.KV.ModRevision
		if size >= maxBytes && len(b.events) > 0 && r != b.events[len(b.events)-1].KV.ModRevision {
			b.more = true
			break
		}
		if r < w.next || !w.matches(e.KV.Key) || w.filtered(e.Type) {
			continue
		}
		b.events = append(b.events, *e)
		size += e.size
	}
	if b.more {
		b.rev = b.events[len(b.events)-1].KV.ModRevision
		w.next, w.from = b.rev+1, b.rev+1
	} else {
		b.rev = j.rev
		w.next, w.pending, w.last = j.rev+1, false, 0
	}
	return b
}

// synced reports whether none of ws has events pending nor starts past
// the current revision plus one, and if so moves them all to the current
// revision, which it returns (a progress notification may then say they
// have seen everything up to it). A watch from a revision the journal has
// not reached gets no notification, as etcd's progressIfSync gives none:
// one below its start would take its client's resume point back
// (clientv3 resumes from a notification's revision plus one).
func (j *Journal) synced(ws []*watcher) (int64, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, w := range ws {
		if !w.removed && (w.pending || w.lost || w.next > j.rev+1) {
			return 0, false
		}
	}
	for _, w := range ws {
		w.next = max(w.next, j.rev+1)
	}
	return j.rev, true
}

// watcherIndex finds the watchers of a key: exact keys in a map;
// prefixes in a map probed with the key's prefixes of each length some
// watcher uses (so the cost is the number of distinct prefix lengths, not
// of watchers); any other range in a list scanned per event.
type watcherIndex struct {
	keys     map[string]map[*watcher]struct{}
	prefixes map[string]map[*watcher]struct{}
	lengths  map[int]int // prefix length → number of prefixes of it
	ranges   map[*watcher]struct{}
	n        int
}

func newWatcherIndex() watcherIndex {
	return watcherIndex{
		keys: map[string]map[*watcher]struct{}{}, prefixes: map[string]map[*watcher]struct{}{},
		lengths: map[int]int{}, ranges: map[*watcher]struct{}{},
	}
}

func (x *watcherIndex) add(w *watcher) {
	x.n++
	switch {
	case w.end == "":
		addTo(x.keys, w.key, w)
	case w.isPrefix():
		if addTo(x.prefixes, w.key, w) {
			x.lengths[len(w.key)]++
		}
	default:
		x.ranges[w] = struct{}{}
	}
}

func (x *watcherIndex) remove(w *watcher) {
	x.n--
	switch {
	case w.end == "":
		removeFrom(x.keys, w.key, w)
	case w.isPrefix():
		if removeFrom(x.prefixes, w.key, w) {
			if x.lengths[len(w.key)]--; x.lengths[len(w.key)] == 0 {
				delete(x.lengths, len(w.key))
			}
		}
	default:
		delete(x.ranges, w)
	}
}

// addTo adds w to m[key], reporting whether that set is new.
func addTo(m map[string]map[*watcher]struct{}, key string, w *watcher) bool {
	set, ok := m[key]
	if !ok {
		set = map[*watcher]struct{}{}
		m[key] = set
	}
	set[w] = struct{}{}
	return !ok
}

// removeFrom removes w from m[key], reporting whether that set is gone.
func removeFrom(m map[string]map[*watcher]struct{}, key string, w *watcher) bool {
	set := m[key]
	delete(set, w)
	if len(set) == 0 {
		delete(m, key)
		return true
	}
	return false
}

func (x *watcherIndex) each(key string, fn func(*watcher)) {
	for w := range x.keys[key] {
		fn(w)
	}
	for l := range x.lengths {
		if l <= len(key) {
			for w := range x.prefixes[key[:l]] {
				fn(w)
			}
		}
	}
	for w := range x.ranges {
		if w.matches(key) {
			fn(w)
		}
	}
}

func (x *watcherIndex) all(fn func(*watcher)) {
	for _, m := range []map[string]map[*watcher]struct{}{x.keys, x.prefixes} {
		for _, set := range m {
			for w := range set {
				fn(w)
			}
		}
	}
	for w := range x.ranges {
		fn(w)
	}
}

// matches says whether key is in w's range.
func (w *watcher) matches(key string) bool {
	switch w.end {
	case "":
		return key == w.key
	case "\x00":
		return key >= w.key
	}
	return key >= w.key && strings.Compare(key, w.end) < 0
}

// isPrefix says whether w's range is every key starting with w.key.
func (w *watcher) isPrefix() bool {
	return w.key != "" && w.end == kvmirror.PrefixEnd(w.key)
}

// filtered says whether w's filters drop events of type t.
func (w *watcher) filtered(t kv.EventType) bool {
	return (t == kv.Put && w.noPut) || (t == kv.Delete && w.noDelete)
}
