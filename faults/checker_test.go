package faults

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestModel: the KV model accepts the histories a correct store gives and
// refuses the others.
func TestModel(t *testing.T) {
	op := func(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
	}
	const never = 1 << 62
	create := func(v string) kvInput { return kvInput{Kind: opCreate, Key: "k", Value: v} }
	update := func(v string, at int64) kvInput { return kvInput{Kind: opUpdate, Key: "k", Value: v, Version: at} }
	get := kvInput{Kind: opGet, Key: "k"}
	put := func(v string) kvInput { return kvInput{Kind: opPut, Key: "k", Value: v} }
	cas := func(v string, at int64) kvInput { return kvInput{Kind: opCAS, Key: "k", Value: v, Version: at} }
	del := kvInput{Kind: opDel, Key: "k"}
	casFailed := func(val string, v int64) kvOutput { return kvOutput{Outcome: outBadVersion, Value: val, Version: v} }
	ok := func(v int64) kvOutput { return kvOutput{Outcome: outOK, Version: v} }
	read := func(val string, v int64) kvOutput { return kvOutput{Outcome: outOK, Value: val, Version: v} }
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"create, update, read", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, 3, update("b", 5), ok(7)), op(1, 4, 5, get, read("b", 7)),
		}, true},
		{"a read after an acknowledged write returns the old value", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, 3, update("b", 5), ok(7)), op(1, 4, 5, get, read("a", 5)),
		}, false},
		{"concurrent read may see either", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, 6, update("b", 5), ok(7)), op(1, 3, 4, get, read("a", 5)),
		}, true},
		{"a write whose answer was lost may have happened", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, never, update("b", 5), kvOutput{Outcome: outUnknown}),
			op(1, 4, 5, get, read("b", 9)), op(1, 6, 7, update("c", 9), ok(12)),
		}, true},
		{"or not", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, never, update("b", 5), kvOutput{Outcome: outUnknown}),
			op(1, 4, 5, get, read("a", 5)),
		}, true},
		{"a value nobody wrote", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, get, read("z", 5)),
		}, false},
		{"versions go back", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, 3, update("b", 5), ok(4)),
		}, false},
		{"a conditional write at the wrong version succeeds", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, 3, update("b", 4), ok(8)),
		}, false},
		{"a create over an existing key succeeds", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, create("b"), ok(6)),
		}, false},
		// etcd's KV API on the same key.
		{"etcd put, plugin update at its revision, etcd read", []porcupine.Operation{
			op(0, 0, 1, put("a"), ok(5)), op(1, 2, 3, update("b", 5), ok(7)), op(2, 4, 5, get, read("b", 7)),
		}, true},
		{"etcd put at a revision below the key's", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, put("b"), ok(4)),
		}, false},
		{"etcd cas creates at 0, then updates at its revision", []porcupine.Operation{
			op(0, 0, 1, cas("a", 0), ok(5)), op(0, 2, 3, cas("b", 5), ok(6)), op(1, 4, 5, get, read("b", 6)),
		}, true},
		{"etcd cas at 0 on an existing key succeeds", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, cas("b", 0), ok(6)),
		}, false},
		{"etcd cas fails, its else read is the state", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, cas("b", 4), casFailed("a", 5)),
		}, true},
		{"etcd cas fails at the version it compared", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, cas("b", 5), casFailed("a", 5)),
		}, false},
		{"etcd cas fails, its else read stale", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(0, 2, 3, update("b", 5), ok(7)), op(1, 4, 5, cas("c", 9), casFailed("a", 5)),
		}, false},
		{"etcd cas fails on a missing key at 0", []porcupine.Operation{
			op(1, 2, 3, cas("b", 0), kvOutput{Outcome: outBadVersion}),
		}, false},
		{"etcd delete, then a read finds nothing", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, del, ok(6)), op(2, 4, 5, get, kvOutput{Outcome: outNoNode}),
		}, true},
		{"etcd delete, then a read finds the key", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, del, ok(6)), op(2, 4, 5, get, read("a", 5)),
		}, false},
		{"etcd delete finds nothing on an existing key", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, 3, del, kvOutput{Outcome: outNoNode}),
		}, false},
		{"etcd put whose answer was lost, read later", []porcupine.Operation{
			op(0, 0, 1, create("a"), ok(5)), op(1, 2, never, put("b"), kvOutput{Outcome: outUnknown}), op(2, 4, 5, get, read("b", 8)),
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(kvModel.ToModel(), tc.ops); got != tc.want {
				t.Errorf("linearizable = %v, want %v", got, tc.want)
			}
		})
	}
}

