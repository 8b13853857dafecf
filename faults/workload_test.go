package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/srvvschema"
)

// The workload's files, under the connections' root.
const (
	kvDir    = "kv"   // the keys of the KV clients
	lockDir  = "lock" // the locked directory
	register = "lock/register"
	numKeys  = 6 // a small key set, so that clients contend
	largeKey = 0 // key k0's values are larger than inlineLimit: blobs
)

// opTimeout bounds each operation of the workload.
const opTimeout = 5 * time.Second

// recorder collects what the clients did. Times are nanoseconds since
// start, on the monotonic clock.
type recorder struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
	// observations per client, in its order: what it read or wrote (for
	// the no-time-travel check) — key, version, value.
	seen map[int][]observation
	// writes by value: the version each successful or possibly applied
	// write of that value got (0 if unknown).
	writes map[string]int64
	// reads are the plugin's default reads that found their key (for the
	// staleness figure).
	reads []timedObservation
	// serial are the etcd clients' serializable reads.
	serial []serialRead
	// ok and failed count the plugin's operations (of every kind) by
	// phase.
	ok, failed [3]int
	// availability: the longest time one plugin KV client went without a
	// success.
	lastOK     map[int]time.Duration
	longestGap time.Duration
	// The same for the etcd API's KV clients.
	etcdOK, etcdFailed [3]int
	etcdLastOK         map[int]time.Duration
	etcdLongestGap     time.Duration
	phase              atomic.Int32
}

// observation is a client's view of one key at one moment.
type observation struct {
	key     string
	version int64 // 0: absent
	value   string
	list    bool // from a List
}

// timedObservation is an observation and when its read was called.
type timedObservation struct {
	call int64
	observation
}

func newRecorder() *recorder {
	return &recorder{start: time.Now(), seen: map[int][]observation{}, writes: map[string]int64{}, lastOK: map[int]time.Duration{},
		etcdLastOK: map[int]time.Duration{}}
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

// done records the end of one of a KV client's operations, for the phase
// figures and the availability: the longest time any one KV client went
// without a success. (Lock clients wait for each other: tally.)
func (r *recorder) done(client int, ok bool) {
	r.tally(ok)
	if !ok {
		return
	}
	now := time.Since(r.start)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.longestGap = max(r.longestGap, now-r.lastOK[client])
	r.lastOK[client] = now
}

// tally counts an operation in its phase.
func (r *recorder) tally(ok bool) {
	ph := r.phase.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.ok[ph]++
	} else {
		r.failed[ph]++
	}
}

// kv records one KV operation. Reads that fail say nothing and are left
// out; writes that fail with an error other than the expected ones may
// have happened: porcupine gets them with no return time (they may take
// effect at any moment after their call).
func (r *recorder) kv(client int, in kvInput, out kvOutput, call, ret int64) {
	if in.Kind == opGet && out.Outcome == outUnknown {
		return
	}
	if out.Outcome == outUnknown {
		ret = 1 << 62
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
	writes := in.Kind == opCreate || in.Kind == opUpdate || in.Kind == opPut || in.Kind == opCAS
	switch {
	case in.Kind == opGet && out.Outcome == outOK:
		r.seen[client] = append(r.seen[client], observation{key: in.Key, version: out.Version, value: out.Value})
	case writes && out.Outcome == outOK:
		r.writes[in.Value] = out.Version
		r.seen[client] = append(r.seen[client], observation{key: in.Key, version: out.Version, value: in.Value})
	case writes && out.Outcome == outUnknown:
		if _, ok := r.writes[in.Value]; !ok {
			r.writes[in.Value] = 0
		}
	}
}

// cachedRead records, for the staleness figure, a default read that found
// the key (kv records it for the other checks).
func (r *recorder) cachedRead(call int64, o observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = append(r.reads, timedObservation{call: call, observation: o})
}

// list records what a List returned.
func (r *recorder) list(client int, kvs []observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[client] = append(r.seen[client], kvs...)
}

// outcomeOf classifies a topo error.
func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return outOK
	case topo.IsErrType(err, topo.NoNode):
		return outNoNode
	case topo.IsErrType(err, topo.NodeExists):
		return outExists
	case topo.IsErrType(err, topo.BadVersion):
		return outBadVersion
	}
	return outUnknown
}

// versionNumber is the revision of a version, topod's or etcd2's (both
// print as the decimal revision); 0 for none.
func versionNumber(v topo.Version) int64 {
	if v == nil {
		return 0
	}
	n, _ := strconv.ParseInt(v.String(), 10, 64)
	return n
}

