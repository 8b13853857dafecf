package kvtest

import (
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// checkGetNotFound: Get of a missing key is ErrNotFound, naming the key.
func checkGetNotFound(t *testing.T, e *env) {
	wantNotFound(t, e, e.key("missing"))
	// A key that only prefixes an existing one is still missing.
	mustCreate(t, e, e.key("a/b"), "v", 0)
	wantNotFound(t, e, e.key("a"))
	wantNotFound(t, e, e.key("a/"))
}

// checkCreate: Create writes a missing key and returns its revision, with
// CreateRevision == ModRevision; a second Create is ErrExists and changes
// nothing.
func checkCreate(t *testing.T, e *env) {
	k := e.key("k")
	rev := mustCreate(t, e, k, "v1", 0)
	got := mustGet(t, e, k)
	wantKV(t, got, k, "v1", rev, rev)
	if got.Lease != 0 {
		t.Errorf("Get(%q).Lease = %d, want 0", k, got.Lease)
	}

	_, err := e.b.Create(ctx(t), k, []byte("v2"), 0)
	wantErr(t, "second Create", err, kv.ErrExists, k)
	wantKV(t, mustGet(t, e, k), k, "v1", rev, rev)

	// An empty value is a value.
	empty := e.key("empty")
	rev = mustCreate(t, e, empty, "", 0)
	wantKV(t, mustGet(t, e, empty), empty, "", rev, rev)
}

// checkRevisionsIncrease: every write, deletes included, moves to a new,
// strictly greater revision.
func checkRevisionsIncrease(t *testing.T, e *env) {
	var last int64
	next := func(what string, rev int64, minStep int64) int64 {
		t.Helper()
		if rev < last+minStep {
			t.Fatalf("%s returned revision %d, want >= %d (previous write at %d)", what, rev, last+minStep, last)
		}
		last = rev
		return rev
	}
	a, b, c := e.key("a"), e.key("b"), e.key("c")
	next("Create(a)", mustCreate(t, e, a, "a", 0), 1)
	revB := next("Create(b)", mustCreate(t, e, b, "b", 0), 1)
	next("Create(c)", mustCreate(t, e, c, "c", 0), 1)
	next("Update(a)", mustUpdate(t, e, a, "a2", 0), 1)
	next("Update(b)", mustUpdate(t, e, b, "b2", revB), 1)
	mustDelete(t, e, a, 0)
	// The delete took a revision of its own.
	next("Create(a) after Delete(a)", mustCreate(t, e, a, "a3", 0), 2)
	mustDelete(t, e, c, 0)
	next("Update(c) after Delete(c)", mustUpdate(t, e, c, "c3", 0), 2)
}

// checkUpdate: Update with version 0 writes unconditionally and creates a
// missing key; with a version it writes only over that ModRevision.
func checkUpdate(t *testing.T, e *env) {
	tests := []struct {
		name string
		// setup writes the key's history and returns the version to update
		// with; existed says whether the key is there afterwards.
		setup   func(t *testing.T, key string) (version int64, existed bool)
		wantErr error
	}{{
		name: "unconditional creates missing",
		setup: func(t *testing.T, key string) (int64, bool) {
			return 0, false
		},
	}, {
		name: "unconditional overwrites",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "old", 0)
			mustUpdate(t, e, key, "older", rev)
			return 0, true
		},
	}, {
		name: "matching version",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "old", 0)
			return mustUpdate(t, e, key, "older", rev), true
		},
	}, {
		name: "stale version",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "old", 0)
			mustUpdate(t, e, key, "current", rev)
			return rev, true
		},
		wantErr: kv.ErrBadVersion,
	}, {
		name: "future version",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "current", 0)
			return rev + 1000, true
		},
		wantErr: kv.ErrBadVersion,
	}, {
		name: "missing key with version",
		setup: func(t *testing.T, key string) (int64, bool) {
			return 1, false
		},
		wantErr: kv.ErrBadVersion,
	}, {
		name: "deleted key with its last version",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "old", 0)
			mustDelete(t, e, key, 0)
			return rev, false
		},
		wantErr: kv.ErrBadVersion,
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.key("update/" + string(rune('a'+i)))
			version, existed := tt.setup(t, key)
			var before kv.KV
			if existed {
				before = mustGet(t, e, key)
			}

			rev, err := e.b.Update(ctx(t), key, []byte("new"), version)
			if tt.wantErr != nil {
				wantErr(t, "Update", err, tt.wantErr, key)
				if existed {
					wantKV(t, mustGet(t, e, key), key, string(before.Value), before.ModRevision, before.CreateRevision)
				} else {
					wantNotFound(t, e, key)
				}
				return
			}
			if err != nil {
				t.Fatalf("Update(%q, version %d): %v", key, version, err)
			}
			if existed {
				if rev <= before.ModRevision {
					t.Fatalf("Update returned revision %d, not after the previous write at %d", rev, before.ModRevision)
				}
				wantKV(t, mustGet(t, e, key), key, "new", rev, before.CreateRevision)
			} else {
				wantKV(t, mustGet(t, e, key), key, "new", rev, rev)
			}
		})
	}
}

