package kvtest

import (
	"fmt"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// quietAttempts bounds how often quietly tries.
const quietAttempts = 10

// quietly runs attempt (numbered from 0, so that each writes keys of its
// own) until it reports that no other writer moved the revision while it
// ran, and fails t if none did: a store the suite shares may have writers
// of its own (the leases of earlier subtests ending). An attempt checks
// what it is for only when it reports quiet.
func quietly(t *testing.T, what string, attempt func(n int) (quiet bool)) {
	t.Helper()
	for n := range quietAttempts {
		if attempt(n) {
			return
		}
	}
	t.Fatalf("%s: other writes moved the revision in each of %d attempts", what, quietAttempts)
}

func mustCurrentRevision(t *testing.T, tb kv.Backend) int64 {
	t.Helper()
	rev, err := tb.CurrentRevision(ctx(t))
	if err != nil {
		t.Fatalf("CurrentRevision: %v", err)
	}
	return rev
}

// checkCurrentRevision: CurrentRevision is at least every acknowledged
// write's revision, and the revision of the last write when it is the last.
func checkCurrentRevision(t *testing.T, e *env) {
	tb := txnOf(t, e)
	quietly(t, "CurrentRevision after a write", func(n int) bool {
		rev := mustCreate(t, e, e.key(fmt.Sprint(n)), "v", 0)
		cur := mustCurrentRevision(t, tb)
		if cur < rev {
			t.Fatalf("CurrentRevision = %d after a write at %d", cur, rev)
		}
		_, listed, err := e.b.List(ctx(t), e.prefix, true)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		return cur == rev && listed == rev
	})
}

// checkTxnRevision: a transaction that writes nothing (read-only, or whose
// branch taken writes nothing, or that fails) leaves the revision where it
// was and reports it; one that writes makes every write at one new
// revision, which it reports, each key's Version going up by one, and the
// watchers see its events at that revision, in the order of its ops.
func checkTxnRevision(t *testing.T, e *env) {
	tb := txnOf(t, e)
	existing := e.key("existing")
	mustCreate(t, e, existing, "v", 0)

	noWrites := []struct {
		name string
		txn  func(dir string) kv.Txn
	}{
		{"read-only", func(dir string) kv.Txn {
			return kv.Txn{Compare: []kv.Compare{cmpValue(existing, kv.Equal, "v")},
				Success: []kv.Op{opGet(existing), opRange(dir, prefixEnd(dir))}}
		}},
		{"writes in the branch not taken", func(dir string) kv.Txn {
			return kv.Txn{Success: []kv.Op{opGet(existing)}, Failure: []kv.Op{opPut(dir+"x", "x")}}
		}},
		{"a nested write not taken", func(dir string) kv.Txn {
			return kv.Txn{Success: []kv.Op{opTxn(kv.Txn{Compare: []kv.Compare{never(existing)}, Success: []kv.Op{opPut(dir+"x", "x")}})}}
		}},
		{"delete of a missing key", func(dir string) kv.Txn {
			return kv.Txn{Success: []kv.Op{opDelete(dir+"x", ""), opDelete(dir, prefixEnd(dir))}}
		}},
	}
	for _, tt := range noWrites {
		quietly(t, tt.name, func(n int) bool {
			dir := e.key(fmt.Sprintf("%s-%d/", tt.name, n))
			before := mustCurrentRevision(t, tb)
			res := mustTxn(t, tb, tt.txn(dir))
			if after := mustCurrentRevision(t, tb); after != before {
				return false
			}
			if res.Revision != before {
				t.Fatalf("%s: Revision %d, want the current %d", tt.name, res.Revision, before)
			}
			wantNotFound(t, e, dir+"x")
			return true
		})
	}

	quietly(t, "a failed transaction", func(n int) bool {
		k := e.key(fmt.Sprintf("failed-%d", n))
		before := mustCurrentRevision(t, tb)
		bad := opPut(k+"/leased", "v")
		bad.Lease = 0x5eed_0bad_cafe
		_, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{opPut(k, "v"), opDelete(existing, ""), bad}})
		wantErr(t, "Txn with a Put of an unknown lease", err, kv.ErrLeaseNotFound, "")
		if after := mustCurrentRevision(t, tb); after != before {
			return false
		}
		wantNotFound(t, e, k)
		mustGet(t, e, existing)
		return true
	})

	quietly(t, "a transaction that writes", func(n int) bool {
		dir := e.key(fmt.Sprintf("w%d/", n))
		a, b, c, d, nested := dir+"a", dir+"b", dir+"c", dir+"d", dir+"nested"
		mustCreate(t, e, b, "b", 0)
		mustCreate(t, e, c, "c", 0)
		createdD := mustCreate(t, e, d, "d", 0)
		w := newWatcher(t, e, dir, true, createdD)
		before := mustCurrentRevision(t, tb)
		res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{
			opPut(a, "a"),
			opPut(b, "b2"),
			opDelete(c, ""),
			opPut(d, "d"), // the same value: a write all the same
			opTxn(kv.Txn{Success: []kv.Op{opPut(nested, "n")}}),
		}})
		rev := res.Revision
		if after := mustCurrentRevision(t, tb); after != before+1 || rev != after {
			return false
		}
		wantKVs(t, "the keys written", []kv.KV{mustGet(t, e, a), mustGet(t, e, b), mustGet(t, e, d), mustGet(t, e, nested)}, []kvWant{
			{a, "a", rev, rev, 1, 0},
			{b, "b2", rev, mustGet(t, e, b).CreateRevision, 2, 0},
			{d, "d", rev, createdD, 2, 0},
			{nested, "n", rev, rev, 1, 0},
		}, false)
		wantNotFound(t, e, c)
		for _, want := range []struct {
			typ kv.EventType
			key string
		}{{kv.Put, a}, {kv.Put, b}, {kv.Delete, c}, {kv.Put, d}, {kv.Put, nested}} {
			ev := w.next()
			if ev.Type != want.typ || ev.KV.Key != want.key || ev.KV.ModRevision != rev {
				t.Fatalf("event %s %s at revision %d, want %s %s at %d", ev.Type, ev.KV.Key, ev.KV.ModRevision, want.typ, want.key, rev)
			}
		}
		return true
	})
}