// payload is the contents written for value on key kN: value itself,
// padded past the inline limit on the large key. valueOf reverses it.
func payload(key int, value string) []byte {
	return payloadFor(fmt.Sprintf("%s/k%d", kvDir, key), value)
}

// payloadFor is the contents written for value on key (kv/...): padded
// past the inline limit on the large keys, kv/k0 (which the plugin's
// clients write too) and the etcd clients' own kv/e0.
func payloadFor(key, value string) []byte {
	if key == fmt.Sprintf("%s/k%d", kvDir, largeKey) || key == fmt.Sprintf("%s/e%d", kvDir, largeKey) {
		return []byte(value + "|" + strings.Repeat("x", 2*inlineLimit+rand.IntN(inlineLimit)))
	}
	return []byte(value)
}

// keyOf is the workload's name (kv/kN) of a path the plugin reports, with
// or without the root.
func keyOf(p string) string {
	return kvDir + "/" + path.Base(p)
}

func valueOf(contents []byte) string {
	v, _, _ := strings.Cut(string(contents), "|")
	return v
}

// kvClient runs KV operations until ctx ends.
func kvClient(ctx context.Context, r *recorder, id int, conn topo.Conn, version func(int64) topo.Version) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	versions := map[int]int64{} // the last version this client saw of each key
	for seq := 0; ctx.Err() == nil; seq++ {
		k := rng.IntN(numKeys)
		key := fmt.Sprintf("%s/k%d", kvDir, k)
		value := fmt.Sprintf("c%d-%d", id, seq)
		opCtx, cancel := context.WithTimeout(context.Background(), opTimeout)
		call := r.now()
		var in kvInput
		var out kvOutput
		switch p := rng.IntN(100); {
		case p < 20:
			// A linearizable read (what vschemad's cell updates use).
			in = kvInput{Kind: opGet, Key: key, Via: "plugin fresh"}
			contents, v, err := conn.Get(srvvschema.WithFreshReads(opCtx), key)
			out = kvOutput{Outcome: outcomeOf(err)}
			if err == nil {
				out.Value, out.Version = valueOf(contents), versionNumber(v)
				versions[k] = out.Version
			}
		case p < 35:
			// A default read, which a replica answers from its mirror once
			// the mirror has reached the backend's current revision:
			// linearizable too (porcupine checks it), and measured for
			// staleness (checkStaleness).
			in = kvInput{Kind: opGet, Key: key, Via: "plugin default"}
			contents, v, err := conn.Get(opCtx, key)
			out = kvOutput{Outcome: outcomeOf(err)}
			if err == nil {
				out.Value, out.Version = valueOf(contents), versionNumber(v)
				versions[k] = out.Version
				r.cachedRead(call, observation{key: key, version: out.Version, value: out.Value})
			}
		case p < 50:
			in = kvInput{Kind: opCreate, Key: key, Value: value, Via: "plugin"}
			v, err := conn.Create(opCtx, key, payload(k, value))
			out = kvOutput{Outcome: outcomeOf(err), Version: versionNumber(v)}
			if err == nil {
				versions[k] = out.Version
			}
		case p < 85:
			in = kvInput{Kind: opUpdate, Key: key, Value: value, Version: versions[k], Via: "plugin"}
			if in.Version == 0 {
				in.Version = 1 // never written at 1: a bad version, or no node
			}
			v, err := conn.Update(opCtx, key, payload(k, value), version(in.Version))
			out = kvOutput{Outcome: outcomeOf(err), Version: versionNumber(v)}
			if err == nil {
				versions[k] = out.Version
			}
		case p < 93:
			in = kvInput{Kind: opDelete, Key: key, Version: max(versions[k], 1), Via: "plugin"}
			out = kvOutput{Outcome: outcomeOf(conn.Delete(opCtx, key, version(in.Version)))}
		default:
			kvs, err := conn.List(opCtx, kvDir+"/")
			cancel()
			r.done(id, err == nil || topo.IsErrType(err, topo.NoNode))
			if err == nil {
				obs := make([]observation, 0, len(kvs))
				for _, e := range kvs {
					obs = append(obs, observation{key: keyOf(string(e.Key)), version: versionNumber(e.Version), value: valueOf(e.Value), list: true})
				}
				r.list(id, obs)
			}
			continue
		}
		cancel()
		r.kv(id, in, out, call, r.now())
		r.done(id, out.Outcome != outUnknown)
	}
}

