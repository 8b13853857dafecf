package kvtest

import (
	"context"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// leaseTTL is the TTL the suite asks for: short, so that waiting out an
// expiry keeps the suite fast.
const leaseTTL = time.Second

func mustGrant(t *testing.T, e *env, ctx context.Context, ttl time.Duration) kv.Lease {
	t.Helper()
	l, err := e.b.Grant(ctx, ttl)
	if err != nil {
		t.Fatalf("Grant(%v): %v", ttl, err)
	}
	return l
}

// checkLeaseGrant: a granted lease has an ID, a TTL of at least what was
// asked rounded up to whole seconds, and is alive.
func checkLeaseGrant(t *testing.T, e *env) {
	for _, ttl := range []time.Duration{time.Second, 1500 * time.Millisecond} {
		l := mustGrant(t, e, ctx(t), ttl)
		if l.ID() == 0 {
			t.Fatalf("Grant(%v) returned lease ID 0", ttl)
		}
		want := ttl.Round(time.Second)
		if want < ttl {
			want += time.Second
		}
		if got := l.TTL(); got < want || got%time.Second != 0 {
			t.Errorf("Grant(%v).TTL() = %v, want whole seconds >= %v", ttl, got, want)
		}
		if err := l.Alive(ctx(t)); err != nil {
			t.Errorf("Alive() on a fresh lease: %v", err)
		}
		select {
		case <-l.Done():
			t.Errorf("Done() closed on a fresh lease")
		default:
		}
	}
	a, b := mustGrant(t, e, ctx(t), leaseTTL), mustGrant(t, e, ctx(t), leaseTTL)
	if a.ID() == b.ID() {
		t.Errorf("two grants returned the same lease ID %d", a.ID())
	}
}

// checkLeaseKeys: a key created with a lease carries it in Get and List.
func checkLeaseKeys(t *testing.T, e *env) {
	l := mustGrant(t, e, ctx(t), leaseTTL)
	leased, plain := e.key("leased"), e.key("plain")
	rev := mustCreate(t, e, leased, "l", l.ID())
	mustCreate(t, e, plain, "p", 0)

	got := mustGet(t, e, leased)
	wantKV(t, got, leased, "l", rev, rev)
	if got.Lease != l.ID() {
		t.Errorf("Get(%q).Lease = %d, want %d", leased, got.Lease, l.ID())
	}
	if got := mustGet(t, e, plain); got.Lease != 0 {
		t.Errorf("Get(%q).Lease = %d, want 0", plain, got.Lease)
	}
	for _, keysOnly := range []bool{false, true} {
		kvs, _, err := e.b.List(ctx(t), e.prefix, keysOnly)
		if err != nil {
			t.Fatalf("List(keysOnly %v): %v", keysOnly, err)
		}
		if len(kvs) != 2 || kvs[0].Key != leased || kvs[1].Key != plain {
			t.Fatalf("List(keysOnly %v) = %v, want [%s %s]", keysOnly, keyList(kvs), leased, plain)
		}
		if kvs[0].Lease != l.ID() || kvs[1].Lease != 0 {
			t.Errorf("List(keysOnly %v) leases = [%d %d], want [%d 0]", keysOnly, kvs[0].Lease, kvs[1].Lease, l.ID())
		}
	}
}

// checkLeaseRevoke: Revoke deletes the lease's keys (watchers see deletes)
// and no other, closes Done, and makes Alive and a second Revoke return
// ErrLeaseNotFound.
func checkLeaseRevoke(t *testing.T, e *env) {
	l := mustGrant(t, e, ctx(t), leaseTTL)
	other := mustGrant(t, e, ctx(t), leaseTTL)
	a, b, plain, kept := e.key("a"), e.key("b"), e.key("plain"), e.key("kept")
	w := newWatcher(t, e, e.prefix, true, 0)
	ra := mustCreate(t, e, a, "a", l.ID())
	rb := mustCreate(t, e, b, "b", l.ID())
	rp := mustCreate(t, e, plain, "p", 0)
	rk := mustCreate(t, e, kept, "k", other.ID())

	if err := l.Revoke(ctx(t)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	wantNotFound(t, e, a)
	wantNotFound(t, e, b)
	mustGet(t, e, plain)
	mustGet(t, e, kept)
	waitLeaseGone(t, l, eventTimeout)
	if err := l.Alive(ctx(t)); err == nil {
		t.Errorf("Alive() after Revoke: got nil, want ErrLeaseNotFound")
	} else {
		wantErr(t, "Alive() after Revoke", err, kv.ErrLeaseNotFound, "")
	}
	wantErr(t, "second Revoke", l.Revoke(ctx(t)), kv.ErrLeaseNotFound, "")
	if err := other.Alive(ctx(t)); err != nil {
		t.Errorf("Alive() on the other lease: %v", err)
	}

	w.wantPut(a, "a", ra)
	w.wantPut(b, "b", rb)
	w.wantPut(plain, "p", rp)
	w.wantPut(kept, "k", rk)
	deleted := map[string]bool{}
	for range 2 {
		ev := w.next()
		if ev.Type != kv.Delete || (ev.KV.Key != a && ev.KV.Key != b) || ev.KV.ModRevision <= rk {
			t.Fatalf("got event %s %q at revision %d, want DELETE of %s or %s after %d",
				ev.Type, ev.KV.Key, ev.KV.ModRevision, a, b, rk)
		}
		deleted[ev.KV.Key] = true
	}
	if len(deleted) != 2 {
		t.Fatalf("revoke delivered deletes of %v, want %s and %s", deleted, a, b)
	}
	// The revoke moved the revision.
	if r := mustCreate(t, e, e.key("after"), "x", 0); r <= rk+1 {
		t.Errorf("write after the revoke at revision %d, want > %d", r, rk+1)
	}
}

// checkLeaseKeepAlive: the backend keeps a lease alive past its TTL for as
// long as the Grant context lives.
func checkLeaseKeepAlive(t *testing.T, e *env) {
	l := mustGrant(t, e, ctx(t), leaseTTL)
	k := e.key("k")
	mustCreate(t, e, k, "v", l.ID())
	time.Sleep(l.TTL() + l.TTL()/2)
	if err := l.Alive(ctx(t)); err != nil {
		t.Fatalf("Alive() after %v: %v", l.TTL()+l.TTL()/2, err)
	}
	mustGet(t, e, k)
	select {
	case <-l.Done():
		t.Fatalf("Done() closed while the lease is kept alive")
	default:
	}
}

// checkLeaseContextEnd: once the Grant context ends, nothing keeps the lease
// alive: it ends (by its TTL at the latest, give or take the backend's
// expiry granularity) and its keys are deleted.
func checkLeaseContextEnd(t *testing.T, e *env) {
	gctx, cancel := context.WithCancel(ctx(t))
	l := mustGrant(t, e, gctx, leaseTTL)
	k := e.key("k")
	w := newWatcher(t, e, k, false, 0)
	r := mustCreate(t, e, k, "v", l.ID())
	w.wantPut(k, "v", r)

	cancel()
	waitLeaseGone(t, l, l.TTL()+eventTimeout)
	w.wantDelete(k)
	wantNotFound(t, e, k)
	wantErr(t, "Alive() after the lease ended", l.Alive(ctx(t)), kv.ErrLeaseNotFound, "")
}

// checkLeaseUnknown: Create with a lease that does not exist (never granted,
// or revoked) fails with ErrLeaseNotFound and writes nothing.
func checkLeaseUnknown(t *testing.T, e *env) {
	revoked := mustGrant(t, e, ctx(t), leaseTTL)
	if err := revoked.Revoke(ctx(t)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	for _, id := range []kv.LeaseID{revoked.ID(), 0x5eed_0bad_cafe} {
		k := e.key("k")
		_, err := e.b.Create(ctx(t), k, []byte("v"), id)
		wantErr(t, "Create with an unknown lease", err, kv.ErrLeaseNotFound, "")
		wantNotFound(t, e, k)
	}
}