// staleBackend is a deliberately broken backend for TestCheckerFlagsStale:
// its Get answers from a snapshot of each key taken at the first read and
// renewed only every refresh, as a replica following a stalled mirror
// would, ignoring the revision its client asked for.
type staleBackend struct {
	kv.Backend
	refresh time.Duration

	mu    sync.Mutex
	snaps map[string]snapshot
}

type snapshot struct {
	e   kv.KV
	err error
	at  time.Time
}

func (b *staleBackend) Get(ctx context.Context, key string) (kv.KV, error) {
	b.mu.Lock()
	s, ok := b.snaps[key]
	b.mu.Unlock()
	if ok && time.Since(s.at) < b.refresh {
		return s.e, s.err
	}
	e, err := b.Backend.Get(ctx, key)
	b.mu.Lock()
	b.snaps[key] = snapshot{e, err, time.Now()}
	b.mu.Unlock()
	return e, err
}

// TestCheckLocks: the lock check accepts register writes whose tokens and
// counts go up by one, and a count skipped only as far as writes whose
// answer was lost explain it; anything else is an unsafe write.
func TestCheckLocks(t *testing.T) {
	wrote := func(client int, token int64, version int64, count int) lockAction {
		return lockAction{client: client, token: token, wrote: true, regVersion: version, count: count}
	}
	unanswered := func(token int64, count int) lockAction {
		return lockAction{client: 9, token: token, unanswered: true, count: count}
	}
	tests := []struct {
		name    string
		actions []lockAction
		unsafe  int
	}{
		{"in order", []lockAction{wrote(0, 1, 10, 1), wrote(1, 2, 11, 2), wrote(0, 3, 12, 3)}, 0},
		{"in order, logged out of order", []lockAction{wrote(1, 2, 11, 2), wrote(0, 1, 10, 1)}, 0},
		{"etcd2: no tokens", []lockAction{wrote(0, 0, 10, 1), wrote(1, 0, 11, 2)}, 0},
		{"a token goes down", []lockAction{wrote(0, 2, 10, 1), wrote(1, 1, 11, 2)}, 1},
		{"a count repeated: a stale read acted on", []lockAction{wrote(0, 1, 10, 1), wrote(1, 2, 11, 1)}, 1},
		{"a count skipped, no write unanswered", []lockAction{wrote(0, 1, 10, 1), wrote(1, 3, 12, 3)}, 1},
		{"a count skipped by an unanswered write of it", []lockAction{wrote(0, 1, 10, 1), unanswered(2, 2), wrote(1, 3, 12, 3)}, 0},
		{"two skipped, one unanswered write", []lockAction{wrote(0, 1, 10, 1), unanswered(2, 2), wrote(1, 3, 13, 4)}, 1},
		{"a count skipped, the unanswered write tried another", []lockAction{wrote(0, 1, 10, 1), unanswered(2, 5), wrote(1, 3, 12, 3)}, 1},
		{"a count skipped, the unanswered write's token is outside", []lockAction{wrote(0, 2, 10, 1), unanswered(9, 2), wrote(1, 3, 12, 3)}, 1},
		{"an unanswered write explains one skip only", []lockAction{wrote(0, 1, 10, 1), unanswered(2, 2), wrote(1, 3, 12, 3), wrote(0, 4, 13, 2), wrote(1, 5, 14, 4)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &report{}
			r.checkLocks(&lockLog{actions: tt.actions})
			if r.lockUnsafe != tt.unsafe {
				t.Errorf("unsafe = %d, want %d; %v", r.lockUnsafe, tt.unsafe, r.anomalies)
			}
		})
	}
}

