package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
)

// TestVitessOnEtcd2HitsTheLimit runs the same binaries with the same flags
// and the same load as TestVitessOnTopod, but with --topo-implementation
// etcd2 straight on a real etcd: one binary serves both implementations, and
// with etcd2 the load fails where topod's succeeds. Every keyspace is
// created and every vschema saved, but RebuildVSchemaGraph cannot write the
// SrvVSchema (etcd: "request is too large"), so vtgate never gets a table.
func TestVitessOnEtcd2HitsTheLimit(t *testing.T) {
	bin := binaries(t, "vtctld", "vtgate")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	id, err := proc.EnsureUser(vtlocal.DefaultUser)
	if err != nil {
		t.Fatal(err)
	}
	work := workDir(t, id)
	etcd := harness.StartEtcd(t, 1)
	addr := strings.Join(trimScheme(etcd.Endpoints()), ",")
	_, vt := startVitess(ctx, t, bin, work, id, vtlocal.Topo{Implementation: "etcd2", Address: addr, Root: "/vitess/global"}, "/vitess/"+cell)

	profile := jd.JD().Sized(keyspaces)
	loader := &vtlocal.Loader{Client: vt.client, Profile: profile, Workers: 4}
	idx := vtlocal.Range(keyspaces)
	if err := loader.CreateKeyspaces(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if err := loader.ApplyVSchemas(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if err := loader.ApplyRoutingRules(ctx); err != nil {
		t.Fatal(err)
	}
	err = loader.Rebuild(ctx)
	if err == nil || !strings.Contains(err.Error(), "request is too large") {
		t.Fatalf("RebuildVSchemaGraph of %d keyspaces on etcd2: %v; want etcd's \"request is too large\"", keyspaces, err)
	}
	t.Logf("with etcd2, vtctld's RebuildVSchemaGraph of %d keyspaces fails: %v", keyspaces, err)

	// vtgate knows the keyspaces (from the SrvVSchemas CreateKeyspace
	// rebuilt while their vschemas were empty) but none of their tables.
	vschemaURL := fmt.Sprintf("http://127.0.0.1:%d/debug/vschema", vt.vtgateHTTP)
	err = servesTables(ctx, vschemaURL, profile.SrvVSchema())
	if err == nil || !strings.Contains(err.Error(), "tables, want") {
		t.Fatalf("vtgate on etcd2 after the failed rebuild: %v; want keyspaces without their tables", err)
	}
	t.Logf("vtgate on etcd2 serves no vschema: %v", err)
}
