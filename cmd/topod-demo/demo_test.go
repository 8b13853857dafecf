package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"vitess.io/vitess/go/sqltypes"
	vtadminpb "vitess.io/vitess/go/vt/proto/vtadmin"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
)

func TestMain(m *testing.M) {
	quietGRPC()
	os.Exit(m.Run())
}

// TestDemo runs the demo as `make demo` does (runStart, with the binaries
// `make build` puts in bin/), then every vschemad command it printed,
// exactly as printed (bash -c), checking each one's exit status and output;
// before a command that reads a change back from vtgate it waits for vtgate
// to serve the change, and logs how long after the previous command's
// answer (the apply's, the import's) that was. After the commands it waits
// for the rollback to reach vtgate. Then it stops the demo as `make
// demo-stop` does and checks that none of its processes runs, vschemad
// included.
//
// By default the demo runs on a fresh data directory, on free ports, with
// 100 keyspaces (TOPOD_DEMO_KEYSPACES=N for another size). With
// TOPOD_DEMO_DATA=DIR it uses the demo that `make demo` runs on DIR, on
// the default ports: it starts only what does not run, as a second `make
// demo` would, and leaves the demo running.
func TestDemo(t *testing.T) {
	// Run from the repository's root, as `make demo` does: the demo
	// prints the paths under it relative to it (bin/vschemad), and the
	// commands run from there.
	t.Chdir(filepath.Join("..", ".."))
	binDir, err := filepath.Abs("bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range binaries {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			t.Fatalf("%v: run `make build` (make test does)", err)
		}
	}
	if _, err := exec.LookPath("mysql"); err != nil {
		t.Fatalf("no mysql client (make test installs one): %v", err)
	}
	if _, err := vtlocal.FindMySQL(); err != nil {
		t.Fatalf("%v (make test installs it)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	c := defaultConfig()
	c.binDir = binDir
	fresh := os.Getenv("TOPOD_DEMO_DATA") == ""
	if fresh {
		c.dataDir = demoDir(t)
		c.keyspaces = 100
		if n := os.Getenv("TOPOD_DEMO_KEYSPACES"); n != "" {
			if _, err := fmt.Sscan(n, &c.keyspaces); err != nil || c.keyspaces < 1 {
				t.Fatalf("TOPOD_DEMO_KEYSPACES=%q: want a positive number", n)
			}
		}
		ports, err := freeport.Pick(9)
		if err != nil {
			t.Fatal(err)
		}
		c.topodPort, c.vtctldPort, c.vtctldGRPCPort, c.vtgatePort, c.mysqlPort, c.vschemadPort =
			ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
		c.vtgateGRPCPort, c.vtadminPort, c.vtadminWebPort = ports[6], ports[7], ports[8]
		var offsets []int
		for _, t := range commerceTablets(config{cell: c.cell}) {
			offsets = append(offsets, t.Port, t.GRPCPort, t.MySQLPort)
		}
		if c.tabletPorts, err = freeport.PickBase(offsets...); err != nil {
			t.Fatal(err)
		}
	} else if c.dataDir, err = filepath.Abs(os.Getenv("TOPOD_DEMO_DATA")); err != nil {
		t.Fatal(err)
	}
	if fresh {
		t.Cleanup(func() { stopDemo(t, c) })
	}

	cmds, err := runStart(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) == 0 {
		t.Fatal("the demo printed no vschemad command")
	}
	answered, previous := time.Time{}, ""
	for _, cmd := range cmds {
		if s := cmd.Serves; s != nil {
			seen := waitServes(ctx, t, c, *s, true)
			t.Logf("vtgate served table %s of keyspace %s %v after the answer of `%s` (%s keyspaces)",
				s.Table, s.Keyspace, seen.Sub(answered).Round(time.Millisecond), previous, thousands(c.keyspaces+1))
		}
		out, err := exec.CommandContext(ctx, "bash", "-c", cmd.Line).CombinedOutput()
		answered, previous = time.Now(), cmd.Line
		switch {
		case err == nil && cmd.Fails:
			t.Fatalf("`%s` succeeded, want it refused:\n%s", cmd.Line, out)
		case err != nil && !cmd.Fails:
			t.Fatalf("`%s`: %v\n%s", cmd.Line, err, out)
		case !strings.Contains(string(out), cmd.Want):
			t.Fatalf("`%s` printed no %q:\n%s", cmd.Line, cmd.Want, out)
		}
		t.Logf("$ %s\n%s", cmd.Line, out)
	}
	checkVTAdminAPI(ctx, t, c)
	// The rollback undid the apply in vtgate too.
	tour := c.tour(relToWd)
	waitServes(ctx, t, c, vtlocal.ServedTable{Keyspace: tour.Profile.KeyspaceName(tour.Keyspace()), Table: vtlocal.TourTable}, false)
}

// waitServes waits until vtgate serves table s (or, with want false, no
// longer does), asking SHOW VSCHEMA TABLES every 10 ms, and returns when
// it saw it.
func waitServes(ctx context.Context, t *testing.T, c config, s vtlocal.ServedTable, want bool) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		qr, err := query(ctx, c.mysqlPort, s.Keyspace, "SHOW VSCHEMA TABLES")
		if err == nil && slices.ContainsFunc(qr.Rows, func(r []sqltypes.Value) bool { return r[0].ToString() == s.Table }) == want {
			return time.Now()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("vtgate: table %s in keyspace %s: served %v, want %v (last error: %v); logs in %s", s.Table, s.Keyspace, !want, want, err, c.path("logs"))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// demoDir returns a fresh data directory for the demo that its user can
// reach (not under t.TempDir(), which only root can enter); it is removed
// when the test passes and kept, for its logs, when it fails.
func demoDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "topod-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s for its logs", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return filepath.Join(dir, "demo-data")
}

// stopDemo stops the demo as `make demo-stop` does and checks that none of
// its processes runs any more.
func stopDemo(t *testing.T, c config) {
	t.Helper()
	pids := map[string]int{}
	for _, name := range []string{"topod", "vtctld", "vtgate", "vschemad", "vtadmin"} {
		if pid, ok := running(c, name, c.bin(name)); ok {
			pids[name] = pid
		} else {
			t.Errorf("%s was not running before the stop", name)
		}
	}
	if err := runStop(c); err != nil {
		t.Errorf("stop: %v", err)
	}
	for name, pid := range pids {
		if proc.Running(pid, c.bin(name)) {
			t.Errorf("%s (pid %d) still runs after the stop", name, pid)
		}
		if _, err := os.Stat(c.pidFile(name)); !os.IsNotExist(err) {
			t.Errorf("%s's pid file is still there after the stop (%v)", name, err)
		}
	}
}

// checkVTAdminAPI checks that vtadmin-api found the demo's cluster (its
// static discovery file) and lists every keyspace through vtctld, and
// commerce's tablets through vtgate; and that its topology browser's API
// opens commerce's Keyspace record and the cell's SrvVSchema (which it
// cannot at 2,001 keyspaces: e2e/vtadminweb).
func checkVTAdminAPI(ctx context.Context, t *testing.T, c config) {
	t.Helper()
	var keyspaces struct {
		Result struct {
			Keyspaces []struct {
				Keyspace struct{ Name string } `json:"keyspace"`
			} `json:"keyspaces"`
		} `json:"result"`
		Ok bool `json:"ok"`
	}
	getJSON(ctx, t, c.vtadminURL()+"/api/keyspaces", &keyspaces)
	if got, want := len(keyspaces.Result.Keyspaces), c.keyspaces+1; !keyspaces.Ok || got != want {
		t.Fatalf("vtadmin-api lists %d keyspaces (ok %v), want %d", got, keyspaces.Ok, want)
	}
	var tablets struct {
		Result struct {
			Tablets []struct {
				Tablet struct{ Keyspace string }     `json:"tablet"`
				State  vtadminpb.Tablet_ServingState `json:"state"`
			} `json:"tablets"`
		} `json:"result"`
	}
	// vtadmin-api lists the tablets vtgate's health check sees.
	serving := 0
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		getJSON(ctx, t, c.vtadminURL()+"/api/tablets", &tablets)
		serving = 0
		for _, tb := range tablets.Result.Tablets {
			if tb.Tablet.Keyspace == vtlocal.CommerceKeyspace && tb.State == vtadminpb.Tablet_SERVING {
				serving++
			}
		}
		return serving == len(commerceTablets(c)), nil
	}); err != nil {
		t.Fatalf("vtadmin-api lists %d SERVING tablets of %s, want %d: %+v", serving, vtlocal.CommerceKeyspace, len(commerceTablets(c)), tablets.Result.Tablets)
	}
	t.Logf("vtadmin-api lists %d keyspaces and the %d SERVING tablets of %s", c.keyspaces+1, len(commerceTablets(c)), vtlocal.CommerceKeyspace)
	// The files as vtctld's GetTopologyPath decodes them: protobuf's text
	// format, whose spacing varies from build to build.
	for path, want := range map[string]*regexp.Regexp{
		"/global/keyspaces/" + vtlocal.CommerceKeyspace + "/Keyspace": regexp.MustCompile(`durability_policy:\s*"none"`),
		"/" + c.cell + "/SrvVSchema":                                  regexp.MustCompile(`key:\s*"` + vtlocal.CommerceKeyspace + `"`),
	} {
		var topo struct {
			Result struct {
				Cell struct{ Data string } `json:"cell"`
			} `json:"result"`
		}
		getJSON(ctx, t, c.vtadminURL()+"/api/cluster/"+vtadminCluster+"/topology?path="+path, &topo)
		if !want.MatchString(topo.Result.Cell.Data) {
			t.Errorf("vtadmin-api: topology path %s: no %q in %.300q", path, want, topo.Result.Cell.Data)
		}
	}
}

func getJSON(ctx context.Context, t *testing.T, url string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %.500s", url, err, body)
	}
}
