package kvtest

import (
	"errors"
	"fmt"
	"strings"
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

// version is one value of one key, as History reports it.
type version struct {
	key, value string
	modRev     int64
}

// historyOf returns the distinct versions History visits under prefix.
func historyOf(t *testing.T, e *env, prefix string) map[version]bool {
	t.Helper()
	got := map[version]bool{}
	err := e.b.History(ctx(t), prefix, func(v kv.KV) error {
		if !strings.HasPrefix(v.Key, prefix) {
			t.Errorf("History(%q) visited %q", prefix, v.Key)
		}
		got[version{v.Key, string(v.Value), v.ModRevision}] = true
		return nil
	})
	if err != nil {
		t.Fatalf("History(%q): %v", prefix, err)
	}
	return got
}

// checkHistory: History visits the superseded and deleted values that
// GetRevision can still return, under the prefix only, and not the current
// values.
func checkHistory(t *testing.T, e *env) {
	k, other, gone, outside := e.key("dir/k"), e.key("dir/other"), e.key("dir/gone"), e.key("outside")
	r1 := mustCreate(t, e, k, "v1", 0)
	r2 := mustUpdate(t, e, k, "v2", r1)
	mustUpdate(t, e, k, "v3", r2)
	mustCreate(t, e, other, "only", 0)
	rg := mustCreate(t, e, gone, "g1", 0)
	mustDelete(t, e, gone, rg)
	ro := mustCreate(t, e, outside, "o1", 0)
	mustUpdate(t, e, outside, "o2", ro)

	want := map[version]bool{
		{k, "v1", r1}:    true,
		{k, "v2", r2}:    true,
		{gone, "g1", rg}: true,
	}
	got := historyOf(t, e, e.key("dir/"))
	for v := range want {
		if !got[v] {
			t.Errorf("History did not visit %q = %q at revision %d", v.key, v.value, v.modRev)
		}
	}
	for v := range got {
		if !want[v] {
			t.Errorf("History visited %q = %q at revision %d, want only past values under the prefix", v.key, v.value, v.modRev)
		}
		if value, err := e.b.GetRevision(ctx(t), v.key, v.modRev); err != nil || string(value) != v.value {
			t.Errorf("History visited %q = %q at revision %d, which GetRevision reads as %q, %v", v.key, v.value, v.modRev, value, err)
		}
	}
	if got := historyOf(t, e, e.key("nothing-here/")); len(got) != 0 {
		t.Errorf("History of an empty prefix visited %d values", len(got))
	}
}

// checkHistoryStops: History returns fn's first error, at once.
func checkHistoryStops(t *testing.T, e *env) {
	k := e.key("k")
	rev := mustCreate(t, e, k, "v0", 0)
	for i := 1; i <= 3; i++ {
		rev = mustUpdate(t, e, k, fmt.Sprintf("v%d", i), rev)
	}
	stop := errors.New("stop here")
	calls := 0
	err := e.b.History(ctx(t), e.key(""), func(kv.KV) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("History with fn failing: %v after %d calls, want %v after 1", err, calls, stop)
	}
}