// TestCheckWatch: the watch check accepts a watcher that saw each write
// once and in order (a restarted watch may list again what it saw), and
// flags a duplicate, a reorder, a phantom and a gap. Stock etcd2topo's
// two quirks (every listed value at the first key's version, the last
// listed change delivered again) are counted apart in a stock run only.
func TestCheckWatch(t *testing.T) {
	put := func(watch int, key, value string, version int64) watchEvent {
		return watchEvent{watch: watch, key: key, value: value, version: version}
	}
	listed := func(watch int, key, value string, version int64) watchEvent {
		e := put(watch, key, value, version)
		e.initial = true
		return e
	}
	writes := map[string]int64{"a1": 3, "b1": 5, "a2": 7}
	final := map[string]watchEvent{"kv/a": put(0, "kv/a", "a2", 7), "kv/b": put(0, "kv/b", "b1", 5)}
	good := []watchEvent{listed(0, "kv/a", "a1", 3), put(0, "kv/b", "b1", 5), put(0, "kv/a", "a2", 7)}
	type counts struct{ dup, reorder, phantom, gap, stockVersions, stockAgain int }
	tests := []struct {
		name   string
		stock  bool
		events []watchEvent
		want   counts
	}{
		{"in order", false, good, counts{}},
		{"a restart lists again", false, append(slices.Clone(good), listed(1, "kv/a", "a2", 7), listed(1, "kv/b", "b1", 5)), counts{}},
		{"an event twice", false, append(slices.Clone(good), put(0, "kv/a", "a2", 7)), counts{dup: 1}},
		{"an older version after a newer", false, []watchEvent{listed(0, "kv/a", "a2", 7), put(0, "kv/a", "a1", 3), put(0, "kv/b", "b1", 5), put(0, "kv/a", "a2", 7)}, counts{reorder: 1, dup: 1}},
		{"a value at a version it was not written at", false, []watchEvent{listed(0, "kv/a", "a1", 4), put(0, "kv/b", "b1", 5), put(0, "kv/a", "a2", 7)}, counts{phantom: 1}},
		{"the last change missing", false, good[:2], counts{gap: 1}},
		{"stock's listed versions, not stock", false, []watchEvent{listed(0, "kv/a", "a1", 5), listed(0, "kv/b", "b1", 5), put(0, "kv/b", "b1", 5), put(0, "kv/a", "a2", 7)}, counts{phantom: 1, dup: 1}},
		{"stock's listed versions, stock", true, []watchEvent{listed(0, "kv/a", "a1", 5), listed(0, "kv/b", "b1", 5), put(0, "kv/b", "b1", 5), put(0, "kv/a", "a2", 7)}, counts{stockVersions: 1, stockAgain: 1}},
		{"stock, a change delivered twice", true, append(slices.Clone(good), put(0, "kv/a", "a2", 7)), counts{dup: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			maps.Copy(rec.writes, writes)
			w := &watchLog{state: map[string]watchEvent{}}
			for _, e := range tt.events {
				w.add(e)
			}
			r := &report{stock: tt.stock}
			r.checkWatch(rec, w, final)
			got := counts{r.duplicates, r.reorders, r.phantoms, r.gaps, r.stockInitialVersions, r.stockRedelivered}
			if got != tt.want {
				t.Errorf("got %+v, want %+v; %v", got, tt.want, r.anomalies)
			}
		})
	}
}

