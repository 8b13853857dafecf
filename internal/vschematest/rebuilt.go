package vschematest

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
)

// AssertCellsAsRebuilt checks that every cell's SrvVSchema is what
// Vitess's own RebuildSrvVSchema writes from the same global topology,
// naming the keyspaces and rules that differ.
func AssertCellsAsRebuilt(t *testing.T, ctx context.Context, tp *Topology) {
	t.Helper()
	got := map[string]*vschemapb.SrvVSchema{}
	for _, cell := range tp.Cells {
		srv, err := tp.TS.GetSrvVSchema(ctx, cell)
		if err != nil {
			t.Fatalf("GetSrvVSchema(%s): %v", cell, err)
		}
		got[cell] = srv
	}
	if err := tp.TS.RebuildSrvVSchema(ctx, nil); err != nil {
		t.Fatalf("RebuildSrvVSchema: %v", err)
	}
	for _, cell := range tp.Cells {
		want, err := tp.TS.GetSrvVSchema(ctx, cell)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got[cell], want) {
			t.Errorf("cell %s: SrvVSchema differs from RebuildSrvVSchema's (%d keyspaces, want %d)", cell, len(got[cell].Keyspaces), len(want.Keyspaces))
			for name, ks := range want.Keyspaces {
				if !proto.Equal(got[cell].Keyspaces[name], ks) {
					t.Errorf("  keyspace %s differs", name)
				}
			}
			for _, f := range []struct {
				name string
				a, b proto.Message
			}{
				{"routing_rules", got[cell].RoutingRules, want.RoutingRules},
				{"shard_routing_rules", got[cell].ShardRoutingRules, want.ShardRoutingRules},
				{"keyspace_routing_rules", got[cell].KeyspaceRoutingRules, want.KeyspaceRoutingRules},
				{"mirror_rules", got[cell].MirrorRules, want.MirrorRules},
			} {
				if !proto.Equal(f.a, f.b) {
					t.Errorf("  %s differ: %v, want %v", f.name, f.a, f.b)
				}
			}
		}
	}
}
