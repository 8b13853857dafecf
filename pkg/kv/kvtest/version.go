package kvtest

import (
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// checkVersion: a key's Version is 1 when created and goes up by one with
// each write; a key deleted and created again starts over at 1. Get, List,
// watch events and History report it.
func checkVersion(t *testing.T, e *env) {
	k := e.key("k")
	w := newWatcher(t, e, k, false, 0)
	r1 := mustCreate(t, e, k, "v1", 0)
	r2 := mustUpdate(t, e, k, "v2", r1)
	r3 := mustUpdate(t, e, k, "v3", 0)
	wantKVs(t, "Get", []kv.KV{mustGet(t, e, k)}, []kvWant{{k, "v3", r3, r1, 3, 0}}, false)
	for _, keysOnly := range []bool{false, true} {
		kvs, _, err := e.b.List(ctx(t), e.prefix, keysOnly)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		wantKVs(t, "List", kvs, []kvWant{{k, "v3", r3, r1, 3, 0}}, keysOnly)
	}
	for i, rev := range []int64{r1, r2, r3} {
		if ev := w.wantPut(k, []string{"v1", "v2", "v3"}[i], rev); ev.KV.Version != int64(i+1) {
			t.Errorf("event of the write at %d: Version %d, want %d", rev, ev.KV.Version, i+1)
		}
	}
	err := e.b.History(ctx(t), k, func(old kv.KV) error {
		if old.Key != k {
			return nil
		}
		if want := map[int64]int64{r1: 1, r2: 2}[old.ModRevision]; old.Version != want {
			t.Errorf("History: %s, want Version %d", kvString(old), want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("History: %v", err)
	}

	mustDelete(t, e, k, 0)
	w.wantDelete(k)
	r4 := mustCreate(t, e, k, "again", 0)
	wantKVs(t, "Get after delete and create", []kv.KV{mustGet(t, e, k)}, []kvWant{{k, "again", r4, r4, 1, 0}}, false)
	if ev := w.wantPut(k, "again", r4); ev.KV.Version != 1 {
		t.Errorf("event of the re-creation: Version %d, want 1", ev.KV.Version)
	}
}
