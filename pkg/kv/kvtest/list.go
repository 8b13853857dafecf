package kvtest

import (
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// checkList: List returns the keys under a prefix sorted by key, with their
// values and revisions (keysOnly: same, Value nil), and a revision at least
// every listed ModRevision.
func checkList(t *testing.T, e *env) {
	// Created out of order, so that sorting is the backend's doing.
	names := []string{"dir/c", "dir/a", "dir/b/2", "dir/b/1", "other"}
	revs := map[string]int64{}
	for _, name := range names {
		revs[e.key(name)] = mustCreate(t, e, e.key(name), "value of "+name, 0)
	}
	updated := e.key("dir/a")
	revs[updated] = mustUpdate(t, e, updated, "value of dir/a", 0)
	wantKeys := []string{e.key("dir/a"), e.key("dir/b/1"), e.key("dir/b/2"), e.key("dir/c")}

	for _, keysOnly := range []bool{false, true} {
		kvs, rev, err := e.b.List(ctx(t), e.key("dir/"), keysOnly)
		if err != nil {
			t.Fatalf("List(keysOnly %v): %v", keysOnly, err)
		}
		if len(kvs) != len(wantKeys) {
			t.Fatalf("List(keysOnly %v) returned %d keys %v, want %v", keysOnly, len(kvs), keyList(kvs), wantKeys)
		}
		for i, got := range kvs {
			key := wantKeys[i]
			if got.Key != key {
				t.Fatalf("List(keysOnly %v) returned keys %v, want %v", keysOnly, keyList(kvs), wantKeys)
			}
			full := mustGet(t, e, key)
			if got.ModRevision != revs[key] || got.CreateRevision != full.CreateRevision || got.Lease != 0 {
				t.Errorf("List(keysOnly %v)[%q] = {ModRevision %d CreateRevision %d Lease %d}, want {%d %d 0}",
					keysOnly, key, got.ModRevision, got.CreateRevision, got.Lease, revs[key], full.CreateRevision)
			}
			if keysOnly && got.Value != nil {
				t.Errorf("List(keysOnly)[%q].Value = %q, want nil", key, got.Value)
			}
			if !keysOnly && string(got.Value) != string(full.Value) {
				t.Errorf("List[%q].Value = %q, want %q", key, got.Value, full.Value)
			}
			if got.ModRevision > rev {
				t.Errorf("List(keysOnly %v) at revision %d returned %q at ModRevision %d", keysOnly, rev, key, got.ModRevision)
			}
		}
	}
}

// checkListRawPrefix: the prefix is a raw byte prefix: "/a/b" needs no
// trailing slash and matches "/a/b", "/a/b/c" and "/a/bc" alike.
func checkListRawPrefix(t *testing.T, e *env) {
	for _, name := range []string{"a/bc", "a/b/c", "a/b", "a/a", "a/c", "ab"} {
		mustCreate(t, e, e.key(name), name, 0)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/b", []string{"a/b", "a/b/c", "a/bc"}},
		{"a/b/", []string{"a/b/c"}},
		{"a", []string{"a/a", "a/b", "a/b/c", "a/bc", "a/c", "ab"}},
		{"a/", []string{"a/a", "a/b", "a/b/c", "a/bc", "a/c"}},
		{"a/b/c", []string{"a/b/c"}},
		{"a/d", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			kvs, _, err := e.b.List(ctx(t), e.key(tt.prefix), false)
			if err != nil {
				t.Fatalf("List(%q): %v", e.key(tt.prefix), err)
			}
			var want []string
			for _, name := range tt.want {
				want = append(want, e.key(name))
			}
			if got := keyList(kvs); !equalStrings(got, want) {
				t.Fatalf("List(%q) = %v, want %v", e.key(tt.prefix), got, want)
			}
		})
	}
}

// checkListEmpty: listing a prefix nothing is under is no error, and still
// returns a revision.
func checkListEmpty(t *testing.T, e *env) {
	rev := mustCreate(t, e, e.key("x"), "x", 0)
	for _, keysOnly := range []bool{false, true} {
		kvs, listRev, err := e.b.List(ctx(t), e.key("nothing/"), keysOnly)
		if err != nil {
			t.Fatalf("List(empty prefix, keysOnly %v): %v", keysOnly, err)
		}
		if len(kvs) != 0 {
			t.Fatalf("List(empty prefix, keysOnly %v) = %v, want nothing", keysOnly, keyList(kvs))
		}
		if listRev < rev {
			t.Fatalf("List(empty prefix) at revision %d, before the write at %d", listRev, rev)
		}
	}
}

func keyList(kvs []kv.KV) []string {
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, kv.Key)
	}
	return keys
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
