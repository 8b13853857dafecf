package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// report is one run's figures and verdicts.
type report struct {
	name           string
	ok, failed     [3]int
	phase          time.Duration
	linearizable   porcupine.CheckResult
	kvOps          int
	visualization  string // where the history is drawn when it is not linearizable
	watchEvents    int
	duplicates     int
	reorders       int
	phantoms       int // events of a value no write wrote, or at another version
	gaps           int // keys whose last state never reached the watcher
	watchRestarts  int
	timeTravel     int // a client saw a key at a version older than one it saw before
	lockActs       int
	lockWrites     int
	lockOverlaps   int // acquisitions whose holding intervals overlap
	lockUnsafe     int // register writes out of token order, repeated tokens, counts skipped beyond the unanswered writes
	fenced         int
	casFailed      int
	lockUnanswered int // writes whose answer was lost (lockAction.unanswered)
	lockApplied    int // of them, how many a later write's count shows applied
	longestGap     time.Duration
	cachedReads    int           // default reads checked
	staleReads     int           // default reads older than a write acknowledged before they were sent
	maxStaleness   time.Duration // how long before such a read the newer write was acknowledged
	faultNote      string
	detail         string   // the operations on a key whose history is not linearizable
	anomalies      []string // the first watch anomalies found
	etcdKVOps      int      // of kvOps, the etcd API's
	etcd           etcdFigures
	compacts       bool // the fault compacts etcd: a PrevKv may be left out
	// stock: the clients are stock etcd2topo, whose WatchRecursive gives
	// every initial value the first key's ModRevision as its version and
	// starts its watch at the listing's revision, not after it, so the
	// last change listed comes again as an event (vitess
	// go/vt/topo/etcd2topo/watch.go). Those are counted here, not as
	// phantoms or duplicates.
	stock                bool
	stockInitialVersions int
	stockRedelivered     int
}

// String is the line `make test-faults` prints per fault.
func (r *report) String() string {
	tput := func(i int) string { return fmt.Sprintf("%.0f", float64(r.ok[i])/r.phase.Seconds()) }
	quirks := ""
	if r.stock {
		quirks = fmt.Sprintf(" (stock etcd2topo: %d initial versions not the key's, %d listed changes delivered again)", r.stockInitialVersions, r.stockRedelivered)
	}
	return fmt.Sprintf("%-22s ops %d (%d failed) | ops/s before %s during %s after %s | linearizable: %s (%d kv ops, %d of them etcd's) | "+
		"watch events %d: duplicates %d, reorders %d, phantoms %d, gaps %d, restarts %d%s | time travel %d | "+
		"locks %d (%d writes, %d fenced, %d cas refused, %d unanswered of which %d applied): overlaps %d, unsafe %d | longest unavailability %v | "+
		"default reads %d, %d stale (at most %v) | %s",
		r.name, r.ok[0]+r.ok[1]+r.ok[2], r.failed[0]+r.failed[1]+r.failed[2], tput(0), tput(1), tput(2),
		verdict(r.linearizable), r.kvOps, r.etcdKVOps, r.watchEvents, r.duplicates, r.reorders, r.phantoms, r.gaps, r.watchRestarts, quirks,
		r.timeTravel, r.lockActs, r.lockWrites, r.fenced, r.casFailed, r.lockUnanswered, r.lockApplied, r.lockOverlaps, r.lockUnsafe, r.longestGap.Round(time.Millisecond),
		r.cachedReads, r.staleReads, r.maxStaleness.Round(time.Millisecond), &r.etcd)
}

func verdict(c porcupine.CheckResult) string {
	switch c {
	case porcupine.Ok:
		return "ok"
	case porcupine.Illegal:
		return "VIOLATED"
	}
	return "unknown (checker timed out)"
}

