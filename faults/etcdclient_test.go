package faults

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topod-io/topod/pkg/retry"
)

// The etcd API's side of the workload: clients of go.etcd.io/etcd/client/v3
// on the topod replicas' addresses (topod serves etcd's v3 API there, beside
// topod.v1), reading and writing the plugin clients' keys and keys of their
// own, and etcd watchers of the whole key directory. In the etcd2
// comparison they use the etcd members themselves: the reference the same
// checks hold etcd to.

// etcdRoot is the etcd key of the connections' root: the plugin's file
// kv/k0 is etcd's key /faults/kv/k0.
const etcdRoot = "/faults/"

// etcdPrefix is the etcd key prefix of kvDir, which the etcd watchers
// watch.
const etcdPrefix = etcdRoot + kvDir + "/"

// numOwnKeys is how many keys (kv/e0...) only the etcd clients write; kv/e0
// is large (payloadFor).
const numOwnKeys = 4

// Sizes of the etcd API's workload.
const (
	etcdKVClients = 3
	etcdWatchers  = 3
)

// progressEvery is how often an etcd watcher asks for a progress
// notification (clientv3's RequestProgress), as etcd's robustness suite
// does: what bookmarkable is checked on.
const progressEvery = 100 * time.Millisecond

func etcdKey(key string) string { return etcdRoot + key }

func historyKey(k []byte) string { return strings.TrimPrefix(string(k), etcdRoot) }

// etcdEndpoints are the addresses the etcd API's clients use: every topod
// replica's, or, in the etcd2 comparison, every etcd member's.
func (c *cluster) etcdEndpoints() []string {
	if c.etcd2 {
		return c.etcd.Endpoints()
	}
	var eps []string
	for _, r := range c.replicas {
		eps = append(eps, r.Addr)
	}
	return eps
}

// etcdClient opens a clientv3 client of eps. Its keepalive lets it leave
// an endpoint that stopped answering (a stopped or cut-off replica) in a
// few seconds, as a production client's would.
func (c *cluster) etcdClient(eps []string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: eps, DialTimeout: 5 * time.Second, DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// serialRead is a serializable read of an etcd client: from one member
// (MemberId of its header: one topod replica, or one etcd member), at the
// header's revision.
type serialRead struct {
	client int
	member uint64
	rev    int64
	call   int64
	observation
}

// etcdDone counts an operation of an etcd KV client in its phase and
// follows the client's availability.
func (r *recorder) etcdDone(client int, ok bool) {
	ph := r.phase.Load()
	now := time.Since(r.start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.etcdFailed[ph]++
		return
	}
	r.etcdOK[ph]++
	r.etcdLongestGap = max(r.etcdLongestGap, now-r.etcdLastOK[client])
	r.etcdLastOK[client] = now
}

func (r *recorder) serialized(s serialRead) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serial = append(r.serial, s)
}

// etcdOutcome classifies an etcd client's error: none, or one after which
// a write may or may not have happened (etcd's KV answers have no other
// failure; conditions are in the answers).
func etcdOutcome(err error) outcome {
	if err == nil {
		return outOK
	}
	return outUnknown
}

