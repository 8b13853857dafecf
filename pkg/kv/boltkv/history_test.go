package boltkv

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// historyEntries counts the history bucket's entries for key, marker
// included.
func historyEntries(t *testing.T, b *Backend, key string) int {
	t.Helper()
	n := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		prefix := historyPrefix(key)
		c := tx.Bucket(bucketHistory).Cursor()
		for k, _ := c.Seek(prefix); k != nil && isHistoryOf(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHistoryPruning(t *testing.T) {
	const keep = 3
	ctx := t.Context()
	b, _ := openTest(t, Options{HistoryPerKey: keep, NoSync: true})
	if _, err := b.Create(ctx, "/first", nil, 0); err != nil { // so that revs[0]-1 is a revision
		t.Fatal(err)
	}
	var revs []int64
	for i := range 10 {
		rev, err := b.Update(ctx, "/k", fmt.Appendf(nil, "v%d", i), 0)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	// Entries: keep superseded versions plus the compaction marker.
	if got := historyEntries(t, b, "/k"); got != keep+1 {
		t.Errorf("history holds %d entries for /k, want %d", got, keep+1)
	}
	for i, rev := range revs {
		got, err := b.GetRevision(ctx, "/k", rev)
		if i < len(revs)-1-keep {
			if !errors.Is(err, kv.ErrCompacted) {
				t.Errorf("GetRevision(v%d at %d) = %q, %v; want ErrCompacted", i, rev, got, err)
			}
			continue
		}
		if err != nil || string(got) != fmt.Sprintf("v%d", i) {
			t.Errorf("GetRevision(v%d at %d) = %q, %v", i, rev, got, err)
		}
	}
	// A pruned key's past is compacted, not missing: it did exist.
	if _, err := b.GetRevision(ctx, "/k", revs[0]-1); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("GetRevision before the retained history: %v, want ErrCompacted", err)
	}
}

func TestHistoryCountsTombstones(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{HistoryPerKey: 2, NoSync: true})
	r1, _ := b.Create(ctx, "/k", []byte("v1"), 0)
	if _, err := b.Delete(ctx, "/k", 0); err != nil {
		t.Fatal(err)
	}
	// History: v1@r1, tombstone. Re-create and update: v2 moves to history
	// and v1 is pruned.
	r3, _ := b.Create(ctx, "/k", []byte("v2"), 0)
	if _, err := b.Update(ctx, "/k", []byte("v3"), r3); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRevision(ctx, "/k", r1); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("GetRevision(pruned) = %v, want ErrCompacted", err)
	}
	if _, err := b.GetRevision(ctx, "/k", r3-1); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("GetRevision(deleted) = %v, want ErrNotFound", err)
	}
	if got, err := b.GetRevision(ctx, "/k", r3); err != nil || string(got) != "v2" {
		t.Errorf("GetRevision(r3) = %q, %v; want v2", got, err)
	}
}

