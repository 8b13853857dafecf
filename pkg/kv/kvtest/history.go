package kvtest

import (
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// checkGetRevision: GetRevision returns a key's value as of a revision:
// the latest write at or before it, ErrNotFound before the key existed.
func checkGetRevision(t *testing.T, e *env) {
	k, other := e.key("k"), e.key("other")
	// A write first, so that r1-1 is a real revision (0 is not one).
	rOther := mustCreate(t, e, other, "o", 0)
	r1 := mustCreate(t, e, k, "v1", 0)
	rOther = mustUpdate(t, e, other, "o2", rOther) // a revision where k did not change
	r2 := mustUpdate(t, e, k, "v2", r1)
	r3 := mustUpdate(t, e, k, "v3", r2)
	rLast := mustUpdate(t, e, other, "o3", rOther)

	tests := []struct {
		name string
		rev  int64
		want string // "" means ErrNotFound
	}{
		{"before the key existed", r1 - 1, ""},
		{"first value", r1, "v1"},
		{"between writes", rOther, "v1"},
		{"second value", r2, "v2"},
		{"third value", r3, "v3"},
		{"after the last write", rLast, "v3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.b.GetRevision(ctx(t), k, tt.rev)
			if tt.want == "" {
				wantErr(t, "GetRevision", err, kv.ErrNotFound, k)
				return
			}
			if err != nil {
				t.Fatalf("GetRevision(%q, %d): %v", k, tt.rev, err)
			}
			if string(got) != tt.want {
				t.Fatalf("GetRevision(%q, %d) = %q, want %q", k, tt.rev, got, tt.want)
			}
		})
	}

	missing := e.key("missing")
	_, err := e.b.GetRevision(ctx(t), missing, rLast)
	wantErr(t, "GetRevision(never written key)", err, kv.ErrNotFound, missing)
}

// checkGetRevisionAfterDelete: after a delete the old values stay readable
// at their revisions, and the key reads as missing from the delete on,
// until it is created again.
func checkGetRevisionAfterDelete(t *testing.T, e *env) {
	k := e.key("k")
	// A write first, so that r1-1 is a real revision (0 is not one).
	mustCreate(t, e, e.key("before"), "b", 0)
	r1 := mustCreate(t, e, k, "v1", 0)
	r2 := mustUpdate(t, e, k, "v2", r1)
	mustDelete(t, e, k, r2)
	_, rDeleted, err := e.b.List(ctx(t), e.key(""), true)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	r3 := mustCreate(t, e, k, "v3", 0)

	tests := []struct {
		name string
		rev  int64
		want string // "" means ErrNotFound
	}{
		{"before the key existed", r1 - 1, ""},
		{"first value", r1, "v1"},
		{"last value before the delete", r2, "v2"},
		{"after the delete", rDeleted, ""},
		{"just before re-creation", r3 - 1, ""},
		{"re-created", r3, "v3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.b.GetRevision(ctx(t), k, tt.rev)
			if tt.want == "" {
				wantErr(t, "GetRevision", err, kv.ErrNotFound, k)
				return
			}
			if err != nil {
				t.Fatalf("GetRevision(%q, %d): %v", k, tt.rev, err)
			}
			if string(got) != tt.want {
				t.Fatalf("GetRevision(%q, %d) = %q, want %q", k, tt.rev, got, tt.want)
			}
		})
	}
}