// etcdKVClient runs etcd KV operations until ctx ends, half of them on the
// plugin clients' keys (kv/kN), half on keys of their own (kv/eN): Get
// (linearizable, etcd's default), Get WithSerializable, Put, Txn
// compare-and-set on the ModRevision (a create at 0), a Txn writing two
// keys at once (so that watches see revisions of more than one event),
// Delete.
func etcdKVClient(ctx context.Context, r *recorder, id int, cli *clientv3.Client) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	versions := map[string]int64{} // the last version this client saw of each key (0: absent)
	ownKey := func() string { return fmt.Sprintf("%s/e%d", kvDir, rng.IntN(numOwnKeys)) }
	for seq := 0; ctx.Err() == nil; seq++ {
		key := ownKey()
		if rng.IntN(2) == 0 {
			key = fmt.Sprintf("%s/k%d", kvDir, rng.IntN(numKeys))
		}
		value := fmt.Sprintf("e%d-%d", id, seq)
		opCtx, cancel := context.WithTimeout(context.Background(), opTimeout)
		call := r.now()
		var ops []kvOp // what porcupine gets (a two-key Txn: one per key)
		switch p := rng.IntN(100); {
		case p < 20:
			in := kvInput{Kind: opGet, Key: key, Via: "etcd"}
			resp, err := cli.Get(opCtx, etcdKey(key))
			out := kvOutput{Outcome: etcdOutcome(err)}
			if err == nil {
				out = readOutput(resp.Kvs)
				versions[key] = out.Version
			}
			ops = append(ops, kvOp{in, out})
		case p < 35:
			resp, err := cli.Get(opCtx, etcdKey(key), clientv3.WithSerializable())
			cancel()
			r.etcdDone(id, err == nil)
			if err == nil {
				out := readOutput(resp.Kvs)
				r.serialized(serialRead{client: id, member: resp.Header.MemberId, rev: resp.Header.Revision, call: call,
					observation: observation{key: key, version: out.Version, value: out.Value}})
			}
			continue
		case p < 50:
			in := kvInput{Kind: opPut, Key: key, Value: value, Via: "etcd"}
			resp, err := cli.Put(opCtx, etcdKey(key), string(payloadFor(key, value)))
			out := kvOutput{Outcome: etcdOutcome(err)}
			if err == nil {
				out.Version = resp.Header.Revision
				versions[key] = out.Version
			}
			ops = append(ops, kvOp{in, out})
		case p < 80:
			in := kvInput{Kind: opCAS, Key: key, Value: value, Version: versions[key], Via: "etcd txn"}
			resp, err := cli.Txn(opCtx).
				If(clientv3.Compare(clientv3.ModRevision(etcdKey(key)), "=", in.Version)).
				Then(clientv3.OpPut(etcdKey(key), string(payloadFor(key, value)))).
				Else(clientv3.OpGet(etcdKey(key))).Commit()
			out := kvOutput{Outcome: etcdOutcome(err)}
			if err == nil {
				out = casOutput(resp, 0)
				versions[key] = out.Version
			}
			ops = append(ops, kvOp{in, out})
		case p < 88:
			// Two keys of its own in one revision, each conditional.
			a := rng.IntN(numOwnKeys)
			b := (a + 1 + rng.IntN(numOwnKeys-1)) % numOwnKeys
			keys := []string{fmt.Sprintf("%s/e%d", kvDir, a), fmt.Sprintf("%s/e%d", kvDir, b)}
			var cmps []clientv3.Cmp
			var puts, gets []clientv3.Op
			for i, k := range keys {
				v := fmt.Sprintf("%s.%d", value, i)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(etcdKey(k)), "=", versions[k]))
				puts = append(puts, clientv3.OpPut(etcdKey(k), string(payloadFor(k, v))))
				gets = append(gets, clientv3.OpGet(etcdKey(k)))
			}
			resp, err := cli.Txn(opCtx).If(cmps...).Then(puts...).Else(gets...).Commit()
			for i, k := range keys {
				in := kvInput{Kind: opCAS, Key: k, Value: fmt.Sprintf("%s.%d", value, i), Version: versions[k], Via: "etcd txn2"}
				out := kvOutput{Outcome: etcdOutcome(err)}
				if err == nil {
					out = casOutput(resp, i)
					if !resp.Succeeded {
						// Failed, the other key's compare may be
						// the false one: what this key tells is
						// its Else read, a linearizable read.
						in = kvInput{Kind: opGet, Key: k, Via: "etcd txn2 else"}
						out.Outcome = outOK
						if out.Version == 0 {
							out.Outcome = outNoNode
						}
					}
					versions[k] = out.Version
				}
				ops = append(ops, kvOp{in, out})
			}
		default:
			in := kvInput{Kind: opDel, Key: key, Via: "etcd"}
			resp, err := cli.Delete(opCtx, etcdKey(key))
			out := kvOutput{Outcome: etcdOutcome(err)}
			if err == nil {
				out.Version = resp.Header.Revision
				if resp.Deleted == 0 {
					out.Outcome = outNoNode
				}
				versions[key] = 0
			}
			ops = append(ops, kvOp{in, out})
		}
		cancel()
		ret := r.now()
		ok := true
		for _, op := range ops {
			r.kv(id, op.in, op.out, call, ret)
			ok = ok && op.out.Outcome != outUnknown
		}
		r.etcdDone(id, ok)
	}
}

type kvOp struct {
	in  kvInput
	out kvOutput
}

// readOutput is a Get's answer: the key's value and version, or no node.
func readOutput(kvs []*mvccpb.KeyValue) kvOutput {
	if len(kvs) == 0 {
		return kvOutput{Outcome: outNoNode}
	}
	return kvOutput{Outcome: outOK, Value: valueOf(kvs[0].Value), Version: kvs[0].ModRevision}
}

