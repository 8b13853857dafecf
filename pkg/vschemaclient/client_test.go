package vschemaclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

func TestMain(m *testing.M) {
	vschematest.QuietVitessLogs()
	os.Exit(m.Run())
}

func newClient(t *testing.T, srv *vschematest.VSchemad, token string) *vschemaclient.Client {
	t.Helper()
	u, err := vschemaclient.ParseServer(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vschemaclient.New(vschemaclient.Options{Server: u, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClient calls every endpoint through its method, against the real
// handler: reads answer what the writes wrote, refusals come back as
// *APIError with the server's problems and change nothing.
func TestClient(t *testing.T) {
	ctx := context.Background()
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce", "customer")
	c := newClient(t, vschematest.StartVSchemad(t, tp, nil), "")
	cell := tp.Cells[0]

	if err := c.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	cells, err := c.Cells(ctx)
	if err != nil || len(cells) != len(tp.Cells) {
		t.Fatalf("Cells: %v %v", cells, err)
	}

	// A refused vschema: the problem, and nothing written.
	before := tp.Snapshot(t)
	_, err = c.ApplyVSchema(ctx, "commerce", []byte(`{"sharded": true, "tables": {"t": {"column_vindexes": [{"column": "id", "name": "nosuch"}]}}}`), vschemaclient.WriteOptions{})
	var ae *vschemaclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Validation.OK() || ae.Validation.Errors[0].Code != "missing_vindex" {
		t.Fatalf("invalid apply: %v", err)
	}
	if !before.Equal(tp.Snapshot(t)) {
		t.Fatal("a refused apply wrote to the topology")
	}

	res, err := c.ApplyVSchema(ctx, "commerce", []byte(`{"tables": {"product": {}}}`), vschemaclient.WriteOptions{})
	if err != nil || len(res.Keyspaces) != 1 || !res.Keyspaces[0].Written || len(res.Cells) != len(tp.Cells) {
		t.Fatalf("ApplyVSchema: %+v %v", res, err)
	}
	v1 := res.Keyspaces[0].NewVersion
	d, err := c.GetVSchema(ctx, "commerce")
	if err != nil || d.Version != v1 || !proto.Equal(vschematest.ParseKeyspace(t, d.Data), &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"product": {}}}) {
		t.Fatalf("GetVSchema: %+v %v", d, err)
	}
	if _, err := c.ApplyVSchema(ctx, "commerce", []byte(`{"tables": {"product": {}, "corder": {}}}`), vschemaclient.WriteOptions{IfMatch: "1"}); !errors.As(err, &ae) || ae.Status != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %v", err)
	}
	res, err = c.ApplyVSchemas(ctx, map[string]json.RawMessage{"commerce": json.RawMessage(`{"tables": {"product": {}, "corder": {}}}`), "customer": json.RawMessage(`{}`)},
		vschemaclient.WriteOptions{FullDiff: true})
	if err != nil || len(res.Keyspaces) != 2 || len(res.Keyspaces[0].Diff.Changes) != 1 || res.Keyspaces[0].Diff.Changes[0].Op != wire.OpAdd {
		t.Fatalf("ApplyVSchemas: %+v %v", res, err)
	}
	if d, err := c.GetVSchemaAt(ctx, "commerce", v1); err != nil || d.Version != v1 || !strings.Contains(string(d.Data), "product") || strings.Contains(string(d.Data), "corder") {
		t.Fatalf("GetVSchemaAt: %+v %v", d, err)
	}
	if d, err := c.CellKeyspace(ctx, cell, "commerce"); err != nil || !strings.Contains(string(d.Data), "corder") {
		t.Fatalf("CellKeyspace: %+v %v", d, err)
	}
	h, err := c.History(ctx, "commerce", 0)
	if err != nil || len(h.Entries) != 2 || h.Entries[0].Action != "import" || h.Entries[1].NewVersion != v1 {
		t.Fatalf("History: %+v %v", h, err)
	}
	if prev, err := c.PreviousVersion(ctx, "commerce"); err != nil || prev != v1 {
		t.Fatalf("PreviousVersion: %q %v", prev, err)
	}
	if res, err := c.Rollback(ctx, "commerce", v1, vschemaclient.WriteOptions{DryRun: true}); err != nil || !res.DryRun || res.Keyspaces[0].Diff.TablesRemoved != 1 {
		t.Fatalf("Rollback dry run: %+v %v", res, err)
	}
	if res, err := c.DeleteVSchema(ctx, "customer", vschemaclient.WriteOptions{}); err != nil || !res.Keyspaces[0].Diff.Deleted {
		t.Fatalf("DeleteVSchema: %+v %v", res, err)
	}

	rr, err := c.PutRules(ctx, vschemaclient.RoutingRules, []byte(`{"rules": [{"from_table": "moved", "to_tables": ["commerce.product"]}]}`), vschemaclient.WriteOptions{})
	if err != nil || !rr.Written || rr.Diff.Added != 1 {
		t.Fatalf("PutRules: %+v %v", rr, err)
	}
	if d, err := c.GetRules(ctx, vschemaclient.RoutingRules); err != nil || d.Version != rr.NewVersion || !strings.Contains(string(d.Data), "moved") {
		t.Fatalf("GetRules: %+v %v", d, err)
	}
	if d, err := c.CellSrvVSchema(ctx, cell); err != nil || !strings.Contains(string(d.Data), "moved") {
		t.Fatalf("CellSrvVSchema: %+v %v", d, err)
	}
	d, err = c.CellSrvVSchemaProto(ctx, cell)
	srv := &vschemapb.SrvVSchema{}
	if err != nil || srv.UnmarshalVT(d.Data) != nil || len(srv.Keyspaces["commerce"].GetTables()) != 2 || len(srv.RoutingRules.GetRules()) != 1 {
		t.Fatalf("CellSrvVSchemaProto: %v %v", srv, err)
	}
	if cr, err := c.RebuildCell(ctx, cell); err != nil || cr.Cell != cell || cr.Version == "" {
		t.Fatalf("RebuildCell: %+v %v", cr, err)
	}
	entries, err := c.Audit(ctx, vschemaclient.AuditQuery{Action: "rebuild"})
	if err != nil || len(entries) != 1 || entries[0].Cell != cell || entries[0].Result != wire.ResultOK {
		t.Fatalf("Audit: %+v %v", entries, err)
	}
}

// TestClientToken: a token is sent, and a refused one is an *APIError.
func TestClientToken(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tokens := t.TempDir() + "/tokens.yaml"
	if err := os.WriteFile(tokens, []byte("tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{Tokens: tokens})
	if _, err := newClient(t, srv, "s3cret").Cells(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ae *vschemaclient.APIError
	if _, err := newClient(t, srv, "wrong").Cells(context.Background()); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v", err)
	}
}