func TestDeletedKeysHistoryDropped(t *testing.T) {
	const retention = 5
	ctx := t.Context()
	b, _ := openTest(t, Options{DeletedRetention: retention, NoSync: true})
	r1, _ := b.Create(ctx, "/gone", []byte("v1"), 0)
	if _, err := b.Update(ctx, "/gone", []byte("v2"), r1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Delete(ctx, "/gone", 0); err != nil {
		t.Fatal(err)
	}
	// A key deleted, then re-created, keeps its history.
	rb, _ := b.Create(ctx, "/back", []byte("b1"), 0)
	if _, err := b.Delete(ctx, "/back", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/back", []byte("b2"), 0); err != nil {
		t.Fatal(err)
	}
	if got := historyEntries(t, b, "/gone"); got != 3 {
		t.Fatalf("history of /gone holds %d entries before retention, want 3", got)
	}
	for i := range 2 * retention {
		if _, err := b.Update(ctx, "/other", fmt.Appendf(nil, "%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := historyEntries(t, b, "/gone"); got != 0 {
		t.Errorf("history of /gone holds %d entries after retention, want 0", got)
	}
	if _, err := b.GetRevision(ctx, "/gone", r1); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("GetRevision(dropped history) = %v, want ErrCompacted", err)
	}
	if got, err := b.GetRevision(ctx, "/back", rb); err != nil || string(got) != "b1" {
		t.Errorf("GetRevision(re-created key's old value) = %q, %v; want b1", got, err)
	}
	// Past the dropped revisions, a key that is not there is just missing.
	_, rev, _ := b.List(ctx, "", true)
	if _, err := b.GetRevision(ctx, "/gone", rev); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("GetRevision(/gone, now) = %v, want ErrNotFound", err)
	}
	var deleted int
	_ = b.db.View(func(tx *bolt.Tx) error {
		deleted = tx.Bucket(bucketDeleted).Stats().KeyN
		return nil
	})
	if deleted != 0 {
		t.Errorf("deleted index holds %d entries after retention, want 0", deleted)
	}
}

func TestRecordEncoding(t *testing.T) {
	tests := []record{
		{},
		{value: []byte("v"), modRev: 1, createRev: 1, version: 1},
		{value: bytes.Repeat([]byte{0xff}, 1000), modRev: 1 << 40, createRev: 3, version: 1<<33 + 7, lease: 1<<62 + 5},
		{modRev: 7, tombstone: true},
	}
	for _, want := range tests {
		got, err := decodeRecord(want.encode(), true)
		if err != nil {
			t.Fatalf("decode(%+v): %v", want, err)
		}
		if !bytes.Equal(got.value, want.value) || got.modRev != want.modRev || got.createRev != want.createRev ||
			got.version != want.version || got.lease != want.lease || got.tombstone != want.tombstone {
			t.Errorf("round trip of %+v gave %+v", want, got)
		}
		if keysOnly, _ := decodeRecord(want.encode(), false); keysOnly.value != nil {
			t.Errorf("decode without value returned a value")
		}
	}
	// The first format, without a version, still decodes: version 1.
	v1 := []byte{recordFormatV1 | flagTombstone, 9, 5, 3, 'v', 'a', 'l'}
	got, err := decodeRecord(v1, true)
	if err != nil {
		t.Fatalf("decode of the first format: %v", err)
	}
	if want := (record{value: []byte("val"), modRev: 9, createRev: 5, version: 1, lease: 3, tombstone: true}); !bytes.Equal(got.value, want.value) ||
		got.modRev != want.modRev || got.createRev != want.createRev || got.version != want.version || got.lease != want.lease || !got.tombstone {
		t.Errorf("decode of the first format gave %+v, want %+v", got, want)
	}
	for _, bad := range [][]byte{nil, {0}, {recordFormat}, {recordFormat, 0x80}, {recordFormat, 1, 1, 1}, {recordFormatV1, 1, 1}, {3 << 4, 1, 1, 1, 1}} {
		if _, err := decodeRecord(bad, true); !errors.Is(err, errCorrupt) {
			t.Errorf("decode(%x) = %v, want errCorrupt", bad, err)
		}
	}
}

func TestHistoryKeysDoNotCollide(t *testing.T) {
	// "a" followed by bytes that look like a revision must not read as an
	// entry of "a".
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	long := "a" + string(be64(5))
	r1, _ := b.Update(ctx, long, []byte("x"), 0)
	if _, err := b.Update(ctx, long, []byte("y"), r1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRevision(ctx, "a", r1+1); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("GetRevision(a) = %v, want ErrNotFound", err)
	}
}

// TestHistoryVisits: History visits the versions GetRevision can read and
// no pruned or dropped one, across more entries than one read transaction
// takes.
func TestHistoryVisits(t *testing.T) {
	const keep = 3
	ctx := t.Context()
	b, _ := openTest(t, Options{HistoryPerKey: keep, DeletedRetention: 5, NoSync: true})
	// /k: 10 versions, of which the keep latest superseded remain.
	for i := range 10 {
		if _, err := b.Update(ctx, "/p/k", fmt.Appendf(nil, "v%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	// /gone: deleted, then its history dropped by later writes.
	if _, err := b.Update(ctx, "/p/gone", []byte("g"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Delete(ctx, "/p/gone", 0); err != nil {
		t.Fatal(err)
	}
	// Many keys with one superseded version each, more than a batch.
	const many = historyBatch + 100
	for i := range many {
		key := fmt.Sprintf("/p/many/%04d", i)
		for _, v := range []string{"old", "new"} {
			if _, err := b.Update(ctx, key, []byte(v), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := b.Update(ctx, "/q/outside", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(ctx, "/q/outside", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}

	got := map[string]int{}
	err := b.History(ctx, "/p/", func(v kv.KV) error {
		if _, err := b.GetRevision(ctx, v.Key, v.ModRevision); err != nil {
			t.Errorf("History visited %s at %d, which GetRevision cannot read: %v", v.Key, v.ModRevision, err)
		}
		if strings.HasPrefix(v.Key, "/p/many/") {
			if string(v.Value) != "old" {
				t.Errorf("History visited %s = %q, want only the superseded value", v.Key, v.Value)
			}
			got["many"]++
			return nil
		}
		got[v.Key+"="+string(v.Value)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"/p/k=v6": 1, "/p/k=v7": 1, "/p/k=v8": 1, "many": many}
	if !maps.Equal(got, want) {
		t.Fatalf("History visited %v, want %v", got, want)
	}
}
