// Package e2e proves with the real Vitess programs that swapping
// --topo-implementation etcd2 for topod changes nothing else: the
// repository's bin/vtctld and bin/vtgate (Vitess 24's own commands with the
// plugin linked in) run as an unprivileged user against bin/topod on a real
// etcd, are loaded through vtctld's gRPC API with a SrvVSchema stock etcd2
// cannot store, and are queried with the mysql client.
//
// The binaries are not built here: `make test` builds them first (`make
// build`); a missing one fails the test with a message saying so.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo"
	"vitess.io/vitess/go/vt/vtctl/vtctldclient"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	vtctldatapb "vitess.io/vitess/go/vt/proto/vtctldata"

	_ "vitess.io/vitess/go/vt/vtctl/grpcvtctldclient"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
	_ "github.com/topod-io/topod/pkg/topoplugin"
)

const (
	// keyspaces is how many keyspaces of the JD profile the test loads: its
	// SrvVSchema must be over etcd's request limit.
	keyspaces = 320
	// etcdRequestLimit is etcd's default --max-request-bytes (1.5 MiB).
	etcdRequestLimit = 1572864
	cell             = "zone1"
	globalRoot       = "/vitess/global"
	// changeWithin bounds how long a vschema change may take to show in
	// vtgate's /debug/vschema.
	changeWithin = 5 * time.Second
	// convergeWithin bounds how long vtgate may take to show a change made
	// after topod came back from a crash.
	convergeWithin = 30 * time.Second
)