// checkTxnRangeAtRevision: a Range at a past revision returns the keys as
// they were then (values, revisions, versions), keys deleted since and
// keys re-created since included; at the current revision, the current
// keys; beyond it, ErrFutureRevision. In a transaction that writes, a
// Range at a revision reads the state before the transaction's writes.
func checkTxnRangeAtRevision(t *testing.T, e *env) {
	tb := txnOf(t, e)
	dir := e.key("h/")
	a, b, c, other := dir+"a", dir+"b", dir+"c", e.key("other")
	r0 := mustCreate(t, e, other, "o", 0) // so that r1-1 is a revision
	r1 := mustCreate(t, e, a, "a1", 0)
	r2 := mustCreate(t, e, b, "b1", 0)
	r3 := mustUpdate(t, e, a, "a2", r1)
	r4 := mustDeleteRev(t, e, b)
	r5 := mustCreate(t, e, c, "c1", 0)
	mustUpdate(t, e, other, "o2", r0)
	r6 := mustCreate(t, e, b, "b2", 0)
	r7 := mustDeleteRev(t, e, a)

	a1 := kvWant{a, "a1", r1, r1, 1, 0}
	a2 := kvWant{a, "a2", r3, r1, 2, 0}
	b1 := kvWant{b, "b1", r2, r2, 1, 0}
	b2 := kvWant{b, "b2", r6, r6, 1, 0}
	c1 := kvWant{c, "c1", r5, r5, 1, 0}
	tests := []struct {
		rev  int64
		want []kvWant
	}{
		{r1 - 1, nil},
		{r1, []kvWant{a1}},
		{r2, []kvWant{a1, b1}},
		{r3, []kvWant{a2, b1}},
		{r4, []kvWant{a2}},
		{r5, []kvWant{a2, c1}},
		{r6 - 1, []kvWant{a2, c1}},
		{r6, []kvWant{a2, b2, c1}},
		{r7, []kvWant{b2, c1}},
	}
	for _, tt := range tests {
		for _, keysOnly := range []bool{false, true} {
			op := kv.Op{Type: kv.OpRange, Key: dir, End: prefixEnd(dir), Rev: tt.rev, KeysOnly: keysOnly}
			res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{op}})
			wantKVs(t, fmt.Sprintf("Range of %s at revision %d", dir, tt.rev), res.Responses[0].Range, tt.want, keysOnly)
		}
		for _, key := range []string{a, b, c} {
			var want []kvWant
			for _, w := range tt.want {
				if w.key == key {
					want = append(want, w)
				}
			}
			op := opGet(key)
			op.Rev = tt.rev
			res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{op}})
			wantKVs(t, fmt.Sprintf("Range of %s at revision %d", key, tt.rev), res.Responses[0].Range, want, false)
		}
	}

	cur := mustCurrentRevision(t, tb)
	op := opRange(dir, prefixEnd(dir))
	op.Rev = cur
	res := mustTxn(t, tb, kv.Txn{Success: []kv.Op{op}})
	wantKVs(t, "Range at the current revision", res.Responses[0].Range, []kvWant{b2, c1}, false)

	for _, key := range []string{a, dir} {
		op := opRange(key, "")
		if key == dir {
			op.End = prefixEnd(dir)
		}
		op.Rev = cur + 1000
		_, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{op}})
		wantErr(t, "Range at a future revision", err, kv.ErrFutureRevision, "")
		_, err = tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{opPut(a, "a3"), op}})
		wantErr(t, "Range at a future revision after a Put", err, kv.ErrFutureRevision, "")
		wantNotFound(t, e, a)
	}

	// The revision a transaction writes at is not one its Ranges may read
	// at: they are checked against the revision before it.
	quietly(t, "a Range at the revision of its own transaction", func(n int) bool {
		k := e.key(fmt.Sprintf("future-%d", n))
		before := mustCurrentRevision(t, tb)
		op := opGet(k)
		op.Rev = before + 1
		_, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{opPut(k, "v"), op}})
		if err == nil && mustCurrentRevision(t, tb) > before+1 {
			return false // another write made before+1 a past revision
		}
		wantErr(t, "Range at the revision of its own transaction", err, kv.ErrFutureRevision, "")
		wantNotFound(t, e, k)
		return true
	})

	// In a transaction that writes: the past as it was, the present with
	// the transaction's writes.
	op = opRange(dir, prefixEnd(dir))
	op.Rev = r6
	res = mustTxn(t, tb, kv.Txn{Success: []kv.Op{opPut(a, "a3"), opDelete(c, ""), op, opRange(dir, prefixEnd(dir))}})
	wantKVs(t, "Range at a past revision after writes", res.Responses[2].Range, []kvWant{a2, b2, c1}, false)
	wantKVs(t, "Range after writes", res.Responses[3].Range, []kvWant{{a, "a3", res.Revision, res.Revision, 1, 0}, b2}, false)
	// The revision just before the transaction's is as r7 left it.
	op.Rev = res.Revision - 1
	before := mustTxn(t, tb, kv.Txn{Success: []kv.Op{op}})
	wantKVs(t, "Range just before the transaction", before.Responses[0].Range, []kvWant{b2, c1}, false)
}

