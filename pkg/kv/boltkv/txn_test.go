package boltkv

import (
	"errors"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// rangeAtRev runs a Txn of one Range of [key, end) at rev.
func rangeAtRev(b *Backend, t *testing.T, key, end string, rev int64) ([]kv.KV, error) {
	res, err := b.Txn(t.Context(), kv.Txn{Success: []kv.Op{{Type: kv.OpRange, Key: key, End: end, Rev: rev}}})
	if err != nil {
		return nil, err
	}
	return res.Responses[0].Range, nil
}

// TestTxnRangePrunedHistory: a Range at a revision a key's pruned history
// no longer answers is ErrCompacted, for the key alone or in a range; later
// revisions still read.
func TestTxnRangePrunedHistory(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{HistoryPerKey: 3, NoSync: true})
	var revs []int64
	for i := range 6 {
		rev, err := b.Update(ctx, "/d/k", fmt.Appendf(nil, "v%d", i), 0)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	if _, err := b.Create(ctx, "/d/other", []byte("o"), 0); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ key, end string }{{"/d/k", ""}, {"/d/", "/d0"}, {"/d/", "\x00"}} {
		if _, err := rangeAtRev(b, t, r.key, r.end, revs[0]); !errors.Is(err, kv.ErrCompacted) {
			t.Errorf("Range [%q, %q) at the first revision: %v, want ErrCompacted", r.key, r.end, err)
		}
		got, err := rangeAtRev(b, t, r.key, r.end, revs[3])
		if err != nil || len(got) != 1 || string(got[0].Value) != "v3" || got[0].Version != 4 {
			t.Errorf("Range [%q, %q) at a retained revision: %v, %v; want v3 at version 4", r.key, r.end, got, err)
		}
	}
}

// TestTxnRangeDroppedHistory: once the history of a deleted key is dropped
// (Options.DeletedRetention), a Range at or before its delete is
// ErrCompacted, refused before the transaction writes anything.
func TestTxnRangeDroppedHistory(t *testing.T) {
	const retention = 5
	ctx := t.Context()
	b, _ := openTest(t, Options{DeletedRetention: retention, NoSync: true})
	r1, _ := b.Create(ctx, "/d/gone", []byte("g"), 0)
	del, err := b.Delete(ctx, "/d/gone", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * retention {
		if _, err := b.Update(ctx, "/other", fmt.Appendf(nil, "%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, rev := range []int64{r1, del} {
		if _, err := rangeAtRev(b, t, "/d/", "/d0", rev); !errors.Is(err, kv.ErrCompacted) {
			t.Errorf("Range at %d, at or before a dropped delete at %d: %v, want ErrCompacted", rev, del, err)
		}
	}
	_, err = b.Txn(ctx, kv.Txn{Success: []kv.Op{
		{Type: kv.OpPut, Key: "/d/new", Value: []byte("n")},
		{Type: kv.OpRange, Key: "/d/gone", Rev: r1},
	}})
	if !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("Txn with a Range at a compacted revision: %v, want ErrCompacted", err)
	}
	if _, err := b.Get(ctx, "/d/new"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("the failed Txn wrote: Get = %v", err)
	}
	if got, err := rangeAtRev(b, t, "/d/", "/d0", del+1); err != nil || len(got) != 0 {
		t.Errorf("Range after the dropped delete: %v, %v; want nothing", got, err)
	}
}

// TestVersionOfFirstFormatRecords: a key stored in the first record format
// (no version) reads at Version 1, compares so, and its next write is at
// Version 2, in the current format.
func TestVersionOfFirstFormatRecords(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	rev, err := b.Create(ctx, "/k", []byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the record as the first format stored it.
	v1 := append([]byte{recordFormatV1, byte(rev), byte(rev), 0}, "old"...)
	if err := b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKV).Put([]byte("/k"), v1) }); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, "/k")
	if err != nil || string(got.Value) != "old" || got.Version != 1 || got.ModRevision != rev {
		t.Fatalf("Get of a first-format record: %+v, %v; want old at version 1", got, err)
	}
	res, err := b.Txn(ctx, kv.Txn{
		Compare: []kv.Compare{{Key: "/k", Target: kv.CompareVersion, Result: kv.Equal, Int: 1}},
		Success: []kv.Op{{Type: kv.OpPut, Key: "/k", Value: []byte("new"), PrevKV: true}},
	})
	if err != nil || !res.Succeeded {
		t.Fatalf("Txn on Version 1: %+v, %v", res, err)
	}
	if prev := res.Responses[0].PrevKV; prev == nil || string(prev.Value) != "old" || prev.Version != 1 {
		t.Errorf("PrevKV = %+v, want old at version 1", prev)
	}
	if got, err := b.Get(ctx, "/k"); err != nil || got.Version != 2 || got.CreateRevision != rev {
		t.Fatalf("Get after a write: %+v, %v; want version 2, created at %d", got, err, rev)
	}
	_ = b.db.View(func(tx *bolt.Tx) error {
		if f := tx.Bucket(bucketKV).Get([]byte("/k"))[0] & formatMask; f != recordFormat {
			t.Errorf("record rewritten in format %#x, want %#x", f, recordFormat)
		}
		// The old record went to history as it was.
		if old, err := (history{tx: tx, b: tx.Bucket(bucketHistory)}).recordAt("/k", rev, true); err != nil || old.version != 1 || string(old.value) != "old" {
			t.Errorf("history at %d: %+v, %v; want old at version 1", rev, old, err)
		}
		return nil
	})
}

