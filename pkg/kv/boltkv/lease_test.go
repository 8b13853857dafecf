package boltkv

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/topod-io/topod/pkg/kv"
)

func TestLeaseTTLRounding(t *testing.T) {
	b, _ := openTest(t, Options{NoSync: true})
	for _, tt := range []struct{ ask, want time.Duration }{
		{0, time.Second},
		{time.Millisecond, time.Second},
		{time.Second, time.Second},
		{1001 * time.Millisecond, 2 * time.Second},
		{90 * time.Second, 90 * time.Second},
	} {
		l, err := b.Grant(t.Context(), tt.ask)
		if err != nil {
			t.Fatal(err)
		}
		if l.TTL() != tt.want {
			t.Errorf("Grant(%v).TTL() = %v, want %v", tt.ask, l.TTL(), tt.want)
		}
	}
}

// TestLeaseGraceAfterContextEnd: when the Grant context ends, the lease
// lives one more TTL (as an etcd lease whose keep-alives stop), and can
// still be revoked in that time.
func TestLeaseGraceAfterContextEnd(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	gctx, cancel := context.WithCancel(ctx)
	l, err := b.Grant(gctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/k", nil, l.ID()); err != nil {
		t.Fatal(err)
	}
	cancel()
	// The backend has seen the context end once the lease has a deadline.
	if err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return b.leases.deadline(l.ID()) != (time.Time{}), nil
	}); err != nil {
		t.Fatalf("the lease got no deadline after its context ended: %v", err)
	}
	if err := l.Alive(ctx); err != nil {
		t.Fatalf("Alive right after the context ended: %v", err)
	}
	if _, err := b.Get(ctx, "/k"); err != nil {
		t.Fatalf("leased key right after the context ended: %v", err)
	}
	if err := l.Revoke(ctx); err != nil {
		t.Fatalf("Revoke in the grace period: %v", err)
	}
	if _, err := b.Get(ctx, "/k"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("leased key after Revoke: %v", err)
	}
}

// TestLeasesExpireIndependently: the expiry loop ends each lease at its own
// deadline, and leaves kept-alive leases alone.
func TestLeasesExpireIndependently(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	kept, err := b.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ended []kv.Lease
	for range 3 {
		gctx, cancel := context.WithCancel(ctx)
		l, err := b.Grant(gctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Create(ctx, "/l/"+time.Now().String(), nil, l.ID()); err != nil {
			t.Fatal(err)
		}
		cancel()
		ended = append(ended, l)
	}
	if _, err := b.Create(ctx, "/kept", nil, kept.ID()); err != nil {
		t.Fatal(err)
	}
	for _, l := range ended {
		select {
		case <-l.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("lease %d did not expire", l.ID())
		}
	}
	kvs, _, err := b.List(ctx, "/l/", true)
	if err != nil || len(kvs) != 0 {
		t.Fatalf("keys of expired leases: %v, %v", kvs, err)
	}
	if err := kept.Alive(ctx); err != nil {
		t.Fatalf("kept-alive lease: %v", err)
	}
	if _, err := b.Get(ctx, "/kept"); err != nil {
		t.Fatalf("kept-alive lease's key: %v", err)
	}
}

// deadline is lease id's deadline: zero while its Grant context lives (or
// when the table does not hold it).
func (t *leaseTable) deadline(id kv.LeaseID) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.leases[id]; ok {
		return e.deadline
	}
	return time.Time{}
}