// mustDeleteRev deletes key and returns the revision of the delete.
func mustDeleteRev(t *testing.T, e *env, key string) int64 {
	t.Helper()
	rev, err := e.b.Delete(ctx(t), key, 0)
	if err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	return rev
}

// checkTxnRangeCompacted: a Range at a revision whose history a backend no
// longer holds fails with ErrCompacted; until then, it reads what was.
// (How long history is held is each backend's: etcd until compacted, bolt
// a number of versions per key.)
func checkTxnRangeCompacted(t *testing.T, e *env) {
	tb := txnOf(t, e)
	dir := e.key("c/")
	k := dir + "k"
	first := mustCreate(t, e, k, "v0", 0)
	rev := first
	for i := 1; i < 30; i++ {
		rev = mustUpdate(t, e, k, fmt.Sprintf("v%d", i), rev)
	}
	for _, op := range []kv.Op{opGet(k), opRange(dir, prefixEnd(dir))} {
		op.Rev = first
		res, err := tb.Txn(ctx(t), kv.Txn{Success: []kv.Op{op}})
		if err != nil {
			wantErr(t, "Range at the first of 30 versions", err, kv.ErrCompacted, "")
			continue
		}
		wantKVs(t, "Range at the first of 30 versions", res.Responses[0].Range, []kvWant{{k, "v0", first, first, 1, 0}}, false)
	}
}
