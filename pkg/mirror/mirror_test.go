package mirror_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/mirror"
)

func start(t *testing.T) (kv.Backend, *mirror.Mirror) {
	t.Helper()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	m := mirror.New(b, "/", mirror.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for !m.Stats().Ready {
		time.Sleep(time.Millisecond)
	}
	return b, m
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
	if _, _, ok := m.Get("/a/x", rev+1000); ok {
		t.Fatal("answered for a revision it has not reached")
	}
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if e, found, ok := m.Get("/a/x", rev); !ok || !found || string(e.Value) != "1" || e.ModRevision != rev {
		t.Fatalf("Get = %v %v %v", e, found, ok)
	}
	b.Create(ctx, "/a/y", []byte("2"), 0)
	rev, _ = b.Create(ctx, "/ab", []byte("3"), 0)
	m.WaitRev(ctx, rev)
	kvs, _, ok := m.List("/a/", true, rev)
	if !ok || len(kvs) != 2 || kvs[0].Key != "/a/x" || kvs[1].Key != "/a/y" || kvs[0].Value != nil {
		t.Fatalf("List = %v %v", kvs, ok)
	}
	if err := b.Delete(ctx, "/a/x", 0); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitGone(ctx, "/a/x"); err != nil {
		t.Fatal(err)
	}
	if _, found, ok := m.Get("/a/x", 0); !ok || found {
		t.Fatal("deleted key still there")
	}
}

// TestStalledSubscriberStaysBounded: a subscriber that never reads keeps one
// pending event per key however many updates come, and does not hold up the
// others.
func TestStalledSubscriberStaysBounded(t *testing.T) {
	ctx := t.Context()
	b, m := start(t)
	b.Create(ctx, "/f", []byte("0"), 0)
	stalled, _, _, ok := m.Subscribe("/", true)
	if !ok {
		t.Fatal("not ready")
	}
	defer stalled.Close()
	live, _, _, _ := m.Subscribe("/f", false)
	defer live.Close()

	var last, final int64
	for i := 1; i <= 1000; i++ {
		last, _ = b.Update(ctx, "/f", []byte(fmt.Sprint(i)), 0)
		if i%100 == 0 {
			final, _ = b.Update(ctx, fmt.Sprintf("/other/%d", i), []byte("x"), 0)
		}
	}
	for {
		events, _, err := live.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if events[len(events)-1].KV.ModRevision == last {
			break
		}
	}
	m.WaitRev(ctx, final)
	events, _, err := stalled.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One per key: /f and the ten /other keys.
	if len(events) != 11 {
		t.Fatalf("stalled subscriber holds %d events, want 11 (one per key)", len(events))
	}
}

// TestRelistAfterCompaction: when the upstream watch cannot go on (bolt's
// ring overrun stands for etcd compaction), the mirror lists again and its
// subscribers see the latest state, deletes included.
func TestRelistAfterCompaction(t *testing.T) {
	ctx := t.Context()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true, WatcherBacklog: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := mirror.New(b, "/", mirror.Options{})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.Run(runCtx)
	rev, _ := b.Create(ctx, "/gone", []byte("x"), 0)
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	sub, snapshot, _, _ := m.Subscribe("/", true)
	defer sub.Close()
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
		events, rev, err := sub.Next(ctx)
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
	t.Logf("relists: the mirror followed %d writes with a 10-event watcher backlog", 5000)
}
