package boltkv

import (
	"errors"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// TestGrantLeaseSkipsTakenIDs: the table's sequence never hands out an ID
// granted by ID, and a Grant after it neither.
func TestGrantLeaseSkipsTakenIDs(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	first, _, err := b.GrantLease(ctx, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	taken := map[kv.LeaseID]bool{first: true}
	for _, id := range []kv.LeaseID{first + 1, first + 2, first + 4} {
		got, _, err := b.GrantLease(ctx, id, time.Minute)
		if err != nil || got != id {
			t.Fatalf("GrantLease(%d) = %d, %v", id, got, err)
		}
		taken[id] = true
	}
	if _, _, err := b.GrantLease(ctx, first, time.Minute); !errors.Is(err, kv.ErrLeaseExists) {
		t.Fatalf("GrantLease of the sequence's own ID: %v, want ErrLeaseExists", err)
	}
	next, _, err := b.GrantLease(ctx, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if next != first+3 || l.ID() != first+5 {
		t.Fatalf("after IDs %d..%d were taken, the sequence gave %d and %d, want %d and %d",
			first, first+4, next, l.ID(), first+3, first+5)
	}
}

// TestRenewExpiredLease: a lease past its deadline that the expiry loop
// has not ended yet is not renewed: RenewLease ends it, and its keys are
// gone when it answers.
func TestRenewExpiredLease(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	id, _, err := b.GrantLease(ctx, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/k", nil, id); err != nil {
		t.Fatal(err)
	}
	b.leases.mu.Lock()
	b.leases.leases[id].deadline = time.Now().Add(-time.Second) // the loop sleeps for an hour
	b.leases.mu.Unlock()
	if _, err := b.RenewLease(ctx, id); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("RenewLease of an expired lease: %v, want ErrLeaseNotFound", err)
	}
	if _, err := b.Get(ctx, "/k"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("key of the expired lease after RenewLease: %v, want ErrNotFound", err)
	}
	st, err := b.LeaseTimeToLive(ctx, id, false)
	if !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("LeaseTimeToLive of the expired lease: %+v, %v", st, err)
	}
}

// TestLeaseTimeToLiveOfGrant: a lease kept alive by its Grant context has
// its whole TTL left; once the context ends, it counts down.
func TestLeaseTimeToLiveOfGrant(t *testing.T) {
	b, _ := openTest(t, Options{NoSync: true})
	l, err := b.Grant(t.Context(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.LeaseTimeToLive(t.Context(), l.ID(), false)
	if err != nil || st.TTL != 30 || st.Granted != 30 {
		t.Fatalf("LeaseTimeToLive of a kept-alive lease: %+v, %v; want TTL 30 of 30", st, err)
	}
	if ttl, err := b.RenewLease(t.Context(), l.ID()); err != nil || ttl != 30*time.Second {
		t.Fatalf("RenewLease of a kept-alive lease: %v, %v", ttl, err)
	}
	b.leases.release(l.ID(), time.Now().Add(10*time.Second))
	st, err = b.LeaseTimeToLive(t.Context(), l.ID(), false)
	if err != nil || st.TTL != 9 || st.Granted != 30 {
		t.Fatalf("LeaseTimeToLive of a released lease: %+v, %v; want TTL 9 of 30", st, err)
	}
}
