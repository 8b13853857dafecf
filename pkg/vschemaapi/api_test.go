package vschemaapi_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// TestAPI walks the API on each topology: apply, get, dry run, If-Match,
// history, versions, rollback, delete, rules, cells, audit; after each
// write the cells hold what RebuildSrvVSchema would write.
func TestAPI(t *testing.T) {
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{})
			srv := vschematest.StartVSchemad(t, tp, nil)
			p := jd.JD().Sized(20)
			tp.CreateProfileKeyspaces(t, p)
			api := srv.URL + "/api/v1"

			// Apply every keyspace, those referred to first.
			for _, level := range vschematest.ProfileLevels(p) {
				for _, i := range level {
					name, ks := p.Keyspace(i)
					code, body, h := vschematest.Call(t, nil, "PUT", api+"/keyspaces/"+name+"/vschema", vschematest.VSchemaJSON(t, ks))
					if code != http.StatusOK {
						t.Fatalf("PUT %s: %d %s", name, code, body)
					}
					res := vschematest.Decode[wire.ApplyResponse](t, body)
					if !res.Keyspaces[0].Written || h.Get("ETag") != strconv.Quote(res.Keyspaces[0].NewVersion) {
						t.Fatalf("PUT %s: %s (ETag %s)", name, body, h.Get("ETag"))
					}
				}
			}
			code, body, _ := vschematest.Call(t, nil, "PUT", api+"/routing-rules", vschematest.VSchemaJSON(t, p.RoutingRules()))
			if code != http.StatusOK {
				t.Fatalf("PUT routing-rules: %d %s", code, body)
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)

			name, ks := p.Keyspace(4)
			code, body, h := vschematest.Call(t, nil, "GET", api+"/keyspaces/"+name+"/vschema", nil)
			if code != http.StatusOK || !proto.Equal(vschematest.ParseKeyspace(t, body), ks) {
				t.Fatalf("GET: %d %s", code, body)
			}
			v1, _ := strconv.Unquote(h.Get("ETag"))

			// A dry run: the diff, and nothing written.
			changed := proto.Clone(ks).(*vschemapb.Keyspace)
			changed.Tables["added"] = &vschemapb.Table{}
			if changed.Sharded {
				changed.Tables["added"].ColumnVindexes = []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}
			}
			before := tp.Snapshot(t)
			code, body, _ = vschematest.Call(t, nil, "PUT", api+"/keyspaces/"+name+"/vschema?dry_run=true", vschematest.VSchemaJSON(t, changed))
			res := vschematest.Decode[wire.ApplyResponse](t, body)
			if code != http.StatusOK || !res.DryRun || res.Keyspaces[0].Diff.TablesAdded != 1 || !res.Validation.OK() ||
				!vschematest.ContainsAll(string(body), `"path": "tables.added"`, `"op": "add"`) {
				t.Fatalf("dry run: %d %s", code, body)
			}
			if !before.Equal(tp.Snapshot(t)) {
				t.Fatal("a dry run wrote to the topology")
			}

			// Apply with If-Match, then the stale version is refused.
			code, body, h = vschematest.Call(t, nil, "PUT", api+"/keyspaces/"+name+"/vschema", vschematest.VSchemaJSON(t, changed), "If-Match", strconv.Quote(v1))
			if code != http.StatusOK {
				t.Fatalf("PUT If-Match: %d %s", code, body)
			}
			v2, _ := strconv.Unquote(h.Get("ETag"))
			for _, cell := range tp.Cells {
				code, body, _ := vschematest.Call(t, nil, "GET", api+"/cells/"+cell+"/srvvschema/keyspaces/"+name, nil)
				if code != http.StatusOK || !proto.Equal(vschematest.ParseKeyspace(t, body), changed) {
					t.Fatalf("cell %s view: %d %s", cell, code, body)
				}
			}
			code, body, _ = vschematest.Call(t, nil, "PUT", api+"/keyspaces/"+name+"/vschema", vschematest.VSchemaJSON(t, ks), "If-Match", strconv.Quote(v1))
			if code != http.StatusPreconditionFailed || !vschematest.ContainsAll(string(body), "version mismatch", v2) {
				t.Fatalf("stale If-Match: %d %s", code, body)
			}

			// History and versions.
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/keyspaces/"+name+"/vschema/history", nil)
			hist := vschematest.Decode[wire.HistoryResponse](t, body)
			if code != http.StatusOK || hist.CurrentVersion != v2 || len(hist.Entries) != 2 ||
				hist.Entries[0].NewVersion != v2 || hist.Entries[0].OldVersion != v1 || hist.Entries[1].NewVersion != v1 ||
				hist.Entries[0].Summary != "1 table added" || hist.Entries[0].User != "anonymous" {
				t.Fatalf("history: %d %s", code, body)
			}
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/keyspaces/"+name+"/vschema/versions/"+v1, nil)
			if code != http.StatusOK || !proto.Equal(vschematest.ParseKeyspace(t, body), ks) {
				t.Fatalf("version %s: %d %s", v1, code, body)
			}

			// Roll back to v1.
			code, body, _ = vschematest.Call(t, nil, "POST", api+"/keyspaces/"+name+"/vschema/rollback", []byte(`{"version": "`+v1+`"}`))
			res = vschematest.Decode[wire.ApplyResponse](t, body)
			if code != http.StatusOK || res.Keyspaces[0].Diff.TablesRemoved != 1 {
				t.Fatalf("rollback: %d %s", code, body)
			}
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/keyspaces/"+name+"/vschema", nil)
			if code != http.StatusOK || !proto.Equal(vschematest.ParseKeyspace(t, body), ks) {
				t.Fatalf("after rollback: %d %s", code, body)
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)

			// Rules.
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/routing-rules", nil)
			if code != http.StatusOK || !proto.Equal(parseRules(t, body), p.RoutingRules()) {
				t.Fatalf("GET routing-rules: %d %s", code, body)
			}
			krr := &vschemapb.KeyspaceRoutingRules{Rules: []*vschemapb.KeyspaceRoutingRule{{FromKeyspace: "alias", ToKeyspace: name}}}
			if code, body, _ := vschematest.Call(t, nil, "PUT", api+"/keyspace-routing-rules", vschematest.VSchemaJSON(t, krr)); code != http.StatusOK {
				t.Fatalf("PUT keyspace-routing-rules: %d %s", code, body)
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)

			// Cells.
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/cells", nil)
			if code != http.StatusOK || !vschematest.ContainsAll(string(body), tp.Cells...) {
				t.Fatalf("cells: %d %s", code, body)
			}
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/cells/"+tp.Cells[0]+"/srvvschema?format=proto", nil)
			got := &vschemapb.SrvVSchema{}
			if err := got.UnmarshalVT(body); code != http.StatusOK || err != nil {
				t.Fatalf("srvvschema: %d %v", code, err)
			}
			want, _ := tp.TS.GetSrvVSchema(context.Background(), tp.Cells[0])
			if !proto.Equal(got, want) {
				t.Fatal("GET srvvschema differs from GetSrvVSchema")
			}
			if code, _, _ := vschematest.Call(t, nil, "GET", api+"/cells/"+tp.Cells[0]+"/srvvschema", nil); code != http.StatusOK {
				t.Fatalf("srvvschema JSON: %d", code)
			}
			code, body, _ = vschematest.Call(t, nil, "POST", api+"/cells/"+tp.Cells[1]+"/srvvschema/rebuild", nil)
			if code != http.StatusOK {
				t.Fatalf("rebuild: %d %s", code, body)
			}

			// Delete.
			code, body, _ = vschematest.Call(t, nil, "DELETE", api+"/keyspaces/"+name+"/vschema", nil)
			if code != http.StatusOK || !vschematest.Decode[wire.ApplyResponse](t, body).Keyspaces[0].Diff.Deleted {
				t.Fatalf("DELETE: %d %s", code, body)
			}
			if code, body, _ := vschematest.Call(t, nil, "GET", api+"/keyspaces/"+name+"/vschema", nil); code != http.StatusNotFound {
				t.Fatalf("GET after DELETE: %d %s", code, body)
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)

			// The audit log has every write, and the attempts that wrote
			// nothing: the stale If-Match, and the routing rules if the
			// profile has none (unchanged).
			wantAudit := map[string]int{"apply ok": p.Keyspaces + 1, "apply not_written": 1, "rollback ok": 1, "delete ok": 1,
				"rules ok": 1, "rules not_written": 1, "rebuild ok": 1}
			if len(p.RoutingRules().Rules) > 0 {
				wantAudit["rules ok"], wantAudit["rules not_written"] = 2, 0
			}
			code, body, _ = vschematest.Call(t, nil, "GET", api+"/audit?limit=1000", nil)
			audit := vschematest.Decode[wire.AuditResponse](t, body)
			actions := map[string]int{}
			for _, e := range audit.Entries {
				actions[strings.Fields(e.Action)[0]+" "+e.Result]++
			}
			maps.DeleteFunc(wantAudit, func(_ string, n int) bool { return n == 0 })
			if code != http.StatusOK || !maps.Equal(actions, wantAudit) {
				t.Fatalf("audit: %d %v", code, actions)
			}
		})
	}
}