// checkKV checks the KV history for linearizability. A history that is not
// is drawn to an HTML file named after the run, in the system's temporary
// directory.
func (r *report) checkKV(rec *recorder, timeout time.Duration) {
	rec.mu.Lock()
	ops := append([]porcupine.Operation(nil), rec.ops...)
	rec.mu.Unlock()
	r.kvOps = len(ops)
	for _, op := range ops {
		if strings.HasPrefix(op.Input.(kvInput).Via, "etcd") {
			r.etcdKVOps++
		}
	}
	model := kvModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	r.linearizable = res
	if res == porcupine.Illegal {
		r.detail = illegalKey(ops)
		file := filepath.Join(os.TempDir(), "faults-"+r.name+".html")
		if f, err := os.Create(file); err == nil {
			if porcupine.Visualize(model, info, f) == nil {
				r.visualization = file
			}
			f.Close()
		}
	}
}

// checkClients checks each client's view: no key seen at a version older
// than one the client saw before (no time travel, which also covers
// read-your-writes), and every listed value written, at its version.
func (r *report) checkClients(rec *recorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, obs := range rec.seen {
		last := map[string]int64{}
		for _, o := range obs {
			if o.version < last[o.key] {
				r.timeTravel++
			}
			last[o.key] = max(last[o.key], o.version)
			if o.list {
				if v, ok := rec.writes[o.value]; !ok || (v != 0 && v != o.version) {
					r.phantoms++
				}
			}
		}
	}
}

// checkStaleness measures the plugin's default reads: one is stale when a
// write of a newer version of its key was acknowledged before it was sent.
// Default reads are linearizable now (the mirror answers once it has
// reached the backend's current revision): a stale one also fails the
// linearizability check; this says by how much.
func (r *report) checkStaleness(rec *recorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	acks := acknowledged(rec)
	r.cachedReads = len(rec.reads)
	for _, rd := range rec.reads {
		if first := staleSince(acks[rd.key], rd.version, rd.call); first >= 0 {
			r.staleReads++
			r.maxStaleness = max(r.maxStaleness, time.Duration(rd.call-first))
		}
	}
}

// checkWatch checks what a watcher saw: per key, versions only grow within
// a watch (an equal one is a duplicate, a smaller one a reorder); a new
// watch after a restart starts no older than the last one ended; every
// value delivered was written, at the version delivered; and, after the
// workload, the watcher's state is the store's (final: key -> event).
// With r.stock, an initial value's version is taken from its write, and
// a watch's first event equal to what it listed is stock's re-delivery.
func (r *report) checkWatch(rec *recorder, w *watchLog, final map[string]watchEvent) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	r.watchRestarts += w.restarts
	last := map[string]int64{} // across watches
	lastWatch := map[string]int{}
	listed := map[string]bool{} // the key's last event was its watch's initial value
	for _, ev := range w.events {
		r.watchEvents++
		if ev.deleted {
			listed[ev.key] = false
			continue
		}
		written, ok := rec.writes[ev.value]
		if r.stock && ev.initial && ok && written != 0 && written != ev.version {
			r.stockInitialVersions++
			ev.version = written
		}
		prev := last[ev.key]
		switch {
		case ev.version > prev:
		case ev.initial && ev.watch != lastWatch[ev.key] && ev.version == prev:
			// A new watch's initial state may repeat what the last one saw.
		case r.stock && !ev.initial && listed[ev.key] && ev.watch == lastWatch[ev.key] && ev.version == prev:
			r.stockRedelivered++
		case ev.version == prev:
			r.duplicates++
			r.note("duplicate: %+v after version %d", ev, prev)
		default:
			r.reorders++
			r.note("reorder: %+v after version %d", ev, prev)
		}
		last[ev.key], lastWatch[ev.key], listed[ev.key] = max(prev, ev.version), ev.watch, ev.initial
		if !ok || (written != 0 && written != ev.version) {
			r.phantoms++
			r.note("phantom: %+v (written: %v at %d)", ev, ok, written)
		}
	}
	keys := map[string]bool{}
	for k := range final {
		keys[k] = true
	}
	for k := range w.state {
		keys[k] = true
	}
	for k := range keys {
		got, want := w.state[k], final[k]
		if got.value != want.value || (got.version != want.version && !(r.stock && got.initial)) {
			r.gaps++
			r.note("gap: %s is %+v, the watcher has %+v", k, want, got)
		}
	}
}