// TestCheckerFlagsStale: a checker that is never challenged proves
// nothing. Against a topod whose reads are stale (staleBackend, mirror
// off), the same workload and checks as TestFaults must find the history
// not linearizable and clients reading older versions than they saw.
func TestCheckerFlagsStale(t *testing.T) {
	inner, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	srv := harness.StartTopod(t, &staleBackend{Backend: inner, refresh: 300 * time.Millisecond, snaps: map[string]snapshot{}},
		toposerver.Options{DisableMirror: true})

	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range kvClients {
		conn, err := topoplugin.NewConn(srv.Addr, "/faults")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		wg.Go(func() { kvClient(ctx, rec, i, conn, func(n int64) topo.Version { return topoplugin.Version(n) }) })
	}
	wg.Wait()
	r := &report{name: "stale-replica"}
	r.checkKV(rec, time.Minute)
	r.checkClients(rec)
	t.Logf("stale replica: linearizable %s over %d kv ops, %d time travels; a key's operations:%s", verdict(r.linearizable), r.kvOps, r.timeTravel, r.detail)
	if r.linearizable != porcupine.Illegal {
		t.Errorf("the checker found a stale replica's history %s", verdict(r.linearizable))
	}
	if r.timeTravel == 0 {
		t.Error("no client saw a version older than one it had seen")
	}
}

// TestCheckEtcdWatch: the etcd watch checks accept a watcher that saw
// what etcd did, resumed and re-read as it should, and flag each broken
// guarantee once.
func TestCheckEtcdWatch(t *testing.T) {
	kv := func(v string, create, mod, version int64) etcdKV {
		return etcdKV{Value: v, Create: create, Mod: mod, Version: version, Present: true}
	}
	// etcd's events: a created at 2, a and b in one revision at 3, a
	// deleted at 4, b at 5.
	truthEvents := []etcdEvent{
		{Rev: 2, Key: "kv/a", KV: kv("a1", 2, 2, 1)},
		{Rev: 3, Key: "kv/a", KV: kv("a2", 2, 3, 2)},
		{Rev: 3, Key: "kv/b", KV: kv("b1", 3, 3, 1)},
		{Rev: 4, Key: "kv/a", Delete: true},
		{Rev: 5, Key: "kv/b", KV: kv("b2", 3, 5, 2)},
	}
	truth := newEventTruth("etcd", truthEvents, 6)
	ev := func(i int) etcdEvent { return truth.byRev[truthEvents[i].Rev][map[bool]int{true: 1, false: 0}[i == 2]] }
	resp := func(evs ...etcdEvent) etcdWatchResp { return etcdWatchResp{events: evs} }
	progress := func(rev int64) etcdWatchResp { return etcdWatchResp{progress: true, rev: rev} }
	good := func() []*etcdWatchOp {
		return []*etcdWatchOp{
			{start: 2, reached: 3, resps: []etcdWatchResp{resp(ev(0)), progress(2), resp(ev(1), ev(2))}, ended: "compacted"},
			{start: 5, reached: 6, reread: &etcdSnapshot{rev: 4, kvs: map[string]etcdKV{"kv/b": kv("b1", 3, 3, 1)}},
				resps: []etcdWatchResp{resp(ev(4)), progress(6)}},
		}
	}
	wrongPrev := ev(4)
	wrongPrev.Prev = kv("b0", 3, 3, 1)
	noPrev := ev(4)
	noPrev.Prev = etcdKV{}
	tests := []struct {
		name  string
		edit  func(ops []*etcdWatchOp) []*etcdWatchOp
		field func(e *etcdFigures) int
	}{
		{"good", func(ops []*etcdWatchOp) []*etcdWatchOp { return ops }, nil},
		{"a revision's events split", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[0].resps = []etcdWatchResp{resp(ev(0)), resp(ev(1)), resp(ev(2))}
			return ops
		}, func(e *etcdFigures) int { return e.split }},
		{"an event missing", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[0].resps = []etcdWatchResp{resp(ev(0)), progress(2), resp(ev(1))}
			return ops
		}, func(e *etcdFigures) int { return e.missing }},
		{"an event twice", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[1].resps = []etcdWatchResp{resp(ev(4)), resp(ev(4)), progress(6)}
			return ops
		}, func(e *etcdFigures) int { return e.duplicates }},
		{"events out of order", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[0].resps = []etcdWatchResp{resp(ev(1), ev(2)), resp(ev(0))}
			ops[0].start = 3 // so that only the order is wrong... and resumable
			return ops
		}, func(e *etcdFigures) int { return e.unordered }},
		{"an event at a revision a progress notification covered", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[0].resps = []etcdWatchResp{resp(ev(0)), progress(3), resp(ev(1), ev(2))}
			return ops
		}, func(e *etcdFigures) int { return e.bookmark }},
		{"a progress notification going back", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[1].resps = []etcdWatchResp{progress(3), resp(ev(4)), progress(6)}
			return ops
		}, func(e *etcdFigures) int { return e.bookmark }},
		{"a resumed watch starts past its first event", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[1].reread = nil
			ops[1].start = 4 // revision 4 (a deleted) missing, 5 first
			return ops
		}, func(e *etcdFigures) int { return e.resume }},
		{"a wrong PrevKv", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[1].resps = []etcdWatchResp{resp(wrongPrev), progress(6)}
			return ops
		}, func(e *etcdFigures) int { return e.differs }},
		{"a PrevKv left out", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[1].resps = []etcdWatchResp{resp(noPrev), progress(6)}
			return ops
		}, func(e *etcdFigures) int { return e.prevMissing }},
		{"a re-read that is not the state at its revision", func(ops []*etcdWatchOp) []*etcdWatchOp {
			ops[1].reread.kvs["kv/a"] = kv("a2", 2, 3, 2)
			return ops
		}, func(e *etcdFigures) int { return e.rereadWrong }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &report{}
			r.checkEtcdWatch(&etcdWatchLog{name: "w", ops: tt.edit(good())}, truth)
			n := r.etcd.violations(false)
			switch {
			case tt.field == nil && n != 0:
				t.Errorf("a good watcher: %d violations (%s): %v", n, &r.etcd, r.anomalies)
			case tt.field != nil && tt.field(&r.etcd) == 0:
				t.Errorf("not flagged (%s): %v", &r.etcd, r.anomalies)
			}
		})
	}
}