// TestTxnSameKeyPutAndDelete: etcd allows a put and a later delete of one
// key in nested transactions (see checkIntervals), and a delete from a key
// on then a put of it; both land at one revision, and the key reads, then
// and after, as the last op left it.
func TestTxnSameKeyPutAndDelete(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	old, err := b.Create(ctx, "/k", []byte("old"), 0)
	if err != nil {
		t.Fatal(err)
	}
	nested := func(op kv.Op) kv.Op { return kv.Op{Type: kv.OpTxn, Txn: &kv.Txn{Success: []kv.Op{op}}} }
	res, err := b.Txn(ctx, kv.Txn{Success: []kv.Op{
		nested(kv.Op{Type: kv.OpPut, Key: "/k", Value: []byte("put")}),
		nested(kv.Op{Type: kv.OpDelete, Key: "/k"}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Revision
	if _, err := b.Get(ctx, "/k"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get after put then delete: %v, want ErrNotFound", err)
	}
	if got, err := rangeAtRev(b, t, "/", "0", rev); err != nil || len(got) != 0 {
		t.Errorf("Range at the transaction's revision: %v, %v; want nothing", got, err)
	}
	if got, err := rangeAtRev(b, t, "/", "0", rev-1); err != nil || len(got) != 1 || string(got[0].Value) != "old" || got[0].ModRevision != old {
		t.Errorf("Range before the transaction: %v, %v; want old", got, err)
	}

	res, err = b.Txn(ctx, kv.Txn{Success: []kv.Op{
		{Type: kv.OpPut, Key: "/j", Value: []byte("j")},
		{Type: kv.OpDelete, Key: "/a", End: "\x00"},
		{Type: kv.OpPut, Key: "/k", Value: []byte("last")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "/j"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get(/j) after a delete from /a on: %v, want ErrNotFound", err)
	}
	got, err := b.Get(ctx, "/k")
	if err != nil || string(got.Value) != "last" || got.Version != 1 || got.CreateRevision != res.Revision {
		t.Errorf("Get(/k) = %+v, %v; want last, created at %d", got, err, res.Revision)
	}
	if v, err := b.GetRevision(ctx, "/k", res.Revision); err != nil || string(v) != "last" {
		t.Errorf("GetRevision(/k, %d) = %q, %v; want last", res.Revision, v, err)
	}
}
