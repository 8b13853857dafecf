package vschemastore_test

import (
	"testing"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/vschemastore"
)

func TestDiffKeyspaces(t *testing.T) {
	base := sharded(map[string]*vschemapb.Table{"a": {ColumnVindexes: primary("id")}, "b": {ColumnVindexes: primary("id")}})
	changed := sharded(map[string]*vschemapb.Table{"a": {ColumnVindexes: primary("user_id")}, "c": {ColumnVindexes: primary("id")}})
	changed.Vindexes["xx"] = &vschemapb.Vindex{Type: "xxhash"}
	changed.RequireExplicitRouting = true
	cases := []struct {
		name     string
		old, new *vschemapb.Keyspace
		paths    []string
		summary  string
	}{
		{"equal", base, base, nil, "no change"},
		{"created", nil, base, []string{"tables.a", "tables.b", "vindexes.hash", "sharded"}, "created, 2 tables added, 1 vindex added, sharded changed"},
		{"deleted", base, nil, []string{"tables.a", "tables.b", "vindexes.hash", "sharded"}, "deleted, 2 tables removed, 1 vindex removed, sharded changed"},
		{"changed", base, changed, []string{"tables.a", "tables.b", "tables.c", "vindexes.xx", "require_explicit_routing"},
			"1 table added, 1 table removed, 1 table changed, 1 vindex added, require_explicit_routing changed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := vschemastore.DiffKeyspaces(c.old, c.new)
			var paths []string
			for _, ch := range d.Changes {
				paths = append(paths, ch.Path)
				if (ch.Op == vschemastore.OpAdd) != (ch.Old == nil) || (ch.Op == vschemastore.OpRemove) != (ch.New == nil) {
					t.Errorf("change %s %s: old %s new %s", ch.Op, ch.Path, ch.Old, ch.New)
				}
			}
			if len(paths) != len(c.paths) {
				t.Fatalf("paths %v, want %v", paths, c.paths)
			}
			for i := range paths {
				if paths[i] != c.paths[i] {
					t.Fatalf("paths %v, want %v", paths, c.paths)
				}
			}
			if d.Summary != c.summary || d.Empty() != (c.summary == "no change") {
				t.Fatalf("summary %q, want %q", d.Summary, c.summary)
			}
		})
	}
}

func TestDiffRules(t *testing.T) {
	r := func(from ...string) *vschemapb.RoutingRules {
		rr := &vschemapb.RoutingRules{}
		for _, f := range from {
			rr.Rules = append(rr.Rules, &vschemapb.RoutingRule{FromTable: f, ToTables: []string{"ks." + f}})
		}
		return rr
	}
	d := vschemastore.DiffRules(r("a", "b", "c"), r("b", "c", "d", "e"))
	if d.Added != 2 || d.Removed != 1 || d.OldRules != 3 || d.NewRules != 4 {
		t.Fatalf("%+v", d)
	}
	if d := vschemastore.DiffRules(nil, r()); !d.Empty() {
		t.Fatalf("%+v", d)
	}
}
