package topoplugin_test

import (
	"context"
	"testing"
	"time"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/topoplugin"
)

// fenced is what a lock descriptor of the plugin also is.
type fenced interface{ Revision() int64 }

// TestLockRevisionIsAFencingToken: every acquisition's revision is larger
// than the one before, also when the holder before is a waiter's blocker
// that went away, and also across replicas of one etcd.
func TestLockRevisionIsAFencingToken(t *testing.T) {
	ctx := context.Background()
	a, b := twoReplicas(t)
	ca, cb := newConn(t, a.Addr, "/vitess/global"), newConn(t, b.Addr, "/vitess/global")
	if _, err := ca.Create(ctx, "ks/Keyspace", []byte("k")); err != nil {
		t.Fatal(err)
	}
	var last int64
	token := func(ld topo.LockDescriptor) int64 {
		t.Helper()
		f, ok := ld.(fenced)
		if !ok {
			t.Fatalf("%T has no Revision", ld)
		}
		if r := f.Revision(); r <= last {
			t.Fatalf("lock revision %d after %d", r, last)
		}
		last = f.Revision()
		return last
	}
	for i, c := range []*topoplugin.Conn{ca, cb, ca} {
		ld, err := c.Lock(ctx, "ks", "test")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("lock %d: revision %d", i, token(ld))
		if err := ld.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A waiter gets the lock when the holder unlocks; its token is larger.
	held, err := ca.Lock(ctx, "ks", "holder")
	if err != nil {
		t.Fatal(err)
	}
	token(held)
	got := make(chan topo.LockDescriptor, 1)
	go func() {
		ld, err := cb.Lock(ctx, "ks", "waiter")
		if err != nil {
			t.Error(err)
		}
		got <- ld
	}()
	// The waiter's lock file is queued behind the holder's.
	for ctx, cancel := context.WithTimeout(ctx, time.Minute); ; {
		entries, err := ca.ListDir(ctx, "ks/locks", false)
		if err == nil && len(entries) == 2 {
			cancel()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the waiter did not queue: %v, %v", entries, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if ld := <-got; ld != nil {
		token(ld)
		_ = ld.Unlock(ctx)
	}
}
