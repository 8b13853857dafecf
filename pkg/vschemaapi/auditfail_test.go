package vschemaapi_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// TestAuditWriteFailure: a write whose outcome cannot be appended to the
// audit log (the disk refuses it once the topology write has begun) is
// answered 500, naming what was written, which stands; its intent line is
// in the log, and the next start records its outcome as unknown. A write
// whose intent cannot be appended is not made (500, nothing written).
func TestAuditWriteFailure(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "a")
	store, fault := tp.FaultyStore(t)
	writes := []string{"Create", "Update", "Delete"}
	cases := []struct {
		name, method, path, body string
		breakOn                  string // the file whose write breaks the audit log first; "" to break it before the request
		cell                     string // of breakOn
		message                  []string
		written                  []string // paths in "written"
		unknown                  string   // the action whose outcome the restart records as unknown
	}{
		{"apply", "PUT", "/keyspaces/a/vschema", `{"tables": {"t1": {}}}`, "keyspaces/a/VSchema", topo.GlobalCell,
			[]string{"the write was made, but its outcome could not be recorded in the audit log", "bad file descriptor",
				"already written to the global topology, and not undone: keyspace a: keyspaces/a/VSchema version "},
			[]string{"keyspaces/a/VSchema"}, "apply a"},
		{"rules", "PUT", "/routing-rules", `{"rules": [{"from_table": "moved", "to_tables": ["a.t1"]}]}`, topo.RoutingRulesFile, topo.GlobalCell,
			[]string{"outcome could not be recorded in the audit log", "not undone: routing-rules: RoutingRules version "},
			[]string{topo.RoutingRulesFile}, "rules routing-rules"},
		{"rebuild", "POST", "/cells/zone1/srvvschema/rebuild", "", topo.SrvVSchemaFile, "zone1",
			[]string{"cell zone1's SrvVSchema was rebuilt (version ", "could not be recorded in the audit log"},
			nil, "rebuild zone1"},
		{"intent not recorded: nothing written", "PUT", "/keyspaces/a/vschema", `{"tables": {"t2": {}}}`, "", "",
			[]string{"nothing was written: the write could not be recorded in the audit log before being made"}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			h, breakAudit := vschemaapi.NewTestHandlerAt(t, store, path)
			hs := httptest.NewServer(h)
			defer hs.Close()
			var once sync.Once
			f := vschematest.Fault(func(cell, op, p string) error {
				if cell == c.cell && p == c.breakOn && slices.Contains(writes, op) {
					once.Do(breakAudit)
				}
				return nil
			})
			fault.Store(&f)
			defer fault.Store(nil)
			if c.breakOn == "" {
				breakAudit()
			}
			before := tp.Snapshot(t)
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			code, out, _ := vschematest.Call(t, nil, c.method, hs.URL+"/api/v1"+c.path, body)
			if code != http.StatusInternalServerError {
				t.Fatalf("status %d, want 500: %s", code, out)
			}
			e := vschematest.Decode[wire.ErrorResponse](t, out)
			if !vschematest.ContainsAll(e.Message, c.message...) {
				t.Errorf("error %q does not say %q", e.Message, c.message)
			}
			var paths []string
			for _, w := range e.Written {
				paths = append(paths, w.Path)
			}
			if !slices.Equal(paths, c.written) {
				t.Errorf("written %v, want %v", paths, c.written)
			}
			if changed := !before.Equal(tp.Snapshot(t)); changed != (c.unknown != "") {
				t.Errorf("topology changed: %v", changed)
			}

			// A restart: the intent without an outcome is recorded as unknown.
			h2, _ := vschemaapi.NewTestHandlerAt(t, store, path)
			hs2 := httptest.NewServer(h2)
			defer hs2.Close()
			code, out, _ = vschematest.Call(t, nil, "GET", hs2.URL+"/api/v1/audit", nil)
			audit := vschematest.Decode[wire.AuditResponse](t, out)
			var got []string
			for _, e := range audit.Entries {
				got = append(got, strings.TrimSpace(e.Action+" "+e.Keyspace+e.Rules+e.Cell+" "+e.Result))
				if e.Result == "unknown" && (e.Intent == 0 || !strings.Contains(e.Error, "read the topology")) {
					t.Errorf("unknown outcome %+v", e)
				}
			}
			var want []string
			if c.unknown != "" {
				want = []string{c.unknown + " unknown"}
			}
			if code != http.StatusOK || !slices.Equal(got, want) {
				t.Errorf("audit after restart: %v, want %v", got, want)
			}
		})
	}
}
