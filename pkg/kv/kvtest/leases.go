package kvtest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// The checks of this file hold a kv.Leases to etcd's lease API: leases by
// ID, which live one TTL from their grant or last renewal. etcd raises a
// TTL below its minimum (2 s with its default election timeout): the
// checks take the TTL granted.

// leasesOf returns e's backend's leases by ID.
func leasesOf(t *testing.T, e *env) kv.Leases {
	t.Helper()
	return e.b
}

// mustGrantID grants a lease of ttl under id (0: the backend's choice) and
// checks the answer: the ID asked for, a TTL of whole seconds, at least
// ttl.
func mustGrantID(t *testing.T, ls kv.Leases, id kv.LeaseID, ttl time.Duration) (kv.LeaseID, time.Duration) {
	t.Helper()
	got, granted, err := ls.GrantLease(ctx(t), id, ttl)
	if err != nil {
		t.Fatalf("GrantLease(%d, %v): %v", id, ttl, err)
	}
	if got == 0 || (id != 0 && got != id) {
		t.Fatalf("GrantLease(%d, %v) granted lease %d", id, ttl, got)
	}
	if granted < ttl || granted%time.Second != 0 {
		t.Fatalf("GrantLease(%d, %v) granted a TTL of %v, want whole seconds >= %v", id, ttl, granted, ttl)
	}
	return got, granted
}

// mustLeaseStatus returns what LeaseTimeToLive tells of id, with its keys
// sorted.
func mustLeaseStatus(t *testing.T, ls kv.Leases, id kv.LeaseID, keys bool) kv.LeaseStatus {
	t.Helper()
	st, err := ls.LeaseTimeToLive(ctx(t), id, keys)
	if err != nil {
		t.Fatalf("LeaseTimeToLive(%d): %v", id, err)
	}
	if st.ID != id {
		t.Fatalf("LeaseTimeToLive(%d) describes lease %d", id, st.ID)
	}
	slices.Sort(st.Keys)
	return st
}

func mustListLeases(t *testing.T, ls kv.Leases) []kv.LeaseID {
	t.Helper()
	ids, err := ls.ListLeases(ctx(t))
	if err != nil {
		t.Fatalf("ListLeases: %v", err)
	}
	return ids
}

// wantLeaseGone fails t unless every call about lease id answers
// ErrLeaseNotFound and ListLeases does not list it.
func wantLeaseGone(t *testing.T, ls kv.Leases, id kv.LeaseID) {
	t.Helper()
	_, err := ls.LeaseTimeToLive(ctx(t), id, true)
	wantErr(t, fmt.Sprintf("LeaseTimeToLive(%d)", id), err, kv.ErrLeaseNotFound, "")
	_, err = ls.RenewLease(ctx(t), id)
	wantErr(t, fmt.Sprintf("RenewLease(%d)", id), err, kv.ErrLeaseNotFound, "")
	wantErr(t, fmt.Sprintf("RevokeLease(%d)", id), ls.RevokeLease(ctx(t), id), kv.ErrLeaseNotFound, "")
	if slices.Contains(mustListLeases(t, ls), id) {
		t.Errorf("ListLeases lists lease %d, which has ended", id)
	}
}

// randomLeaseID returns a lease ID no other run is likely to use.
func randomLeaseID() kv.LeaseID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return kv.LeaseID(binary.BigEndian.Uint64(b[:])>>2 | 1)
}