// TestVitessOnTopod runs vtctld and vtgate with --topo-implementation topod
// on topod over a real etcd, loads keyspaces with vschemas through vtctld,
// and checks what vtgate serves: every keyspace in SHOW VITESS_KEYSPACES, a
// vschema change in /debug/vschema within 5 seconds, and convergence after
// topod is killed and restarted, without restarting vtgate.
func TestVitessOnTopod(t *testing.T) {
	bin := binaries(t, "topod", "vtctld", "vtgate")
	mysqlCLI := mysqlClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	id, work := processUser(t)
	ports, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	topodAddr := "127.0.0.1:" + strconv.Itoa(ports[0])

	// A real etcd, at its default limits, under topod.
	etcd := harness.StartEtcd(t, 1)
	startTopod := func() *harness.TopodProc {
		return startTopodOnEtcd(t, ctx, bin["topod"], "topod", topodAddr, etcd, work, nil)
	}
	topod := startTopod()

	// vtctld and vtgate, exactly as with etcd2 but for the implementation.
	ts, vt := startVitess(ctx, t, bin, work, id, vtlocal.Topo{Implementation: "topod", Address: topodAddr, Root: globalRoot}, "/vitess/"+cell)
	vtgate, client := vt.vtgate, vt.client
	vtgateHTTP, vtgateMySQL := vt.vtgateHTTP, vt.vtgateMySQL
	t.Logf("topod, vtctld and vtgate (as user %s) up; logs in %s", id.Name, filepath.Join(work, "logs"))

	// Keyspaces and vschemas through vtctld's gRPC API.
	profile := jd.JD().Sized(keyspaces)
	loader := &vtlocal.Loader{Client: client, Profile: profile, Workers: 4}
	idx := vtlocal.Range(keyspaces)
	step := func(name string, f func() error) {
		t.Helper()
		begin := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, time.Since(begin).Round(time.Millisecond))
	}
	// Created, applied and rebuilt as an operator would through vtctld.
	step(fmt.Sprintf("CreateKeyspace x%d", keyspaces), func() error { return loader.CreateKeyspaces(ctx, idx) })
	step(fmt.Sprintf("ApplyVSchema x%d (skip_rebuild)", keyspaces), func() error { return loader.ApplyVSchemas(ctx, idx) })
	step("ApplyRoutingRules", func() error { return loader.ApplyRoutingRules(ctx) })
	step("RebuildVSchemaGraph", func() error { return loader.Rebuild(ctx) })

	// The SrvVSchema is the profile's, and over etcd's request limit.
	want := profile.SrvVSchema()
	got, err := ts.GetSrvVSchema(ctx, cell)
	if err != nil {
		t.Fatalf("GetSrvVSchema %s: %v", cell, err)
	}
	checkSrvVSchema(t, got, want)
	size := proto.Size(got)
	t.Logf("SrvVSchema of %s: %d keyspaces, %d bytes (%.2f MiB)", cell, len(got.Keyspaces), size, float64(size)/(1<<20))
	if size <= etcdRequestLimit {
		t.Fatalf("SrvVSchema is %d bytes, not over etcd's %d-byte request limit: load more keyspaces", size, etcdRequestLimit)
	}
	// Stock etcd2, on the same etcd, cannot store it.
	checkEtcd2Refuses(ctx, t, etcd.Endpoints(), got)

	// vtgate lists every keyspace.
	names := make([]string, keyspaces)
	for i := range names {
		names[i] = profile.KeyspaceName(i)
	}
	showKeyspaces := func() ([]string, error) { return showKeyspaces(ctx, mysqlCLI, vtgateMySQL) }
	vschemaURL := fmt.Sprintf("http://127.0.0.1:%d/debug/vschema", vtgateHTTP)
	waitFor(ctx, t, vtgate, 30*time.Second, "vtgate to serve the whole SrvVSchema", func() error {
		// Keyspaces show up as vtctld creates them, their tables only
		// with the final rebuild: check both.
		if err := servesTables(ctx, vschemaURL, want); err != nil {
			return err
		}
		ks, err := showKeyspaces()
		if err != nil {
			return err
		}
		if !slices.Equal(ks, names) {
			return fmt.Errorf("SHOW VITESS_KEYSPACES lists %d keyspaces, want %d", len(ks), len(names))
		}
		return nil
	})
	t.Logf("vtgate serves every table of the SrvVSchema in /debug/vschema; SHOW VITESS_KEYSPACES through mysql lists all %d keyspaces", keyspaces)

	// The plugin's figures are among vtgate's own stats.
	vars, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/vars", vtgateHTTP))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TopodWatches", "TopodBlobFetches", "TopodBlobCacheBytes", "TopodWatchStreamReconnects"} {
		if !strings.Contains(vars, `"`+name+`"`) {
			t.Errorf("vtgate's /debug/vars has no %s", name)
		}
	}

	// A one-keyspace vschema change shows in /debug/vschema within 5 s.
	// change adds table to a keyspace's vschema with ApplyVSchema (which
	// rebuilds the SrvVSchema) and returns when the call was made.
	change := func(table string) time.Time {
		t.Helper()
		name, vs := profile.Keyspace(7)
		vs.Tables[table] = newTable(vs)
		begin := time.Now()
		if _, err := client.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: name, VSchema: vs}); err != nil {
			t.Fatalf("ApplyVSchema %s: %v", name, err)
		}
		return begin
	}
	seen := func(table string) func() error {
		return func() error {
			body, err := get(ctx, vschemaURL)
			if err != nil {
				return err
			}
			if !strings.Contains(body, `"`+table+`"`) {
				return fmt.Errorf("table %s not in /debug/vschema (%d bytes)", table, len(body))
			}
			return nil
		}
	}
	applied := change("e2e_change_one")
	waitFor(ctx, t, vtgate, changeWithin, "/debug/vschema to show table e2e_change_one", seen("e2e_change_one"))
	t.Logf("vschema change of %s (ApplyVSchema with its rebuild) seen in vtgate's /debug/vschema %v after the call", profile.KeyspaceName(7), time.Since(applied).Round(time.Millisecond))

	// topod crashes and comes back on the same address; vtgate, never
	// restarted, converges on a change made after that.
	reconnects := func() (int, error) {
		vars, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/vars", vtgateHTTP))
		if err != nil {
			return 0, err
		}
		var stats struct{ TopodWatchStreamReconnects int }
		err = json.Unmarshal([]byte(vars), &stats)
		return stats.TopodWatchStreamReconnects, err
	}
	before, err := reconnects()
	if err != nil {
		t.Fatal(err)
	}
	topod.Kill()
	t.Log("topod killed (SIGKILL)")
	// vtgate's watch stream broke, and its plugin tried to open it again.
	waitFor(ctx, t, vtgate, time.Minute, "vtgate's plugin to try its watch stream again", func() error {
		n, err := reconnects()
		if err == nil && n == before {
			err = fmt.Errorf("TopodWatchStreamReconnects still %d", n)
		}
		return err
	})
	restarted := time.Now()
	topod = startTopod()
	t.Logf("topod restarted in %v", time.Since(restarted).Round(time.Millisecond))
	applied = change("e2e_change_two")
	waitFor(ctx, t, vtgate, convergeWithin, "/debug/vschema to show table e2e_change_two after topod's restart", seen("e2e_change_two"))
	t.Logf("after topod's restart, vtgate (not restarted) shows a new change %v after the ApplyVSchema call", time.Since(applied).Round(time.Millisecond))
	ks, err := showKeyspaces()
	if err != nil || !slices.Equal(ks, names) {
		t.Fatalf("after topod's restart SHOW VITESS_KEYSPACES lists %d keyspaces (err %v), want %d", len(ks), err, len(names))
	}
	if exited, err := vtgate.Exited(); exited {
		t.Fatalf("vtgate exited: %v", err)
	}
}

