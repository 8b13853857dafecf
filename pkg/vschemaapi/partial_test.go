package vschemaapi_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// errInjected is the error of the faults the tests inject.
var errInjected = errors.New("injected fault")

// TestPartialWrites: a request that fails after writing part of its change
// says so: the error message and "written" name what was written (and
// stands), "result" has the rest; one that fails before writing anything
// has no "written". The audit log has what was written, as an error, and
// what was not, as not_written.
func TestPartialWrites(t *testing.T) {
	writes := []string{"Create", "Update", "Delete"}
	failOn := func(cell, filePath string, ops ...string) vschematest.Fault {
		return func(c, op, p string) error {
			if c == cell && p == filePath && slices.Contains(ops, op) {
				return errInjected
			}
			return nil
		}
	}
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{})
			tp.CreateKeyspaces(t, "a", "b")
			store, fault := tp.FaultyStore(t)
			hs := httptest.NewServer(vschemaapi.NewTestHandler(t, store))
			t.Cleanup(hs.Close)
			api := hs.URL + "/api/v1"
			cases := []struct {
				name, method, path, body string
				fault                    vschematest.Fault
				status                   int
				written                  []string // the paths in "written"
				message                  []string // in the error message
			}{
				{"batch: the second keyspace's write fails", "POST", "/vschemas", `{"keyspaces": {"a": {"tables": {"t1": {}}}, "b": {}}}`,
					failOn(topo.GlobalCell, "keyspaces/b/VSchema", writes...), http.StatusInternalServerError,
					[]string{"keyspaces/a/VSchema"}, []string{"write keyspaces/b/VSchema: injected fault", "already written to the global topology, and not undone: keyspace a: keyspaces/a/VSchema version "}},
				{"apply: the cells cannot be listed", "PUT", "/keyspaces/a/vschema", `{"tables": {"t2": {}}}`,
					failOn(topo.GlobalCell, topo.CellsPath, "ListDir"), http.StatusInternalServerError,
					[]string{"keyspaces/a/VSchema"}, []string{"cells not updated: list cells: injected fault", "not undone: keyspace a: keyspaces/a/VSchema version "}},
				{"apply: a cell's SrvVSchema cannot be written", "PUT", "/keyspaces/b/vschema", `{"tables": {"tb": {}}}`,
					failOn("zone2", topo.SrvVSchemaFile, writes...), http.StatusBadGateway,
					[]string{"keyspaces/b/VSchema"}, []string{"cell zone2: write SrvVSchema: injected fault", "not undone: keyspace b: keyspaces/b/VSchema version ", "POST /api/v1/cells/{cell}/srvvschema/rebuild"}},
				{"delete: the cells cannot be listed", "DELETE", "/keyspaces/b/vschema", "",
					failOn(topo.GlobalCell, topo.CellsPath, "ListDir"), http.StatusInternalServerError,
					[]string{"keyspaces/b/VSchema"}, []string{"not undone: keyspace b: keyspaces/b/VSchema deleted"}},
				{"rules: the cells cannot be listed", "PUT", "/routing-rules", `{"rules": [{"from_table": "moved", "to_tables": ["a.t1"]}]}`,
					failOn(topo.GlobalCell, topo.CellsPath, "ListDir"), http.StatusInternalServerError,
					[]string{topo.RoutingRulesFile}, []string{"not undone: routing-rules: RoutingRules version "}},
				{"nothing written: the keyspace's write fails", "PUT", "/keyspaces/a/vschema", `{"tables": {"t3": {}}}`,
					failOn(topo.GlobalCell, "keyspaces/a/VSchema", writes...), http.StatusInternalServerError,
					nil, []string{"write keyspaces/a/VSchema: injected fault"}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					var body []byte
					if c.body != "" {
						body = []byte(c.body)
					}
					fault.Store(&c.fault)
					code, out, _ := vschematest.Call(t, nil, c.method, api+c.path, body)
					fault.Store(nil)
					if code != c.status {
						t.Fatalf("status %d, want %d: %s", code, c.status, out)
					}
					e := vschematest.Decode[wire.ErrorResponse](t, out)
					if !vschematest.ContainsAll(e.Message, c.message...) {
						t.Errorf("error %q does not say %q", e.Message, c.message)
					}
					if len(c.written) == 0 && strings.Contains(string(out), `"written": [`) {
						t.Errorf("nothing was written, but the response says: %s", out)
					}
					var paths []string
					for _, w := range e.Written {
						paths = append(paths, w.Path)
						if w.Version == "" && !w.Deleted {
							t.Errorf("written %+v has no version", w)
						}
					}
					if !slices.Equal(paths, c.written) {
						t.Errorf("written %v, want %v: %s", paths, c.written, out)
					}
					if len(e.Result) == 0 {
						t.Errorf("no result: %s", out)
					}
				})
			}

			// The audit log has the keyspaces written, as errors naming what
			// was written, and the others, not written, with their error.
			code, out, _ := vschematest.Call(t, nil, "GET", api+"/audit", nil)
			audit := vschematest.Decode[wire.AuditResponse](t, out)
			var got []string
			for _, e := range slices.Backward(audit.Entries) {
				switch {
				case e.Result == "error" && strings.Contains(e.Error, "not undone"):
				case e.Result == "not_written" && strings.Contains(e.Error, "injected fault"):
				default:
					t.Errorf("audit entry %+v: want an error naming what was written, or not_written with its error", e)
				}
				got = append(got, e.Action+" "+e.Keyspace+e.Rules+" "+e.Result)
			}
			if want := []string{"import a error", "import b not_written", "apply a error", "apply b error", "delete b error", "rules routing-rules error", "apply a not_written"}; code != http.StatusOK || !slices.Equal(got, want) {
				t.Errorf("audit log %v, want %v (%d)", got, want, code)
			}
		})
	}
}