// checkLeasesByID: a lease granted by ID is listed and described (time
// left, TTL granted, keys attached); a renewal returns its TTL and gives
// it its whole TTL again; a revoke deletes its keys, and no other, at one
// revision, after which the lease is unknown to every call.
func checkLeasesByID(t *testing.T, e *env) {
	ls := leasesOf(t, e)
	id, ttl := mustGrantID(t, ls, 0, 2*time.Second)
	secs := int64(ttl / time.Second)
	if !slices.Contains(mustListLeases(t, ls), id) {
		t.Fatalf("ListLeases does not list lease %d", id)
	}
	st := mustLeaseStatus(t, ls, id, true)
	if st.Granted != secs || st.TTL < 0 || st.TTL > secs || len(st.Keys) != 0 {
		t.Fatalf("LeaseTimeToLive of a new lease: %+v, want Granted %d, 0 <= TTL <= %d, no keys", st, secs, secs)
	}

	a, b, plain := e.key("a"), e.key("b"), e.key("plain")
	w := newWatcher(t, e, e.prefix, true, 0)
	mustCreate(t, e, b, "b", id)
	mustCreate(t, e, a, "a", id)
	last := mustCreate(t, e, plain, "p", 0)
	if got := mustGet(t, e, a); got.Lease != id {
		t.Fatalf("Get(%q).Lease = %d, want %d", a, got.Lease, id)
	}
	if st := mustLeaseStatus(t, ls, id, true); !equalStrings(st.Keys, []string{a, b}) {
		t.Fatalf("LeaseTimeToLive(keys) lists %q, want %q", st.Keys, []string{a, b})
	}
	if st := mustLeaseStatus(t, ls, id, false); len(st.Keys) != 0 {
		t.Fatalf("LeaseTimeToLive(no keys) lists %q", st.Keys)
	}

	renewed, err := ls.RenewLease(ctx(t), id)
	if err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if renewed != ttl {
		t.Fatalf("RenewLease = %v, want the TTL %v", renewed, ttl)
	}
	if st := mustLeaseStatus(t, ls, id, false); st.TTL < secs-1 || st.TTL > secs {
		t.Fatalf("LeaseTimeToLive right after a renewal: TTL %d, want %d or %d", st.TTL, secs-1, secs)
	}

	if err := ls.RevokeLease(ctx(t), id); err != nil {
		t.Fatalf("RevokeLease: %v", err)
	}
	wantNotFound(t, e, a)
	wantNotFound(t, e, b)
	mustGet(t, e, plain)
	for range 3 {
		w.next() // the creates
	}
	d1, d2 := w.wantDelete(a), w.wantDelete(b)
	if d1.KV.ModRevision != d2.KV.ModRevision || d1.KV.ModRevision <= last {
		t.Errorf("revoke deleted at revisions %d and %d, want one revision after %d", d1.KV.ModRevision, d2.KV.ModRevision, last)
	}
	wantLeaseGone(t, ls, id)
	_, err = e.b.Create(ctx(t), e.key("after"), nil, id)
	wantErr(t, "Create with a revoked lease", err, kv.ErrLeaseNotFound, "")

	// A lease never granted.
	wantLeaseGone(t, ls, randomLeaseID())
}

// checkLeasesGivenID: GrantLease uses the ID asked for, unless a lease
// holds it (ErrLeaseExists); the backend's own IDs avoid it; once the
// lease has ended, its ID can be granted again.
func checkLeasesGivenID(t *testing.T, e *env) {
	ls := leasesOf(t, e)
	id := randomLeaseID()
	mustGrantID(t, ls, id, leaseTTL)
	_, _, err := ls.GrantLease(ctx(t), id, leaseTTL)
	wantErr(t, "GrantLease of an ID in use", err, kv.ErrLeaseExists, "")
	seen := map[kv.LeaseID]bool{id: true}
	for range 3 {
		other, _ := mustGrantID(t, ls, 0, leaseTTL)
		if seen[other] {
			t.Fatalf("GrantLease(0) granted lease %d, already granted", other)
		}
		seen[other] = true
	}
	if err := ls.RevokeLease(ctx(t), id); err != nil {
		t.Fatalf("RevokeLease: %v", err)
	}
	mustGrantID(t, ls, id, leaseTTL)
	if err := ls.RevokeLease(ctx(t), id); err != nil {
		t.Fatalf("RevokeLease: %v", err)
	}
}