// showKeyspaces asks vtgate for SHOW VITESS_KEYSPACES with the mysql client
// at mysqlCLI and returns the keyspaces, sorted.
func showKeyspaces(ctx context.Context, mysqlCLI string, port int) ([]string, error) {
	rows, err := mysqlQuery(ctx, mysqlCLI, port, "", "SHOW VITESS_KEYSPACES")
	if err != nil {
		return nil, err
	}
	ks := make([]string, len(rows))
	for i, r := range rows {
		ks[i] = r[0]
	}
	slices.Sort(ks)
	return ks, nil
}

// vitess is a vtctld and a vtgate on one topology.
type vitess struct {
	vtctld, vtgate          *proc.Process
	client                  vtctldclient.VtctldClient
	vtgateHTTP, vtgateMySQL int
}

// startVitess opens the global topology tp through its plugin, creates the
// cell (its root at cellRoot on the same server), and starts vtctld and
// vtgate on it as id, with their logs in work/logs named after the
// implementation; vtgate gets vtgateArgs too. Everything stops when the
// test ends.
func startVitess(ctx context.Context, t *testing.T, bin map[string]string, work string, id *proc.Identity, tp vtlocal.Topo, cellRoot string, vtgateArgs ...string) (*topo.Server, *vitess) {
	t.Helper()
	ts, err := topo.OpenServer(tp.Implementation, tp.Address, tp.Root)
	if err != nil {
		t.Fatalf("open the %s topology: %v", tp.Implementation, err)
	}
	t.Cleanup(ts.Close)
	if err := ts.CreateCellInfo(ctx, cell, &topodatapb.CellInfo{ServerAddress: tp.Address, Root: cellRoot}); err != nil {
		t.Fatalf("CreateCellInfo %s: %v", cell, err)
	}
	// The cell's (empty) SrvVSchema, which vtgate would build at start if
	// it were missing, but may not under deploy/'s policy.
	if err := ts.RebuildSrvVSchema(ctx, []string{cell}); err != nil {
		t.Fatalf("RebuildSrvVSchema %s: %v", cell, err)
	}
	return ts, startVtctldVtgate(ctx, t, bin, work, id, tp, vtgateArgs...)
}

