package etcdkv_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
)

// TestHistoryCompacted: after a compaction, History visits exactly what
// GetRevision can still return: the values as of the compaction revision
// that were superseded since, and the later ones, not what was compacted
// away nor the current values.
func TestHistoryCompacted(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b := open(t, c)
	ctx := t.Context()

	type write struct {
		key, value string
		del        bool
	}
	revs := map[string]int64{} // "key=value" → ModRevision
	last := map[string]int64{} // key → current ModRevision
	apply := func(ws ...write) {
		t.Helper()
		for _, w := range ws {
			var (
				rev int64
				err error
			)
			if w.del {
				_, err = b.Delete(ctx, w.key, 0)
			} else {
				rev, err = b.Update(ctx, w.key, []byte(w.value), 0)
				revs[w.key+"="+w.value] = rev
				last[w.key] = rev
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	apply(
		write{"/h/a", "a0", false},      // current throughout: never visited
		write{"/h/d", "d0", false},      // deleted before the compaction: gone
		write{"/h/d", "", true},         //
		write{"/h/e", "e0", false},      // deleted after: readable as of the compaction
		write{"/h/k", "k0", false},      // superseded before the compaction: gone
		write{"/h/k", "k1", false},      // the value as of the compaction
		write{"/x/k", "outside", false}, // not under the prefix
	)
	compactRev := last["/h/k"]
	if err := c.Compact(ctx, compactRev); err != nil {
		t.Fatal(err)
	}
	apply(
		write{"/h/k", "k2", false},
		write{"/h/k", "k3", false}, // current
		write{"/h/e", "", true},
		write{"/x/k", "outside2", false},
	)

	got := map[string]int64{}
	err := b.History(ctx, "/h/", func(v kv.KV) error {
		got[v.Key+"="+string(v.Value)] = v.ModRevision
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, pair := range []string{"/h/e=e0", "/h/k=k1", "/h/k=k2"} {
		want[pair] = revs[pair]
	}
	if !maps.Equal(got, want) {
		t.Fatalf("History after compaction at %d visited %v, want %v", compactRev, fmt.Sprint(sorted(got)), fmt.Sprint(sorted(want)))
	}
	for _, pair := range []string{"/h/e=e0", "/h/k=k1", "/h/k=k2"} {
		key := pair[:4]
		rev := max(revs[pair], compactRev)
		if v, err := b.GetRevision(ctx, key, rev); err != nil || key+"="+string(v) != pair {
			t.Errorf("GetRevision(%s, %d) = %q, %v; want the value History visited", key, rev, v, err)
		}
	}
}

func sorted(m map[string]int64) []string {
	return slices.Sorted(maps.Keys(m))
}