// checkLeasesExpiry: a lease that is not renewed ends about one TTL after
// its grant, deleting its keys; one renewed in time lives on past its TTL,
// and ends one TTL after its last renewal.
func checkLeasesExpiry(t *testing.T, e *env) {
	ls := leasesOf(t, e)
	start := time.Now()
	renewed, renewedTTL := mustGrantID(t, ls, 0, leaseTTL)
	dropped, droppedTTL := mustGrantID(t, ls, 0, leaseTTL)
	kr, kd := e.key("renewed"), e.key("dropped")
	mustCreate(t, e, kr, "r", renewed)
	mustCreate(t, e, kd, "d", dropped)

	// Renew one until the other has ended and the renewed one has lived
	// well past its TTL.
	deadline := time.Now().Add(droppedTTL + eventTimeout)
	for {
		ttl, err := ls.RenewLease(ctx(t), renewed)
		if err != nil || ttl != renewedTTL {
			t.Fatalf("RenewLease after %v: %v, %v; want %v", time.Since(start), ttl, err, renewedTTL)
		}
		_, err = e.b.Get(ctx(t), kd)
		gone := err != nil
		if gone {
			wantErr(t, "Get of a key of the lease not renewed", err, kv.ErrNotFound, kd)
			if elapsed := time.Since(start); elapsed < droppedTTL-250*time.Millisecond {
				t.Fatalf("the lease not renewed ended after %v, before its TTL %v", elapsed, droppedTTL)
			}
		}
		if gone && time.Since(start) > renewedTTL+renewedTTL/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease not renewed still holds its key %v after its grant (TTL %v)", time.Since(start), droppedTTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantLeaseGone(t, ls, dropped)
	mustGet(t, e, kr)
	if !slices.Contains(mustListLeases(t, ls), renewed) {
		t.Fatalf("ListLeases does not list the renewed lease %d", renewed)
	}

	// Left alone, the renewed one ends too.
	lastRenewal := time.Now()
	deadline = lastRenewal.Add(renewedTTL + eventTimeout)
	for {
		_, err := e.b.Get(ctx(t), kr)
		if err != nil {
			wantErr(t, "Get of a key of the lease no longer renewed", err, kv.ErrNotFound, kr)
			if elapsed := time.Since(lastRenewal); elapsed < renewedTTL-250*time.Millisecond {
				t.Fatalf("the lease ended %v after its last renewal, before its TTL %v", elapsed, renewedTTL)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease no longer renewed still holds its key %v after its last renewal (TTL %v)", time.Since(lastRenewal), renewedTTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantLeaseGone(t, ls, renewed)
}

// checkLeasesOfGrant: the leases of Grant are leases by ID too: listed,
// described, and revoked by ID (which ends the kv.Lease).
func checkLeasesOfGrant(t *testing.T, e *env) {
	ls := leasesOf(t, e)
	l := mustGrant(t, e, ctx(t), leaseTTL)
	k := e.key("k")
	mustCreate(t, e, k, "v", l.ID())
	if !slices.Contains(mustListLeases(t, ls), l.ID()) {
		t.Fatalf("ListLeases does not list the granted lease %d", l.ID())
	}
	st := mustLeaseStatus(t, ls, l.ID(), true)
	if st.Granted != int64(l.TTL()/time.Second) || !equalStrings(st.Keys, []string{k}) {
		t.Fatalf("LeaseTimeToLive of a granted lease: %+v, want Granted %d and keys [%s]", st, l.TTL()/time.Second, k)
	}
	if err := ls.RevokeLease(ctx(t), l.ID()); err != nil {
		t.Fatalf("RevokeLease: %v", err)
	}
	wantNotFound(t, e, k)
	waitLeaseGone(t, l, eventTimeout)
	wantErr(t, "Alive() after RevokeLease", l.Alive(ctx(t)), kv.ErrLeaseNotFound, "")
}

// checkTxnLeaseKeys: keys a transaction attaches to a lease, or takes off
// it, are those LeaseTimeToLive lists and its end deletes.
func checkTxnLeaseKeys(t *testing.T, e *env) {
	tb, ls := txnOf(t, e), leasesOf(t, e)
	id, _ := mustGrantID(t, ls, 0, 10*time.Second)
	a, b, c := e.key("a"), e.key("b"), e.key("c")
	mustCreate(t, e, c, "c", id)
	pa, pb := opPut(a, "a"), opPut(b, "b")
	pa.Lease, pb.Lease = id, id
	mustTxn(t, tb, kv.Txn{Success: []kv.Op{pa, pb}})
	if st := mustLeaseStatus(t, ls, id, true); !equalStrings(st.Keys, []string{a, b, c}) {
		t.Fatalf("LeaseTimeToLive lists %q, want %q", st.Keys, []string{a, b, c})
	}
	mustTxn(t, tb, kv.Txn{Success: []kv.Op{opPut(b, "b2"), opDelete(c, "")}})
	if st := mustLeaseStatus(t, ls, id, true); !equalStrings(st.Keys, []string{a}) {
		t.Fatalf("LeaseTimeToLive after a Put without the lease and a Delete lists %q, want %q", st.Keys, []string{a})
	}
	if err := ls.RevokeLease(ctx(t), id); err != nil {
		t.Fatalf("RevokeLease: %v", err)
	}
	wantNotFound(t, e, a)
	mustGet(t, e, b)
}
