package srvvschema_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/srvvschema"
)

// TestSplice: splicing the marshalled SrvVSchema gives what unmarshalling,
// editing and marshalling it would, and reports no change when there is
// none.
func TestSplice(t *testing.T) {
	p := jd.JD().Sized(30)
	base := p.SrvVSchema()
	data, err := base.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	name0, ks0 := p.Keyspace(0)
	changed := proto.Clone(ks0).(*vschemapb.Keyspace)
	changed.RequireExplicitRouting = true
	rules := &vschemapb.SrvVSchema{
		RoutingRules:         &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "a", ToTables: []string{"b.c"}}}},
		KeyspaceRoutingRules: &vschemapb.KeyspaceRoutingRules{},
	}
	sameRules := &vschemapb.SrvVSchema{RoutingRules: base.RoutingRules, ShardRoutingRules: base.ShardRoutingRules, MirrorRules: base.MirrorRules}

	cases := []struct {
		name    string
		edit    srvvschema.Edit
		changed bool
	}{
		{"replace", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{name0: changed}}, true},
		{"same value", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{name0: ks0}}, false},
		{"add", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{"new": {Sharded: true}}}, true},
		{"add empty", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{"new": {}}}, true},
		{"delete", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{name0: nil}}, true},
		{"delete absent", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{"absent": nil}}, false},
		{"rules", srvvschema.Edit{Rules: rules}, true},
		{"same rules", srvvschema.Edit{Rules: sameRules}, false},
		{"several", srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{name0: changed, "new": {}, p.KeyspaceName(5): nil}, Rules: rules}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, ch, err := srvvschema.Splice(data, c.edit)
			if err != nil {
				t.Fatal(err)
			}
			if ch != c.changed {
				t.Fatalf("changed = %v, want %v", ch, c.changed)
			}
			want := proto.Clone(base).(*vschemapb.SrvVSchema)
			for name, ks := range c.edit.Keyspaces {
				if ks == nil {
					delete(want.Keyspaces, name)
				} else {
					want.Keyspaces[name] = ks
				}
			}
			if r := c.edit.Rules; r != nil {
				want.RoutingRules, want.ShardRoutingRules = r.RoutingRules, r.ShardRoutingRules
				want.KeyspaceRoutingRules, want.MirrorRules = r.KeyspaceRoutingRules, r.MirrorRules
			}
			got := &vschemapb.SrvVSchema{}
			if err := got.UnmarshalVT(out); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatal("spliced SrvVSchema differs from the edited one")
			}
			for name, ks := range c.edit.Keyspaces {
				found, ok, err := srvvschema.FindKeyspace(out, name)
				if err != nil || ok != (ks != nil) || (ks != nil && !proto.Equal(found, ks)) {
					t.Fatalf("FindKeyspace(%s) = %v, %v, %v", name, found, ok, err)
				}
			}
		})
	}

	// A keyspace present twice (the last counts) is left once.
	dup := append([]byte{}, data...)
	extra, _ := (&vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{name0: {Sharded: true}}}).MarshalVT()
	dup = append(dup, extra...)
	if ks, _, _ := srvvschema.FindKeyspace(dup, name0); !ks.Sharded {
		t.Fatal("FindKeyspace did not take the last entry")
	}
	out, _, err := srvvschema.Splice(dup, srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{name0: changed}})
	if err != nil {
		t.Fatal(err)
	}
	got := &vschemapb.SrvVSchema{}
	if err := got.UnmarshalVT(out); err != nil || !proto.Equal(got.Keyspaces[name0], changed) {
		t.Fatalf("splice of a duplicated keyspace: %v", err)
	}

	// Garbage is an error, not a panic.
	if _, _, err := srvvschema.Splice([]byte{0x0a, 0xff}, srvvschema.Edit{}); err == nil {
		t.Fatal("Splice of garbage succeeded")
	}
}

// BenchmarkSplice: one keyspace spliced into the JD SrvVSchema (13.5 MiB).
func BenchmarkSplice(b *testing.B) {
	p := jd.JD()
	data, err := p.SrvVSchema().MarshalVT()
	if err != nil {
		b.Fatal(err)
	}
	name, ks := p.Keyspace(100)
	ks.RequireExplicitRouting = true
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := srvvschema.Splice(data, srvvschema.Edit{Keyspaces: map[string]*vschemapb.Keyspace{name: ks}}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFreshReads(t *testing.T) {
	ctx := t.Context()
	if srvvschema.FreshReads(ctx) || !srvvschema.FreshReads(srvvschema.WithFreshReads(ctx)) {
		t.Fatal("FreshReads does not see the mark of WithFreshReads")
	}
}