// startVtctldVtgate starts vtctld and vtgate (of cell, with vtgateArgs too)
// on the global topology tp as id, with their logs in work/logs named after
// the implementation, and waits until both serve. They stop when the test
// ends.
func startVtctldVtgate(ctx context.Context, t *testing.T, bin map[string]string, work string, id *proc.Identity, tp vtlocal.Topo, vtgateArgs ...string) *vitess {
	t.Helper()
	ports, err := freeport.Pick(4)
	if err != nil {
		t.Fatal(err)
	}
	vtctldHTTP, vtctldGRPC := ports[0], ports[1]
	vt := &vitess{vtgateHTTP: ports[2], vtgateMySQL: ports[3]}
	logs := filepath.Join(work, "logs")
	vt.vtctld = start(t, proc.Spec{
		Name: tp.Implementation + " vtctld", Binary: bin["vtctld"], Args: vtlocal.VtctldArgs(tp, vtctldHTTP, vtctldGRPC),
		Log: filepath.Join(logs, tp.Implementation+"-vtctld.log"), Dir: work, User: id,
	})
	vt.vtgate = start(t, proc.Spec{
		Name: tp.Implementation + " vtgate", Binary: bin["vtgate"], Args: append(vtlocal.VtgateArgs(tp, cell, vt.vtgateHTTP, vt.vtgateMySQL), vtgateArgs...),
		Log: filepath.Join(logs, tp.Implementation+"-vtgate.log"), Dir: work, User: id,
	})
	if err := vt.vtctld.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", vtctldHTTP)); err != nil {
		t.Fatal(err)
	}
	if err := vt.vtgate.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", vt.vtgateHTTP)); err != nil {
		t.Fatal(err)
	}
	vt.client, err = vtctldclient.New(ctx, "grpc", fmt.Sprintf("127.0.0.1:%d", vtctldGRPC))
	if err != nil {
		t.Fatalf("vtctldclient: %v", err)
	}
	t.Cleanup(func() { vt.client.Close() })
	return vt
}

// binaries returns the paths of the named programs in the repository's
// bin/, failing the test if one is missing.
func binaries(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	paths := make(map[string]string, len(names))
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run `make build` first (make test does): %v", p, err)
		}
		paths[n] = p
	}
	return paths
}

// mysqlClient returns the path of the mysql client, failing the test if
// there is none.
func mysqlClient(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mysql")
	if err != nil {
		t.Fatalf("the mysql client is missing (make test installs Debian's mariadb-client): %v", err)
	}
	return p
}

// processUser returns who the Vitess processes run as, and a work directory
// of theirs (workDir).
func processUser(t *testing.T) (*proc.Identity, string) {
	t.Helper()
	id, err := proc.EnsureUser(vtlocal.DefaultUser)
	if err != nil {
		t.Fatal(err)
	}
	return id, workDir(t, id)
}

// workDir returns a directory for the processes' data and logs, writable by
// id. It is not under t.TempDir(), which only root can enter; it is removed
// when the test passes and kept, for its logs, when it fails or
// TOPOD_E2E_KEEP is set.
func workDir(t *testing.T, id *proc.Identity) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "topod-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "logs")} {
		if err := id.MkdirAll(d); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("TOPOD_E2E_KEEP") != "" {
			t.Logf("kept %s for its logs", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// startTopodOnEtcd runs the topod binary, named name in messages, on etcd
// at addr, with its blobs and data in work/name and its log in
// work/logs/name.log, and waits until it serves. It is stopped when the
// test ends, and its log's tail printed if the test failed.
func startTopodOnEtcd(t *testing.T, ctx context.Context, topodBin, name, addr string, etcd *harness.Etcd, work string, g *guard) *harness.TopodProc {
	t.Helper()
	args := []string{
		"--backend", "etcd://" + strings.Join(trimScheme(etcd.Endpoints()), ","),
		"--blobs", "file://" + filepath.Join(work, name, "blobs"),
		"--data-dir", filepath.Join(work, name, "data"),
	}
	var health []grpc.DialOption
	if g != nil {
		args = append(args, g.serverArgs...)
		health = append(health, g.health)
	}
	p, err := harness.StartTopodProc(ctx, harness.TopodProcConfig{
		Name: name, Binary: topodBin, Dir: filepath.Join(work, "logs"), Args: args, Addr: addr, Health: health,
	})
	if err != nil {
		t.Fatal(err)
	}
	child := p.Process()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", child.Spec.Log, proc.LogTail(child.Spec.Log, 40))
		}
	})
	return p
}

// start starts a process that is stopped when the test ends, and whose log
// tail is printed if the test fails.
func start(t *testing.T, s proc.Spec) *proc.Process {
	t.Helper()
	p, err := proc.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, p)
	return p
}

// stopAtEnd stops p when the test ends, and prints its log's tail if the
// test failed.
func stopAtEnd(t *testing.T, p *proc.Process) {
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", p.Spec.Log, proc.LogTail(p.Spec.Log, 30))
		}
	})
}