// note keeps the first anomalies found, for the test's failure message.
func (r *report) note(format string, args ...any) {
	if len(r.anomalies) < 10 {
		r.anomalies = append(r.anomalies, fmt.Sprintf(format, args...))
	}
}

// checkLocks checks the lock actions: ordered by the register's versions,
// the successful writes carry tokens that never go down, no token twice,
// and counts that go up by one (no holder acted on a stale read). A count
// skipped is explained only by a write whose answer was lost (unanswered)
// that tried exactly that count, with a token between the writes around
// it: it may have been applied unanswered. Counts acquisitions whose
// holding intervals overlap.
func (r *report) checkLocks(l *lockLog) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.lockActs = len(l.actions)
	var writes []lockAction
	lost := map[int][]int64{} // unanswered writes' tokens, by the count they tried
	for _, a := range l.actions {
		if a.wrote {
			writes = append(writes, a)
		}
		if a.fenced {
			r.fenced++
		}
		if a.casFailed {
			r.casFailed++
		}
		if a.unanswered {
			r.lockUnanswered++
			lost[a.count] = append(lost[a.count], a.token)
		}
	}
	// explain uses up an unanswered write that tried count with a token
	// in [lo, hi] (any token when unfenced).
	explain := func(count int, lo, hi int64, fenced bool) bool {
		for i, tok := range lost[count] {
			if !fenced || (tok >= lo && tok <= hi) {
				lost[count] = append(lost[count][:i], lost[count][i+1:]...)
				return true
			}
		}
		return false
	}
	r.lockWrites = len(writes)
	sort.Slice(writes, func(i, j int) bool { return writes[i].regVersion < writes[j].regVersion })
	for i := 1; i < len(writes); i++ {
		prev, w := writes[i-1], writes[i]
		fenced := w.token > 0 // etcd2's locks give no token
		unexplained := 0
		for c := prev.count + 1; c < w.count; c++ {
			if explain(c, prev.token, w.token, fenced) {
				r.lockApplied++
			} else {
				unexplained++
			}
		}
		if (fenced && w.token <= prev.token) || w.count <= prev.count || unexplained != 0 {
			r.lockUnsafe++
			r.note("unsafe lock write: client %d wrote token %d count %d at version %d after client %d's token %d count %d at version %d (%d skipped counts no unanswered write tried)",
				w.client, w.token, w.count, w.regVersion, prev.client, prev.token, prev.count, prev.regVersion, unexplained)
		}
	}
	acts := append([]lockAction(nil), l.actions...)
	sort.Slice(acts, func(i, j int) bool { return acts[i].acquired < acts[j].acquired })
	var held int64 // the latest end of the intervals so far
	for i, a := range acts {
		if i > 0 && a.acquired < held {
			r.lockOverlaps++
		}
		held = max(held, a.unlock)
	}
}

// illegalKey finds a key whose history alone is not linearizable and
// describes its operations in call order.
func illegalKey(ops []porcupine.Operation) string {
	for _, part := range kvModel.Partition(ops) {
		model := kvModel
		model.Partition = nil
		if porcupine.CheckOperations(model.ToModel(), part) {
			continue
		}
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		var b strings.Builder
		for _, op := range part {
			ret := fmt.Sprint(op.Return)
			if op.Return == 1<<62 {
				ret = "never"
			}
			fmt.Fprintf(&b, "\n  client %d [%d, %s] %s", op.ClientId, op.Call, ret, kvModel.DescribeOperation(op.Input, op.Output))
		}
		return b.String()
	}
	return ""
}