// TestCheckSerializable: a client's serializable reads from one member
// never go back, by key or by header revision; from two members they may.
func TestCheckSerializable(t *testing.T) {
	read := func(client int, member uint64, rev int64, key string, version int64, value string) serialRead {
		return serialRead{client: client, member: member, rev: rev, observation: observation{key: key, version: version, value: value}}
	}
	writes := map[string]int64{"a": 5, "b": 7}
	tests := []struct {
		name  string
		reads []serialRead
		back  int
		phan  int
	}{
		{"forward", []serialRead{read(0, 1, 5, "k", 5, "a"), read(0, 1, 7, "k", 7, "b")}, 0, 0},
		{"back on one member", []serialRead{read(0, 1, 7, "k", 7, "b"), read(0, 1, 7, "k", 5, "a")}, 1, 0},
		{"header back on one member", []serialRead{read(0, 1, 7, "k", 0, ""), read(0, 1, 6, "j", 0, "")}, 1, 0},
		{"back across members", []serialRead{read(0, 1, 7, "k", 7, "b"), read(0, 2, 5, "k", 5, "a")}, 0, 0},
		{"back across clients", []serialRead{read(0, 1, 7, "k", 7, "b"), read(1, 1, 5, "k", 5, "a")}, 0, 0},
		{"a value at another version", []serialRead{read(0, 1, 7, "k", 6, "b")}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &report{}
			rec := newRecorder()
			rec.serial, rec.writes = tt.reads, writes
			r.checkSerializable(rec)
			if r.etcd.serialBack != tt.back || r.etcd.serialPhan != tt.phan {
				t.Errorf("back %d, phantoms %d; want %d, %d: %v", r.etcd.serialBack, r.etcd.serialPhan, tt.back, tt.phan, r.anomalies)
			}
		})
	}
}