// waitFor polls check until it succeeds, failing the test after within, or
// at once if p (a process the check depends on) exits.
func waitFor(ctx context.Context, t *testing.T, p *proc.Process, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if exited, perr := p.Exited(); exited {
			t.Fatalf("waiting for %s: %s exited: %v", what, p.Spec.Name, perr)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waited %v for %s: %v", within, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// checkSrvVSchema checks that the SrvVSchema vtctld built holds every
// keyspace's vschema and the routing rules as the profile generated them.
func checkSrvVSchema(t *testing.T, got, want *vschemapb.SrvVSchema) {
	t.Helper()
	if len(got.Keyspaces) != len(want.Keyspaces) {
		t.Fatalf("SrvVSchema has %d keyspaces, want %d", len(got.Keyspaces), len(want.Keyspaces))
	}
	for name, ks := range want.Keyspaces {
		if !proto.Equal(got.Keyspaces[name], ks) {
			t.Fatalf("SrvVSchema keyspace %s differs from the vschema applied", name)
		}
	}
	if !proto.Equal(got.RoutingRules, want.RoutingRules) {
		t.Fatalf("SrvVSchema routing rules differ: %d rules, want %d", len(got.RoutingRules.GetRules()), len(want.RoutingRules.GetRules()))
	}
}

// servesTables checks that vtgate's /debug/vschema at url has every keyspace
// of want with all its tables, and no keyspace in error.
func servesTables(ctx context.Context, url string, want *vschemapb.SrvVSchema) error {
	body, err := get(ctx, url)
	if err != nil {
		return err
	}
	var vs struct {
		Keyspaces map[string]struct {
			Tables map[string]json.RawMessage `json:"tables"`
			Error  string                     `json:"error"`
		} `json:"keyspaces"`
	}
	if err := json.Unmarshal([]byte(body), &vs); err != nil {
		return fmt.Errorf("/debug/vschema: %w", err)
	}
	for name, ks := range want.Keyspaces {
		got, ok := vs.Keyspaces[name]
		switch {
		case !ok:
			return fmt.Errorf("/debug/vschema lacks keyspace %s", name)
		case got.Error != "":
			return fmt.Errorf("/debug/vschema: keyspace %s: %s", name, got.Error)
		case len(got.Tables) != len(ks.Tables):
			return fmt.Errorf("/debug/vschema: keyspace %s has %d tables, want %d", name, len(got.Tables), len(ks.Tables))
		}
	}
	return nil
}

// checkEtcd2Refuses writes srv with stock Vitess etcd2 to the same etcd and
// expects etcd to refuse it as too large.
func checkEtcd2Refuses(ctx context.Context, t *testing.T, endpoints []string, srv *vschemapb.SrvVSchema) {
	t.Helper()
	addr := strings.Join(trimScheme(endpoints), ",")
	ts, err := topo.OpenServer("etcd2", addr, "/etcd2/global")
	if err != nil {
		t.Fatalf("open etcd2: %v", err)
	}
	defer ts.Close()
	if err := ts.CreateCellInfo(ctx, cell, &topodatapb.CellInfo{ServerAddress: addr, Root: "/etcd2/" + cell}); err != nil {
		t.Fatalf("etcd2 CreateCellInfo: %v", err)
	}
	err = ts.UpdateSrvVSchema(ctx, cell, srv)
	if err == nil {
		t.Fatal("stock etcd2 stored the SrvVSchema: it should be over etcd's request limit")
	}
	if !strings.Contains(err.Error(), "request is too large") {
		t.Fatalf("stock etcd2 UpdateSrvVSchema: %v; want etcd's \"request is too large\"", err)
	}
	t.Logf("stock etcd2 on the same etcd refuses it: %v", err)
}

// newTable returns a table for keyspace vschema vs: sharded by the hash
// vindex when vs is sharded.
func newTable(vs *vschemapb.Keyspace) *vschemapb.Table {
	if !vs.Sharded {
		return &vschemapb.Table{}
	}
	for name, v := range vs.Vindexes {
		if v.Type == "hash" {
			return &vschemapb.Table{ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: name}}}
		}
	}
	panic("sharded keyspace without a hash vindex")
}

// trimScheme turns etcd client URLs into the host:port form etcd2 and
// topod's etcd:// URL take.
func trimScheme(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	}
	return out
}