// lockAction is one acquisition of the lock and what its holder did.
type lockAction struct {
	client           int
	token            int64 // the lock's revision
	acquired, unlock int64 // times
	// wrote: the holder's write of the register succeeded, at version
	// regVersion, with count. An unanswered write's count is the one it
	// tried.
	wrote      bool
	regVersion int64
	count      int
	// fenced: the register held a larger token, so the holder did not
	// write. casFailed: its conditional write failed (someone wrote
	// between its read and its write: the lock did not exclude them).
	// unanswered: its write failed otherwise (a timeout, a lost
	// connection), so it may have been applied with no answer.
	fenced, casFailed, unanswered bool
}

// lockLog collects the lock actions.
type lockLog struct {
	mu      sync.Mutex
	actions []lockAction
	errors  int
}

// lockClient takes the lock, reads the register, and writes it again with
// its token and the count plus one, until ctx ends. A holder that finds a
// larger token in the register does not write (fencing).
func lockClient(ctx context.Context, r *recorder, l *lockLog, id int, conn topo.Conn) {
	for ctx.Err() == nil {
		opCtx, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
		ld, err := conn.LockWithTTL(opCtx, lockDir, fmt.Sprintf("client %d", id), lockTTL)
		if err != nil {
			cancel()
			r.tally(false)
			l.mu.Lock()
			l.errors++
			l.mu.Unlock()
			if ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		a := lockAction{client: id, acquired: r.now()}
		if f, ok := ld.(interface{ Revision() int64 }); ok {
			a.token = f.Revision() // topod's; etcd2's locks have none (0)
		}
		contents, v, err := conn.Get(opCtx, register)
		if err == nil {
			var tok int64
			var count int
			if _, perr := fmt.Sscanf(string(contents), "token=%d count=%d", &tok, &count); perr != nil {
				err = perr
			}
			switch {
			case err != nil:
			case tok > a.token:
				a.fenced = true
			default:
				nv, werr := conn.Update(opCtx, register, []byte(fmt.Sprintf("token=%d count=%d", a.token, count+1)), v)
				switch {
				case werr == nil:
					a.wrote, a.regVersion, a.count = true, versionNumber(nv), count+1
				case topo.IsErrType(werr, topo.BadVersion):
					a.casFailed = true
				default:
					a.unanswered, a.count = true, count+1
				}
			}
		}
		a.unlock = r.now()
		_ = ld.Unlock(opCtx)
		cancel()
		r.tally(err == nil)
		l.mu.Lock()
		l.actions = append(l.actions, a)
		l.mu.Unlock()
	}
}

// watchLog is what one watcher saw.
type watchLog struct {
	mu       sync.Mutex
	events   []watchEvent
	restarts int // times the watch ended with an error and was started again
	state    map[string]watchEvent
}

// watchEvent is one delivered change (or initial value) of a key.
type watchEvent struct {
	watch   int // which watch of the watcher (0, then one more per restart)
	initial bool
	key     string
	deleted bool
	value   string
	version int64
}

// watcher watches kvDir recursively until ctx ends, starting the watch
// again when it ends with an error.
func watcher(ctx context.Context, w *watchLog, conn topo.Conn) {
	w.state = map[string]watchEvent{}
	for n := 0; ctx.Err() == nil; n++ {
		initial, changes, err := conn.WatchRecursive(ctx, kvDir)
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		w.mu.Lock()
		w.state = map[string]watchEvent{}
		for _, d := range initial {
			w.add(watchEvent{watch: n, initial: true, key: keyOf(d.Path), value: valueOf(d.Contents), version: versionNumber(d.Version)})
		}
		w.mu.Unlock()
		for d := range changes {
			ev := watchEvent{watch: n, key: keyOf(d.Path)}
			switch {
			case d.Err != nil && topo.IsErrType(d.Err, topo.NoNode):
				ev.deleted = true
			case d.Err != nil:
				w.mu.Lock()
				if ctx.Err() == nil {
					w.restarts++
				}
				w.mu.Unlock()
				continue // the channel closes after an error
			default:
				ev.value, ev.version = valueOf(d.Contents), versionNumber(d.Version)
			}
			w.mu.Lock()
			w.add(ev)
			w.mu.Unlock()
			watched.changed()
		}
	}
}

func (w *watchLog) add(ev watchEvent) {
	w.events = append(w.events, ev)
	if ev.deleted {
		delete(w.state, ev.key)
	} else {
		w.state[ev.key] = ev
	}
}
