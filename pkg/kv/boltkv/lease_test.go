package boltkv

import (
	"context"
	"errors"
	"testing"
	"time"

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
	l, err := b.Grant(gctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/k", nil, l.ID()); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(50 * time.Millisecond)
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