func parseRules(t testing.TB, b []byte) *vschemapb.RoutingRules {
	t.Helper()
	rr := &vschemapb.RoutingRules{}
	if err := protojson.Unmarshal(b, rr); err != nil {
		t.Fatal(err)
	}
	return rr
}

// TestRejections: every rejected input gets a clear 4xx and leaves the
// topology as it was, read back.
func TestRejections(t *testing.T) {
	tokens := vschemaapi.WriteTokens(t, `
tokens:
  - name: admin
    token: admin-token
    keyspaces: ["*"]
    verbs: [admin]
  - name: reader
    token: reader-token
    keyspaces: ["*"]
    verbs: [read]
  - name: team-a
    token: team-a-token
    keyspaces: ["ks000*"]
    verbs: [write]
`)
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{})
			srv := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{Tokens: tokens, MaxBodyBytes: 256 << 10})
			p := jd.JD().Sized(12)
			tp.CreateProfileKeyspaces(t, p)
			api := srv.URL + "/api/v1"
			auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
			for _, level := range vschematest.ProfileLevels(p) {
				for _, i := range level {
					name, ks := p.Keyspace(i)
					if code, body, _ := vschematest.Call(t, nil, "PUT", api+"/keyspaces/"+name+"/vschema", vschematest.VSchemaJSON(t, ks), auth("admin-token")...); code != http.StatusOK {
						t.Fatalf("PUT %s: %d %s", name, code, body)
					}
				}
			}
			name, ks := p.Keyspace(0) // ks0001
			var shardedName string
			var shardedKS *vschemapb.Keyspace
			for i := range p.Keyspaces {
				if n, k := p.Keyspace(i); k.Sharded {
					shardedName, shardedKS = n, k
					break
				}
			}
			unknownVindex := proto.Clone(shardedKS).(*vschemapb.Keyspace)
			unknownVindex.Vindexes["hash"].Type = "hashh"
			missingVindex := proto.Clone(shardedKS).(*vschemapb.Keyspace)
			missingVindex.Tables["extra"] = &vschemapb.Table{ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "nosuch"}}}
			noPrimary := proto.Clone(shardedKS).(*vschemapb.Keyspace)
			noPrimary.Tables["extra"] = &vschemapb.Table{}
			missingSeq := proto.Clone(shardedKS).(*vschemapb.Keyspace)
			missingSeq.Tables["extra"] = &vschemapb.Table{ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}},
				AutoIncrement: &vschemapb.AutoIncrement{Column: "id", Sequence: "nosuch.extra_seq"}}
			big := `{"tables": {"t": {"columns": [` + strings.Repeat(`{"name": "c"},`, 30000) + `{"name": "d"}]}}}`

			cases := []struct {
				name, method, path string
				body               []byte
				hdr                []string
				status             int
				want               []string // in the error message
			}{
				{"malformed JSON", "PUT", "/keyspaces/" + name + "/vschema", []byte(`{"sharded": tru`), auth("admin-token"), 400, []string{"malformed vschema JSON", "line 1"}},
				{"JSON of the wrong shape", "PUT", "/keyspaces/" + name + "/vschema", []byte(`{"tables": ["t"]}`), auth("admin-token"), 400, []string{"malformed"}},
				{"unknown vindex type", "PUT", "/keyspaces/" + shardedName + "/vschema", vschematest.VSchemaJSON(t, unknownVindex), auth("admin-token"), 400,
					[]string{"keyspace " + shardedName, "vindex hash", "field vindexes.hash.type", `unknown vindex type "hashh"`}},
				{"missing vindex", "PUT", "/keyspaces/" + shardedName + "/vschema", vschematest.VSchemaJSON(t, missingVindex), auth("admin-token"), 400,
					[]string{"keyspace " + shardedName, "table extra", "field tables.extra.column_vindexes[0].name", `vindex "nosuch"`}},
				{"no primary vindex", "PUT", "/keyspaces/" + shardedName + "/vschema", vschematest.VSchemaJSON(t, noPrimary), auth("admin-token"), 400,
					[]string{"table extra", "no primary vindex"}},
				{"sequence in a missing keyspace", "PUT", "/keyspaces/" + shardedName + "/vschema", vschematest.VSchemaJSON(t, missingSeq), auth("admin-token"), 400,
					[]string{"table extra", "field tables.extra.auto_increment.sequence", `keyspace "nosuch"`}},
				{"bad keyspace name ../x", "PUT", "/keyspaces/..%2Fx/vschema", vschematest.VSchemaJSON(t, ks), auth("admin-token"), 400, []string{`invalid keyspace name "../x"`}},
				{"bad keyspace name a.b", "GET", "/keyspaces/a.b/vschema", nil, auth("admin-token"), 400, []string{`invalid keyspace name "a.b"`}},
				{"keyspace not in the topology", "PUT", "/keyspaces/nosuch/vschema", vschematest.VSchemaJSON(t, ks), auth("admin-token"), 404, []string{"keyspace nosuch does not exist"}},
				{"oversize body", "PUT", "/keyspaces/" + name + "/vschema", []byte(big), auth("admin-token"), 413, []string{"larger than the limit of 262144 bytes"}},
				{"no token", "PUT", "/keyspaces/" + name + "/vschema", vschematest.VSchemaJSON(t, ks), nil, 401, []string{"no bearer token"}},
				{"unknown token", "PUT", "/keyspaces/" + name + "/vschema", vschematest.VSchemaJSON(t, ks), auth("nope"), 401, []string{"unknown bearer token"}},
				{"read-only token writing", "PUT", "/keyspaces/" + name + "/vschema", vschematest.VSchemaJSON(t, ks), auth("reader-token"), 403, []string{"reader may not write keyspace " + name}},
				{"token of other keyspaces", "PUT", "/keyspaces/" + p.KeyspaceName(11) + "/vschema", vschematest.VSchemaJSON(t, ks), auth("team-a-token"), 403, []string{"team-a may not write keyspace ks0012"}},
				{"token of other keyspaces deleting", "DELETE", "/keyspaces/" + p.KeyspaceName(11) + "/vschema", nil, auth("team-a-token"), 403, []string{"may not write"}},
				{"writer without admin on rules", "PUT", "/routing-rules", []byte(`{}`), auth("team-a-token"), 403, []string{"admin"}},
				{"writer reading the audit log", "GET", "/audit", nil, auth("team-a-token"), 403, []string{"audit"}},
				{"stale If-Match", "PUT", "/keyspaces/" + name + "/vschema", vschematest.VSchemaJSON(t, ks), append(auth("admin-token"), "If-Match", `"1"`), 412, []string{"version mismatch"}},
				{"bad version", "GET", "/keyspaces/" + name + "/vschema/versions/abc", nil, auth("admin-token"), 400, []string{`version "abc"`}},
				{"rollback to a bad version", "POST", "/keyspaces/" + name + "/vschema/rollback", []byte(`{"version": "x"}`), auth("admin-token"), 400, []string{`version "x"`}},
				{"malformed rollback", "POST", "/keyspaces/" + name + "/vschema/rollback", []byte(`{`), auth("admin-token"), 400, []string{"malformed rollback request"}},
				{"rules to a missing keyspace", "PUT", "/routing-rules", []byte(`{"rules": [{"from_table": "t", "to_tables": ["nosuch.t"]}]}`), auth("admin-token"), 400, []string{`keyspace "nosuch" does not exist`}},
				{"malformed rules", "PUT", "/mirror-rules", []byte(`[]`), auth("admin-token"), 400, []string{"malformed mirror-rules JSON"}},
				{"batch with a malformed keyspace", "POST", "/vschemas", []byte(`{"keyspaces": {"` + name + `": {"sharded": 3}}}`), auth("admin-token"), 400, []string{"keyspace " + name, "malformed"}},
				{"batch with a bad name", "POST", "/vschemas", []byte(`{"keyspaces": {"../x": {}}}`), auth("admin-token"), 400, []string{"invalid keyspace name"}},
				{"bad dry_run", "PUT", "/keyspaces/" + name + "/vschema?dry_run=maybe", vschematest.VSchemaJSON(t, ks), auth("admin-token"), 400, []string{"dry_run"}},
				{"no such endpoint", "GET", "/nosuch", nil, auth("admin-token"), 404, []string{"no such API endpoint"}},
				{"no such cell", "POST", "/cells/nosuch/srvvschema/rebuild", nil, auth("admin-token"), 404, []string{`no cell "nosuch"`}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					before := tp.Snapshot(t)
					code, body, _ := vschematest.Call(t, nil, c.method, api+c.path, c.body, c.hdr...)
					if code != c.status {
						t.Fatalf("status %d, want %d: %s", code, c.status, body)
					}
					e := vschematest.Decode[wire.ErrorResponse](t, body)
					msg := e.Message
					if e.Validation != nil {
						for _, p := range e.Validation.Errors {
							msg += "\n" + p.String()
						}
					}
					if !vschematest.ContainsAll(msg, c.want...) {
						t.Fatalf("error %q does not say %q", msg, c.want)
					}
					if !before.Equal(tp.Snapshot(t)) {
						t.Fatal("the topology changed")
					}
				})
			}
		})
	}
}

