package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtctl/vtctldclient"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/internal/vtlocal"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// store is one topod on an etcd of its own.
type store struct {
	name, addr string
	etcd       *harness.Etcd
	proc       *harness.TopodProc
}

// TestMultiCellOnTopod runs the layout of one lockserver cluster per cell:
// a global topod on its own etcd, and cells zone1 and zone2, each with its
// own topod on its own etcd (their CellInfos point at them), a vtctld on the
// global topology, a vtgate per cell and bin/vschemad. It checks that
//   - keyspaces created through vtctld reach both cells' SrvVSchema, each
//     stored only by its cell's topod (blobs in that topod's own store);
//   - a vschemad change reaches both cells' vtgates, uploading blobs to
//     each cell's store;
//   - with zone2's topod killed, vschemad's next change reaches zone1 and
//     says zone2 failed; zone1 serves it, zone2's vtgate keeps serving what
//     it has; once zone2's topod is back, a rebuild of zone2 brings its
//     vtgate up to date.
func TestMultiCellOnTopod(t *testing.T) {
	bin := binaries(t, "topod", "vtctld", "vtgate", "vschemad")
	mysqlCLI := mysqlClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	id, work := processUser(t)
	cells := []string{"zone1", "zone2"}
	ports, err := freeport.Pick(3 + 2 + 2*len(cells) + 1)
	if err != nil {
		t.Fatal(err)
	}
	port := func() int { p := ports[0]; ports = ports[1:]; return p }

	// A topod on an etcd of its own for the global topology and each cell.
	stores := map[string]*store{}
	for _, name := range append([]string{"global"}, cells...) {
		s := &store{name: "topod-" + name, addr: "127.0.0.1:" + strconv.Itoa(port()), etcd: harness.StartEtcd(t, 1)}
		s.proc = startTopodOnEtcd(t, ctx, bin["topod"], s.name, s.addr, s.etcd, work, nil)
		stores[name] = s
	}
	tp := vtlocal.Topo{Implementation: "topod", Address: stores["global"].addr, Root: globalRoot}
	ts, err := topo.OpenServer(tp.Implementation, tp.Address, tp.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	for _, cell := range cells {
		if err := ts.CreateCellInfo(ctx, cell, &topodatapb.CellInfo{ServerAddress: stores[cell].addr, Root: "/vitess/" + cell}); err != nil {
			t.Fatalf("CreateCellInfo %s: %v", cell, err)
		}
	}

	logs := filepath.Join(work, "logs")
	vtctldHTTP, vtctldGRPC := port(), port()
	vtctld := start(t, proc.Spec{Name: "vtctld", Binary: bin["vtctld"], Args: vtlocal.VtctldArgs(tp, vtctldHTTP, vtctldGRPC),
		Log: filepath.Join(logs, "vtctld.log"), Dir: work, User: id})
	if err := vtctld.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", vtctldHTTP)); err != nil {
		t.Fatal(err)
	}
	vtgates, mysqlPorts := map[string]*proc.Process{}, map[string]int{}
	for _, cell := range cells {
		httpPort, mysqlPort := port(), port()
		vtgates[cell] = start(t, proc.Spec{Name: "vtgate-" + cell, Binary: bin["vtgate"], Args: vtlocal.VtgateArgs(tp, cell, httpPort, mysqlPort),
			Log: filepath.Join(logs, "vtgate-"+cell+".log"), Dir: work, User: id})
		if err := vtgates[cell].WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", httpPort)); err != nil {
			t.Fatal(err)
		}
		mysqlPorts[cell] = mysqlPort
	}
	client, err := vtctldclient.New(ctx, "grpc", fmt.Sprintf("127.0.0.1:%d", vtctldGRPC))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	// Keyspaces through vtctld: both cells' SrvVSchema, each in its own
	// cell's topod only.
	profile := jd.JD().Sized(12)
	loader := &vtlocal.Loader{Client: client, Profile: profile, Workers: 4}
	idx := vtlocal.Range(profile.Keyspaces)
	for _, step := range []func(context.Context) error{
		func(ctx context.Context) error { return loader.CreateKeyspaces(ctx, idx) },
		func(ctx context.Context) error { return loader.ApplyVSchemas(ctx, idx) },
		loader.ApplyRoutingRules,
		loader.Rebuild,
	} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, cell := range cells {
		got, err := ts.GetSrvVSchema(ctx, cell)
		if err != nil {
			t.Fatalf("SrvVSchema of %s: %v", cell, err)
		}
		checkSrvVSchema(t, got, profile.SrvVSchema())
		for _, other := range cells {
			exists, err := srvVSchemaIn(ctx, stores[other].addr, "/vitess/"+cell)
			if err != nil {
				t.Fatal(err)
			}
			if exists != (other == cell) {
				t.Fatalf("the SrvVSchema of %s is in %s's topod: %v", cell, other, exists)
			}
		}
	}
	t.Logf("the SrvVSchema of %d keyspaces is in each cell's own topod, and only there", profile.Keyspaces)

	// vschemad changes one keyspace: both cells, blobs in each cell's store.
	vschemadPort := port()
	vschemadURL := fmt.Sprintf("http://127.0.0.1:%d", vschemadPort)
	vschemad := start(t, proc.Spec{Name: "vschemad", Binary: bin["vschemad"],
		Args: append(vtlocal.VschemadArgs(tp, vschemadPort, filepath.Join(work, "vschemad-audit.log")),
			// A cell whose topod is down is reported failed after 10 s.
			"--cell-timeout", "10s"),
		Log: filepath.Join(logs, "vschemad.log"), Dir: work, User: id})
	if err := vschemad.WaitHTTP(ctx, vschemadURL+"/healthz"); err != nil {
		t.Fatal(err)
	}
	ks, vs := profile.Keyspace(3)
	change := func(table string) (int, wire.ErrorResponse, wire.ApplyResponse) {
		t.Helper()
		vs.Tables[table] = newTable(vs)
		return putVSchema(ctx, t, vschemadURL, ks, vschematest.VSchemaJSON(t, vs))
	}
	showsTable := func(cell, table string, want bool) func() error {
		return func() error {
			rows, err := mysqlQuery(ctx, mysqlCLI, mysqlPorts[cell], ks, "SHOW VSCHEMA TABLES")
			if err != nil {
				return err
			}
			if has := strings.Contains(fmt.Sprint(rows), table); has != want {
				return fmt.Errorf("vtgate of %s: table %s in SHOW VSCHEMA TABLES of %s: %v, want %v", cell, table, ks, has, want)
			}
			return nil
		}
	}
	before := map[string]int{}
	for _, cell := range cells {
		before[cell] = countFiles(t, filepath.Join(work, stores[cell].name, "blobs"))
	}
	status, eresp, resp := change("multicell_one")
	if status != http.StatusOK {
		t.Fatalf("vschemad PUT %s: %d %s", ks, status, eresp.Message)
	}
	for _, cell := range cells {
		if r := cellResult(resp.Cells, cell); r == nil || r.Error != "" {
			t.Fatalf("vschemad's answer for cell %s: %+v", cell, r)
		}
		if after := countFiles(t, filepath.Join(work, stores[cell].name, "blobs")); after <= before[cell] {
			t.Errorf("no blob uploaded to %s's store (%d files before, %d after)", cell, before[cell], after)
		}
		waitFor(ctx, t, vtgates[cell], changeWithin, "the vschemad change in "+cell, showsTable(cell, "multicell_one", true))
	}
	t.Log("a vschemad change reached both cells' vtgates, with blobs uploaded to each cell's own store")

	// zone2's topod down: zone1 takes the next change, zone2 keeps serving.
	down := cells[1]
	stores[down].proc.Kill()
	status, eresp, _ = change("multicell_two")
	if status != http.StatusBadGateway {
		t.Fatalf("vschemad PUT %s with %s's topod down: %d %s, want 502", ks, down, status, eresp.Message)
	}
	var result wire.ApplyResponse
	if err := json.Unmarshal(eresp.Result, &result); err != nil {
		t.Fatalf("vschemad's 502 result: %v", err)
	}
	if r := cellResult(result.Cells, cells[0]); r == nil || r.Error != "" {
		t.Fatalf("vschemad's answer for %s with %s down: %+v", cells[0], down, r)
	}
	if r := cellResult(result.Cells, down); r == nil || r.Error == "" {
		t.Fatalf("vschemad's answer for %s, whose topod is down: %+v", down, r)
	}
	t.Logf("vschemad with %s's topod down: 502 %q", down, eresp.Message)
	waitFor(ctx, t, vtgates[cells[0]], changeWithin, "the change in "+cells[0], showsTable(cells[0], "multicell_two", true))
	if err := showsTable(down, "multicell_one", true)(); err != nil {
		t.Fatalf("%s's vtgate with its topod down: %v", down, err)
	}
	if err := showsTable(down, "multicell_two", false)(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s serves the change; %s's vtgate keeps serving what it had", cells[0], down)

	// zone2's topod back: a rebuild brings its vtgate up to date.
	stores[down].proc = startTopodOnEtcd(t, ctx, bin["topod"], stores[down].name, stores[down].addr, stores[down].etcd, work, nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, vschemadURL+"/api/v1/cells/"+down+"/srvvschema/rebuild", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json") // vschemad without tokens refuses a write without it
	if status, body := do(t, req); status != http.StatusOK {
		t.Fatalf("rebuild %s: %d %s", down, status, body)
	}
	waitFor(ctx, t, vtgates[down], convergeWithin, "the change in "+down+" after its rebuild", showsTable(down, "multicell_two", true))
	t.Logf("%s's topod restarted; after vschemad's rebuild of %s its vtgate serves the change", down, down)
}

// srvVSchemaIn reports whether the topod at addr holds a SrvVSchema under
// root, read through the plugin.
func srvVSchemaIn(ctx context.Context, addr, root string) (bool, error) {
	conn, err := topo.OpenServer("topod", addr, root)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	cellConn, err := conn.ConnForCell(ctx, topo.GlobalCell)
	if err != nil {
		return false, err
	}
	_, _, err = cellConn.Get(ctx, topo.SrvVSchemaFile)
	switch {
	case err == nil:
		return true, nil
	case topo.IsErrType(err, topo.NoNode):
		return false, nil
	default:
		return false, fmt.Errorf("read %s/%s at %s: %w", root, topo.SrvVSchemaFile, addr, err)
	}
}

// putVSchema PUTs a keyspace's vschema to vschemad and decodes its answer.
func putVSchema(ctx context.Context, t *testing.T, url, ks string, body []byte) (int, wire.ErrorResponse, wire.ApplyResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url+"/api/v1/keyspaces/"+ks+"/vschema", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json") // vschemad without tokens refuses a write without it
	status, b := do(t, req)
	var eresp wire.ErrorResponse
	var resp wire.ApplyResponse
	if status == http.StatusOK {
		err = json.Unmarshal(b, &resp)
	} else {
		err = json.Unmarshal(b, &eresp)
	}
	if err != nil {
		t.Fatalf("vschemad answered %d %s: %v", status, b, err)
	}
	return status, eresp, resp
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cellResult returns vschemad's result for cell, nil if there is none.
func cellResult(results []wire.CellResult, cell string) *wire.CellResult {
	for i := range results {
		if results[i].Cell == cell {
			return &results[i]
		}
	}
	return nil
}
