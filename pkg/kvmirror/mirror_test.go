package kvmirror_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

func open(t *testing.T, opts boltkv.Options) kv.Backend {
	t.Helper()
	opts.NoSync = true
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func run(t *testing.T, b kv.Backend, opts kvmirror.Options) *kvmirror.Mirror {
	t.Helper()
	m := kvmirror.New(b, "/", opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := m.WaitRev(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	return m
}

func start(t *testing.T) (kv.Backend, *kvmirror.Mirror) {
	t.Helper()
	b := open(t, boltkv.Options{})
	return b, run(t, b, kvmirror.Options{})
}

// subscribe subscribes with a signal channel, for Next.
func subscribe(t *testing.T, m *kvmirror.Mirror, key string, prefix bool) (*kvmirror.Subscription, []kv.KV, <-chan struct{}) {
	t.Helper()
	notify, signaled := kvmirror.Signal()
	sub, snapshot, _, ok, err := m.Subscribe(t.Context(), key, prefix, notify)
	if err != nil || !ok {
		t.Fatalf("Subscribe(%s) = ok %v, %v", key, ok, err)
	}
	t.Cleanup(sub.Close)
	return sub, snapshot, signaled
}

// TestReadsFollowWrites: Get and List answer from memory once the mirror has
// reached the revision asked for, and refuse (ok false) before.
func TestReadsFollowWrites(t *testing.T) {
	ctx := t.Context()
	b, m := start(t)
	rev, err := b.Create(ctx, "/a/x", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := m.Get(ctx, "/a/x", rev+1000); ok {
		t.Fatal("answered for a revision it has not reached")
	}
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if e, found, ok, err := m.Get(ctx, "/a/x", rev); !ok || !found || err != nil || string(e.Value) != "1" || e.ModRevision != rev {
		t.Fatalf("Get = %v %v %v %v", e, found, ok, err)
	}
	b.Create(ctx, "/a/y", []byte("2"), 0)
	rev, _ = b.Create(ctx, "/ab", []byte("3"), 0)
	m.WaitRev(ctx, rev)
	kvs, ok, err := m.List(ctx, "/a/", true, rev)
	if !ok || err != nil || len(kvs) != 2 || kvs[0].Key != "/a/x" || kvs[1].Key != "/a/y" || kvs[0].Value != nil {
		t.Fatalf("List = %v %v %v", kvs, ok, err)
	}
	rev, err = b.Delete(ctx, "/a/x", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, found, ok, _ := m.Get(ctx, "/a/x", rev); !ok || found {
		t.Fatal("deleted key still there at the delete's revision")
	}
}

// TestChangesReachOnlyTheirWatchers: a change marks the subscriptions of its
// key, and the recursive ones of its ancestor directories, and no other: a
// subscription of another key is never notified.
func TestChangesReachOnlyTheirWatchers(t *testing.T) {
	ctx := t.Context()
	b, m := start(t)
	b.Create(ctx, "/c/ks1/SrvKeyspace", []byte("a"), 0)
	b.Create(ctx, "/c/ks2/SrvKeyspace", []byte("a"), 0)
	b.Create(ctx, "/c/ks10/SrvKeyspace", []byte("a"), 0)
	rev, _ := b.Create(ctx, "/d/x", []byte("a"), 0)
	m.WaitRev(ctx, rev)

	type watch struct {
		key    string
		prefix bool
		want   bool
	}
	watches := []watch{
		{"/c/ks1/SrvKeyspace", false, true},
		{"/c/ks2/SrvKeyspace", false, false},
		{"/c/ks10/SrvKeyspace", false, false},
		{"/c/ks1/", true, true},
		{"/c/", true, true},
		{"/", true, true},
		{"/c/ks10/", true, false},
		{"/d/", true, false},
		{"/c/ks", true, true}, // a prefix that is not a directory
	}
	notified := make([]atomic.Int32, len(watches))
	subs := make([]*kvmirror.Subscription, len(watches))
	for i, w := range watches {
		sub, _, _, ok, err := m.Subscribe(ctx, w.key, w.prefix, func() { notified[i].Add(1) })
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		defer sub.Close()
		subs[i] = sub
	}
	if st := m.Stats(); st.Subscriptions != len(watches) {
		t.Fatalf("Stats().Subscriptions = %d, want %d", st.Subscriptions, len(watches))
	}
	rev, _ = b.Update(ctx, "/c/ks1/SrvKeyspace", []byte("b"), 0)
	m.WaitRev(ctx, rev)
	for i, w := range watches {
		events, got, err := subs[i].Take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := notified[i].Load(); (n > 0) != w.want || (len(events) > 0) != w.want {
			t.Errorf("watch %+v: notified %d times, took %d events", w, n, len(events))
		}
		if w.want && (events[0].KV.Key != "/c/ks1/SrvKeyspace" || string(events[0].KV.Value) != "b" || got < rev) {
			t.Errorf("watch %+v: took %+v at %d, want the new value at >= %d", w, events, got, rev)
		}
	}
	subs[0].Close()
	subs[0].Close()
	if st := m.Stats(); st.Subscriptions != len(watches)-1 {
		t.Fatalf("after Close, Stats().Subscriptions = %d, want %d", st.Subscriptions, len(watches)-1)
	}
}

// TestStalledSubscriberStaysBounded: a subscriber that never takes keeps one
// pending key per watched key however many updates come, is notified once,
// and does not hold up the others.
func TestStalledSubscriberStaysBounded(t *testing.T) {
	ctx := t.Context()
	b, m := start(t)
	b.Create(ctx, "/f", []byte("0"), 0)
	var stalledNotified atomic.Int32
	stalled, _, _, ok, _ := m.Subscribe(ctx, "/", true, func() { stalledNotified.Add(1) })
	if !ok {
		t.Fatal("not ready")
	}
	defer stalled.Close()
	live, _, signaled := subscribe(t, m, "/f", false)

	var last, final int64
	for i := 1; i <= 1000; i++ {
		last, _ = b.Update(ctx, "/f", []byte(fmt.Sprint(i)), 0)
		if i%100 == 0 {
			final, _ = b.Update(ctx, fmt.Sprintf("/other/%d", i), []byte("x"), 0)
		}
	}
	for {
		events, _, err := live.Next(ctx, signaled)
		if err != nil {
			t.Fatal(err)
		}
		if events[len(events)-1].KV.ModRevision == last {
			break
		}
	}
	m.WaitRev(ctx, final)
	if n := stalledNotified.Load(); n != 1 {
		t.Fatalf("stalled subscriber notified %d times, want once", n)
	}
	events, _, err := stalled.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One per key: /f and the ten /other keys, each at its latest value.
	if len(events) != 11 || string(events[0].KV.Value) != "1000" && events[0].KV.Key == "/f" {
		t.Fatalf("stalled subscriber holds %d events, want 11 (one per key)", len(events))
	}
}

// TestRelistAfterCompaction: when the upstream watch cannot go on (bolt's
// ring overrun stands for etcd compaction), the mirror lists again and its
// subscribers see the latest state, deletes included.
func TestRelistAfterCompaction(t *testing.T) {
	ctx := t.Context()
	b := open(t, boltkv.Options{WatcherBacklog: 10})
	m := run(t, b, kvmirror.Options{})
	rev, _ := b.Create(ctx, "/gone", []byte("x"), 0)
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	sub, snapshot, signaled := subscribe(t, m, "/", true)
	if len(snapshot) != 1 {
		t.Fatalf("snapshot %v", snapshot)
	}
	b.Delete(ctx, "/gone", 0)
	var last int64
	for i := 0; i < 5000; i++ {
		last, _ = b.Update(ctx, fmt.Sprintf("/k%d", i%50), []byte(fmt.Sprint(i)), 0)
	}
	state := map[string]string{"/gone": "x"}
	deadline := time.After(30 * time.Second)
	for {
		events, rev, err := sub.Next(ctx, signaled)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if ev.Type == kv.Delete {
				delete(state, ev.KV.Key)
			} else {
				state[ev.KV.Key] = string(ev.KV.Value)
			}
		}
		if rev >= last {
			break
		}
		select {
		case <-deadline:
			t.Fatal("subscriber did not converge")
		default:
		}
	}
	if _, ok := state["/gone"]; ok || len(state) != 50 || state["/k49"] != "4999" {
		t.Fatalf("converged on %d keys, /gone present: %v, /k49 = %q", len(state), state["/gone"] != "", state["/k49"])
	}
}

// TestOverMemoryBoundKeepsServing: past MaxBytes the mirror keeps every key
// and keeps serving reads and watches from its one upstream watch; the
// values it does not hold are read from the backend, exactly as of the
// key's revision, and Stats says how many.
func TestOverMemoryBoundKeepsServing(t *testing.T) {
	ctx := t.Context()
	b := open(t, boltkv.Options{})
	m := run(t, b, kvmirror.Options{MaxBytes: 4096})
	value := func(i, gen int) []byte { return []byte(fmt.Sprintf("%0500d", i*1000+gen)) }
	var rev int64
	for i := 0; i < 40; i++ {
		rev, _ = b.Update(ctx, fmt.Sprintf("/k/%02d", i), value(i, 0), 0)
	}
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	// The keys are always held; the values only while they fit.
	if st.Keys != 40 || st.EvictedValues == 0 || st.Bytes > st.MaxBytes+40*(96+5) {
		t.Fatalf("Stats = %+v, want 40 keys, some values evicted, values within the bound", st)
	}
	t.Logf("%d of %d values evicted, %d bytes held", st.EvictedValues, st.Keys, st.Bytes)
	sub, snapshot, signaled := subscribe(t, m, "/k/", true)
	kvs, ok, err := m.List(ctx, "/k/", false, rev)
	if !ok || err != nil || len(kvs) != 40 || len(snapshot) != 40 {
		t.Fatalf("List = %d keys, %v, %v; snapshot %d keys", len(kvs), ok, err, len(snapshot))
	}
	for i := range 40 {
		if string(kvs[i].Value) != string(value(i, 0)) || string(snapshot[i].Value) != string(value(i, 0)) {
			t.Fatalf("key %d: List or snapshot value wrong", i)
		}
		e, found, ok, err := m.Get(ctx, kvs[i].Key, rev)
		if !found || !ok || err != nil || string(e.Value) != string(value(i, 0)) {
			t.Fatalf("Get(%s) = %v %v %v", kvs[i].Key, found, ok, err)
		}
	}
	// Changes of values not held reach the watcher, with their value.
	for i := 30; i < 40; i++ {
		rev, _ = b.Update(ctx, fmt.Sprintf("/k/%02d", i), value(i, 1), 0)
	}
	seen := map[string]string{}
	for len(seen) < 10 {
		events, _, err := sub.Next(ctx, signaled)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			seen[ev.KV.Key] = string(ev.KV.Value)
		}
	}
	for i := 30; i < 40; i++ {
		if got := seen[fmt.Sprintf("/k/%02d", i)]; got != string(value(i, 1)) {
			t.Fatalf("watcher got %q for key %d", got, i)
		}
	}
	// Deleting keys makes room: values are held again.
	for i := 0; i < 40; i++ {
		rev, _ = b.Delete(ctx, fmt.Sprintf("/k/%02d", i), 0)
	}
	m.WaitRev(ctx, rev)
	rev, _ = b.Update(ctx, "/k/new", value(0, 2), 0)
	m.WaitRev(ctx, rev)
	if st := m.Stats(); st.EvictedValues != 0 || st.Keys != 1 {
		t.Fatalf("after deletes, Stats = %+v, want 1 key, none evicted", st)
	}
}

// TestStopFailsSubscriptions: when Run ends, subscriptions fail with
// ErrStopped (after their pending changes) and WaitRev returns it.
func TestStopFailsSubscriptions(t *testing.T) {
	ctx := t.Context()
	b := open(t, boltkv.Options{})
	m := kvmirror.New(b, "/", kvmirror.Options{})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); m.Run(runCtx) }()
	m.WaitRev(ctx, 1)
	notify, signaled := kvmirror.Signal()
	sub, _, _, _, _ := m.Subscribe(ctx, "/", true, notify)
	cancel()
	<-done
	if _, _, err := sub.Next(ctx, signaled); err != kvmirror.ErrStopped {
		t.Fatalf("Next after stop: %v, want ErrStopped", err)
	}
	if err := m.WaitRev(ctx, 1<<40); err != kvmirror.ErrStopped {
		t.Fatalf("WaitRev after stop: %v", err)
	}
	if _, _, _, ok, _ := m.Subscribe(ctx, "/", true, notify); ok {
		t.Fatal("Subscribe on a stopped mirror succeeded")
	}
}