// casOutput is a compare-and-set Txn's answer for its i-th key: ok at the
// Txn's revision, or failed with the Else read of the key.
func casOutput(resp *clientv3.TxnResponse, i int) kvOutput {
	if resp.Succeeded {
		return kvOutput{Outcome: outOK, Version: resp.Header.Revision}
	}
	out := kvOutput{Outcome: outBadVersion}
	if i < len(resp.Responses) {
		if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			out.Value, out.Version = valueOf(rr.Kvs[0].Value), rr.Kvs[0].ModRevision
		}
	}
	return out
}

// etcdKV is a key's state as an etcd watch or read reports it. Value is
// the whole contents (the large keys' included: topod reassembles them
// from their blobs).
type etcdKV struct {
	Value                string
	Create, Mod, Version int64
	Lease                int64
	Present              bool // false: no state (a PrevKv left out, a key absent)
}

// etcdEvent is one event of an etcd watch.
type etcdEvent struct {
	Rev    int64
	Key    string // the history's key (kv/...)
	Delete bool
	KV     etcdKV // a put's new state
	Prev   etcdKV // PrevKv
}

// String shows a large value by its name, size and hash, not whole.
func (kv etcdKV) String() string {
	if !kv.Present {
		return "none"
	}
	v := kv.Value
	if len(v) > 40 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(v))
		v = fmt.Sprintf("%s|... (%d bytes, fnv %08x)", valueOf([]byte(v)), len(v), h.Sum32())
	}
	s := fmt.Sprintf("%q create %d mod %d version %d", v, kv.Create, kv.Mod, kv.Version)
	if kv.Lease != 0 {
		s += fmt.Sprintf(" lease %d", kv.Lease)
	}
	return s
}

func toEtcdKV(kv *mvccpb.KeyValue) etcdKV {
	if kv == nil {
		return etcdKV{}
	}
	return etcdKV{Value: string(kv.Value), Create: kv.CreateRevision, Mod: kv.ModRevision, Version: kv.Version, Lease: kv.Lease, Present: true}
}

func toEtcdEvent(ev *clientv3.Event) etcdEvent {
	e := etcdEvent{Rev: ev.Kv.ModRevision, Key: historyKey(ev.Kv.Key), Delete: ev.Type == mvccpb.DELETE, Prev: toEtcdKV(ev.PrevKv)}
	if !e.Delete {
		e.KV = toEtcdKV(ev.Kv)
	} else if ev.Kv.CreateRevision != 0 || ev.Kv.Version != 0 || len(ev.Kv.Value) != 0 {
		// etcd's delete events carry the key and revision alone.
		e.KV = toEtcdKV(ev.Kv)
	}
	return e
}

// etcdWatchResp is one response a watch delivered: events, or a progress
// notification (the watch has seen everything up to rev).
type etcdWatchResp struct {
	progress bool
	rev      int64 // the header's revision
	events   []etcdEvent
}

// etcdSnapshot is a re-read of the whole directory (after a watch was
// compacted), at revision rev.
type etcdSnapshot struct {
	rev    int64
	kvs    map[string]etcdKV
	member uint64
}

// etcdWatchOp is one Watch call: from revision start until it ended.
type etcdWatchOp struct {
	start   int64 // the revision asked for
	resps   []etcdWatchResp
	reached int64  // it has delivered everything up to this revision (events, progress)
	ended   string // why it ended: "compacted", an error, or "" (stopped)
	reread  *etcdSnapshot
}

// etcdWatchLog is what one etcd watcher saw: its watches in order.
type etcdWatchLog struct {
	name string
	mu   sync.Mutex
	ops  []*etcdWatchOp
	// reached: the revision the watcher has seen everything up to.
	reached int64
}

func (w *etcdWatchLog) Reached() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reached
}