// checkDelete: Delete removes a key; ErrNotFound if it is missing (whatever
// the version), ErrBadVersion if a version is given and the key is at
// another one.
func checkDelete(t *testing.T, e *env) {
	tests := []struct {
		name string
		// setup writes the key's history and returns the version to delete
		// with; existed says whether the key is there afterwards.
		setup   func(t *testing.T, key string) (version int64, existed bool)
		wantErr error
	}{{
		name: "missing unconditional",
		setup: func(t *testing.T, key string) (int64, bool) {
			return 0, false
		},
		wantErr: kv.ErrNotFound,
	}, {
		name: "missing with version",
		setup: func(t *testing.T, key string) (int64, bool) {
			return 1, false
		},
		wantErr: kv.ErrNotFound,
	}, {
		name: "already deleted",
		setup: func(t *testing.T, key string) (int64, bool) {
			mustCreate(t, e, key, "v", 0)
			mustDelete(t, e, key, 0)
			return 0, false
		},
		wantErr: kv.ErrNotFound,
	}, {
		name: "stale version",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "v", 0)
			mustUpdate(t, e, key, "v2", rev)
			return rev, true
		},
		wantErr: kv.ErrBadVersion,
	}, {
		name: "matching version",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "v", 0)
			return mustUpdate(t, e, key, "v2", rev), true
		},
	}, {
		name: "unconditional",
		setup: func(t *testing.T, key string) (int64, bool) {
			rev := mustCreate(t, e, key, "v", 0)
			mustUpdate(t, e, key, "v2", rev)
			return 0, true
		},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.key("delete/" + string(rune('a'+i)))
			version, existed := tt.setup(t, key)
			var before kv.KV
			if existed {
				before = mustGet(t, e, key)
			}

			delRev, err := e.b.Delete(ctx(t), key, version)
			if tt.wantErr != nil {
				wantErr(t, "Delete", err, tt.wantErr, key)
				if existed {
					wantKV(t, mustGet(t, e, key), key, string(before.Value), before.ModRevision, before.CreateRevision)
				}
				return
			}
			if err != nil {
				t.Fatalf("Delete(%q, version %d): %v", key, version, err)
			}
			wantNotFound(t, e, key)
			if delRev <= before.ModRevision {
				t.Fatalf("Delete(%q) returned revision %d, want > the key's last revision %d", key, delRev, before.ModRevision)
			}
			// The key can be created again, from scratch, at a later revision.
			rev := mustCreate(t, e, key, "again", 0)
			if rev <= delRev {
				t.Fatalf("Create after Delete returned revision %d, want > the delete's %d", rev, delRev)
			}
			wantKV(t, mustGet(t, e, key), key, "again", rev, rev)
		})
	}
}

// checkErrorsNameKey: every error a backend returns for a key wraps the kv
// error (errors.Is) and names the key, whichever operation failed.
func checkErrorsNameKey(t *testing.T, e *env) {
	exists := e.key("errors/exists")
	rev := mustCreate(t, e, exists, "v", 0)
	missing := e.key("errors/missing")

	tests := []struct {
		name   string
		key    string
		target error
		op     func(key string) error
	}{
		{"Get missing", missing, kv.ErrNotFound, func(key string) error {
			_, err := e.b.Get(ctx(t), key)
			return err
		}},
		{"GetRevision missing", missing, kv.ErrNotFound, func(key string) error {
			_, err := e.b.GetRevision(ctx(t), key, rev)
			return err
		}},
		{"Create existing", exists, kv.ErrExists, func(key string) error {
			_, err := e.b.Create(ctx(t), key, []byte("x"), 0)
			return err
		}},
		{"Update other version", exists, kv.ErrBadVersion, func(key string) error {
			_, err := e.b.Update(ctx(t), key, []byte("x"), rev+1000)
			return err
		}},
		{"Update missing with version", missing, kv.ErrBadVersion, func(key string) error {
			_, err := e.b.Update(ctx(t), key, []byte("x"), rev)
			return err
		}},
		{"Delete missing", missing, kv.ErrNotFound, func(key string) error {
			_, err := e.b.Delete(ctx(t), key, 0)
			return err
		}},
		{"Delete other version", exists, kv.ErrBadVersion, func(key string) error {
			_, err := e.b.Delete(ctx(t), key, rev+1000)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.name, tt.op(tt.key), tt.target, tt.key)
		})
	}
}