// TestConcurrentWriters: writers of one keyspace, each adding its own
// tables by read-modify-write with If-Match (retrying on 412), through two
// vschemad servers on the same topology: no update is lost, and every cell
// serves the final vschema.
func TestConcurrentWriters(t *testing.T) {
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			tp := kind.Start(t, vschematest.Options{})
			servers := []*vschematest.VSchemad{vschematest.StartVSchemad(t, tp, nil), vschematest.StartVSchemad(t, tp, nil)}
			tp.CreateKeyspaces(t, "hot", "cold")
			for _, ks := range []string{"hot", "cold"} {
				if code, body, _ := vschematest.Call(t, nil, "PUT", servers[0].URL+"/api/v1/keyspaces/"+ks+"/vschema", []byte(`{}`)); code != 200 {
					t.Fatalf("%d %s", code, body)
				}
			}
			const writers, adds = 6, 4
			var wg sync.WaitGroup
			errs := make(chan error, writers*adds)
			for w := range writers {
				wg.Go(func() {
					url := servers[w%2].URL + "/api/v1/keyspaces/hot/vschema"
					for a := range adds {
						for attempt := 0; ; attempt++ {
							code, body, h := vschematest.Call(t, nil, "GET", url, nil)
							if code != 200 {
								errs <- fmt.Errorf("GET: %d %s", code, body)
								return
							}
							ks := vschematest.ParseKeyspace(t, body)
							if ks.Tables == nil {
								ks.Tables = map[string]*vschemapb.Table{}
							}
							ks.Tables[fmt.Sprintf("w%d_%d", w, a)] = &vschemapb.Table{}
							code, body, _ = vschematest.Call(t, nil, "PUT", url, vschematest.VSchemaJSON(t, ks), "If-Match", h.Get("ETag"))
							if code == http.StatusOK {
								break
							}
							if code != http.StatusPreconditionFailed || attempt > 200 {
								errs <- fmt.Errorf("PUT: %d %s", code, body)
								return
							}
						}
						// And a blind write of another keyspace, racing too.
						cold := fmt.Sprintf(`{"tables": {"c%d_%d": {}}}`, w, a)
						if code, body, _ := vschematest.Call(t, nil, "PUT", servers[(w+1)%2].URL+"/api/v1/keyspaces/cold/vschema", []byte(cold)); code != 200 {
							errs <- fmt.Errorf("PUT cold: %d %s", code, body)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			code, body, _ := vschematest.Call(t, nil, "GET", servers[1].URL+"/api/v1/keyspaces/hot/vschema", nil)
			final := vschematest.ParseKeyspace(t, body)
			if code != 200 || len(final.Tables) != writers*adds {
				t.Fatalf("hot has %d tables, want %d: updates were lost", len(final.Tables), writers*adds)
			}
			for _, cell := range tp.Cells {
				for _, ks := range []string{"hot", "cold"} {
					code, body, _ := vschematest.Call(t, nil, "GET", servers[0].URL+"/api/v1/keyspaces/"+ks+"/vschema", nil)
					want := vschematest.ParseKeyspace(t, body)
					code2, body2, _ := vschematest.Call(t, nil, "GET", servers[0].URL+"/api/v1/cells/"+cell+"/srvvschema/keyspaces/"+ks, nil)
					if code != 200 || code2 != 200 || !proto.Equal(vschematest.ParseKeyspace(t, body2), want) {
						t.Fatalf("cell %s serves another %s than the global topology has", cell, ks)
					}
				}
			}
			vschematest.AssertCellsAsRebuilt(t, context.Background(), tp)
		})
	}
}