// etcdWatcher watches etcdPrefix (WithPrefix, WithPrevKV) from revision
// start until ctx ends, asking for progress notifications every
// progressEvery. A watch that ends is started again from the revision it
// had reached plus one; one canceled as compacted (the revision is out of
// the server's window) re-reads the directory and watches from the
// re-read's revision plus one, as etcd clients do.
func etcdWatcher(ctx context.Context, w *etcdWatchLog, cli *clientv3.Client, start int64) {
	go requestProgress(ctx, cli)
	reached := start - 1
	var reread *etcdSnapshot
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil {
		op := &etcdWatchOp{start: reached + 1, reread: reread}
		reread = nil
		w.mu.Lock()
		w.ops = append(w.ops, op)
		w.mu.Unlock()
		compacted := false
		for resp := range cli.Watch(ctx, etcdPrefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(op.start)) {
			if resp.CompactRevision != 0 {
				compacted = true
			}
			if err := resp.Err(); err != nil {
				w.mu.Lock()
				op.ended = err.Error()
				if compacted || errors.Is(err, rpctypes.ErrCompacted) {
					op.ended = "compacted"
				}
				w.mu.Unlock()
				continue // the channel closes
			}
			if resp.Created {
				continue
			}
			wr := etcdWatchResp{progress: resp.IsProgressNotify(), rev: resp.Header.Revision}
			for _, ev := range resp.Events {
				wr.events = append(wr.events, toEtcdEvent(ev))
			}
			w.mu.Lock()
			op.resps = append(op.resps, wr)
			if n := len(wr.events); n > 0 {
				op.reached = max(op.reached, wr.events[n-1].Rev)
			} else if wr.progress {
				op.reached = max(op.reached, wr.rev)
			}
			reached = max(reached, op.reached)
			w.reached = reached
			w.mu.Unlock()
			watched.changed()
			backoff = 20 * time.Millisecond
		}
		if ctx.Err() != nil {
			break
		}
		if compacted {
			snap := rereadDir(ctx, cli)
			if snap == nil {
				break
			}
			reread = snap
			reached = max(reached, snap.rev)
			w.mu.Lock()
			w.reached = reached
			w.mu.Unlock()
			watched.changed()
		}
		// A watch refused again at once (a replica whose blob store is
		// down cancels a watch it cannot deliver) is retried after a
		// pause.
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// rereadDir reads the whole directory (a linearizable Get), retrying until
// it succeeds or ctx ends (nil).
func rereadDir(ctx context.Context, cli *clientv3.Client) *etcdSnapshot {
	for ctx.Err() == nil {
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := cli.Get(opCtx, etcdPrefix, clientv3.WithPrefix())
		cancel()
		if err == nil {
			s := &etcdSnapshot{rev: resp.Header.Revision, member: resp.Header.MemberId, kvs: map[string]etcdKV{}}
			for _, kv := range resp.Kvs {
				s.kvs[historyKey(kv.Key)] = toEtcdKV(kv)
			}
			return s
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// truthLog collects the events of a watch on etcd itself (not through
// topod): what every etcd watch of the directory must deliver. Values are
// as stored: the large ones are topod records (decoded at the check).
type truthLog struct {
	mu      sync.Mutex
	events  []etcdEvent
	reached int64
	err     error
}

func (l *truthLog) state() (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reached, l.err
}

// watchTruth watches etcdPrefix on cli (etcd's members) from start until
// ctx ends or the watch fails (compacted).
func watchTruth(ctx context.Context, cli *clientv3.Client, start int64, l *truthLog) {
	go requestProgress(ctx, cli)
	defer watched.changed()
	for resp := range cli.Watch(ctx, etcdPrefix, clientv3.WithPrefix(), clientv3.WithRev(start)) {
		l.mu.Lock()
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				l.err = err
			}
			l.mu.Unlock()
			return
		}
		for _, ev := range resp.Events {
			l.events = append(l.events, toEtcdEvent(ev))
			l.reached = max(l.reached, ev.Kv.ModRevision)
		}
		if resp.IsProgressNotify() {
			l.reached = max(l.reached, resp.Header.Revision)
		}
		l.mu.Unlock()
		watched.changed()
	}
	l.mu.Lock()
	if l.err == nil && ctx.Err() == nil {
		l.err = errors.New("etcd's watch ended")
	}
	l.mu.Unlock()
}

// notifier wakes whoever waits for a change of the watch logs.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// watched is told of every change of a watch log, topod.v1's and etcd's.
var watched = &notifier{ch: make(chan struct{})}

// changed wakes the waiters.
func (n *notifier) changed() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}

// next returns a channel closed at the next change.
func (n *notifier) next() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

// waitFor waits until cond holds, checking it again at each change of a
// watch log, or until the timeout passes; it reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	expired := time.After(timeout)
	for {
		next := watched.next() // before cond: no change is missed
		if cond() {
			return true
		}
		select {
		case <-next:
		case <-expired:
			return false
		}
	}
}

// currentRevision is the revision cli's cluster is at (a linearizable
// read), retried with backoff until timeout.
func currentRevision(cli *clientv3.Client, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	wait := retry.New(50*time.Millisecond, time.Second)
	for {
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		resp, err := cli.Get(octx, etcdPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		ocancel()
		if err == nil {
			return resp.Header.Revision, nil
		}
		if werr := wait.Wait(ctx); werr != nil {
			return 0, err
		}
	}
}

// requestProgress asks cli's watch streams for a progress notification
// every progressEvery until ctx ends.
func requestProgress(ctx context.Context, cli *clientv3.Client) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = cli.RequestProgress(ctx)
		}
	}
}
