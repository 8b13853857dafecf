package vschemaapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// TestNoCells: on a topology with keyspaces but no cell registered yet (no
// cells directory in the global topology), every write answers 200, has
// done its change, and says that no cell was updated ("cells": [],
// "no_cells": true, "cells_note"); the cells are listed as none, and a cell
// registered afterwards can be rebuilt.
func TestNoCells(t *testing.T) {
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{NoCells: true})
			srv := vschematest.StartVSchemad(t, tp, nil)
			tp.CreateKeyspaces(t, "a", "b")
			api := srv.URL + "/api/v1"
			var first string // a's first version
			cases := []struct {
				name, method, path string
				body               string
				want               map[string]string // keyspace -> its vschema after ("" none)
			}{
				{"apply", "PUT", "/keyspaces/a/vschema", `{"tables": {"t1": {}}}`, map[string]string{"a": `{"tables": {"t1": {}}}`, "b": ""}},
				{"batch", "POST", "/vschemas", `{"keyspaces": {"a": {"tables": {"t2": {}}}, "b": {"tables": {"tb": {}}}}}`,
					map[string]string{"a": `{"tables": {"t2": {}}}`, "b": `{"tables": {"tb": {}}}`}},
				{"rollback", "POST", "/keyspaces/a/vschema/rollback", `{"version": "FIRST"}`, map[string]string{"a": `{"tables": {"t1": {}}}`}},
				{"delete", "DELETE", "/keyspaces/b/vschema", "", map[string]string{"b": ""}},
				{"rules", "PUT", "/routing-rules", `{"rules": [{"from_table": "moved", "to_tables": ["a.t1"]}]}`, nil},
			}
			for _, c := range cases {
				var body []byte
				if c.body != "" {
					body = []byte(strings.ReplaceAll(c.body, "FIRST", first))
				}
				code, out, _ := vschematest.Call(t, nil, c.method, api+c.path, body)
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", c.name, code, out)
				}
				var res struct {
					Cells     []vschemastore.CellResult `json:"cells"`
					NoCells   bool                      `json:"no_cells"`
					CellsNote string                    `json:"cells_note"`
					Keyspaces []vschemastore.KeyspaceResult
				}
				if err := json.Unmarshal(out, &res); err != nil {
					t.Fatal(err)
				}
				if res.Cells == nil || len(res.Cells) != 0 || !res.NoCells || !strings.Contains(res.CellsNote, "no cell is registered in the topology") {
					t.Errorf("%s: the response does not say that no cell was updated: %s", c.name, out)
				}
				if first == "" {
					first = res.Keyspaces[0].NewVersion
				}
				for ks, want := range c.want {
					code, out, _ := vschematest.Call(t, nil, "GET", api+"/keyspaces/"+ks+"/vschema", nil)
					switch {
					case want == "" && code != http.StatusNotFound:
						t.Errorf("%s: keyspace %s: %d %s, want no vschema", c.name, ks, code, out)
					case want != "" && (code != http.StatusOK || !proto.Equal(vschematest.ParseKeyspace(t, out), vschematest.ParseKeyspace(t, []byte(want)))):
						t.Errorf("%s: keyspace %s: %d %s, want %s", c.name, ks, code, out, want)
					}
				}
			}

			// A dry run does not reach the cells: no cells, no note.
			code, out, _ := vschematest.Call(t, nil, "PUT", api+"/keyspaces/a/vschema?dry_run=true", []byte(`{}`))
			if code != http.StatusOK || strings.Contains(string(out), `"cells"`) || strings.Contains(string(out), "no_cells") {
				t.Fatalf("dry run: %d %s", code, out)
			}
			code, out, _ = vschematest.Call(t, nil, "GET", api+"/cells", nil)
			if code != http.StatusOK || !strings.Contains(string(out), `"cells": []`) {
				t.Fatalf("GET cells: %d %s", code, out)
			}
			code, out, _ = vschematest.Call(t, nil, "POST", api+"/cells/zone1/srvvschema/rebuild", nil)
			if code != http.StatusNotFound || !strings.Contains(string(out), "no cell is registered in the topology") {
				t.Fatalf("rebuild without cells: %d %s", code, out)
			}

			// The first cell, registered now, gets its SrvVSchema by a
			// rebuild.
			tp.AddCell(t, "zone1")
			code, out, _ = vschematest.Call(t, nil, "POST", api+"/cells/zone1/srvvschema/rebuild", nil)
			if code != http.StatusOK {
				t.Fatalf("rebuild: %d %s", code, out)
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)
		})
	}
}
