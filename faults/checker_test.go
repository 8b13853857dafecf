package faults

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/topodtest"
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
	unanswered := lockAction{client: 9, token: 7, unanswered: true}
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
		{"a count skipped by an unanswered write", []lockAction{wrote(0, 1, 10, 1), unanswered, wrote(1, 3, 12, 3)}, 0},
		{"two skipped, one unanswered write", []lockAction{wrote(0, 1, 10, 1), unanswered, wrote(1, 3, 13, 4)}, 1},
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
	srv := topodtest.Start(t, &staleBackend{Backend: inner, refresh: 300 * time.Millisecond, snaps: map[string]snapshot{}},
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
