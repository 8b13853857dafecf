//go:build !race

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/bench/fleet"
	jdreport "github.com/topod-io/topod/bench/report"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/topoplugin"
)

// TestJDExternal points the JD benchmark at servers it did not start, as a
// user points it at their own (--etcd-endpoints, --etcd-metrics-urls,
// --topod-addr, --topod-metrics-urls): an etcd cluster and a topod on it,
// started here. It runs stock and topod1 at --scale 0.02 and checks that
// every scenario was measured from the given metrics endpoints, that the
// user's leader was not moved nor their etcd compacted, and that the
// benchmark took its files away afterwards: no key under --root in etcd,
// no file under it in topod. Without the race detector for the reason
// TestJDScaled gives.
func TestJDExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an etcd cluster and a topod process")
	}
	stderr = &logWriter{t: t, start: time.Now()}
	t.Cleanup(func() { stderr = os.Stderr })
	ctx := t.Context()
	dir := t.TempDir()
	etcdBin, err := harness.EtcdBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := harness.StartEtcdProcs(ctx, harness.EtcdProcsConfig{Name: "users-etcd", Binary: etcdBin, Dir: filepath.Join(dir, "etcd"), Members: 1, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	bin, err := harness.BuildTopod(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	td, err := harness.StartTopodProcs(ctx, bin, etcd.Endpoints(), filepath.Join(dir, "topod-data"), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(td.Stop)
	// Something of the user's own, beside the benchmark's root, that must
	// stay.
	if _, err := etcd.Client().Put(ctx, "/theirs/key", "v"); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	c, err := parseJDFlags([]string{"--profile", "jd", "--scale", "0.02", "--out", out, "--topologies", "stock,topod1",
		"--etcd-endpoints", strings.Join(etcd.Endpoints(), ","), "--etcd-metrics-urls", strings.Join(etcd.MetricsURLs(), ","),
		"--topod-addr", td.Addrs(), "--topod-metrics-urls", strings.Join(td.MetricsURLs(), ","),
		"--steady", "2s", "--leader-window", "2s", "--compact-window", "2s", "--settle", "0s", "--reparent-shards", "10",
		"--tablet-refresh-interval", "2s", "--topo-information-refresh-duration", "2s", "--sample-interval", "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	if err := runJDConfig(ctx, c); err != nil {
		t.Fatal(err)
	}
	run, err := jdreport.ReadJSON(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Topologies) != 2 {
		t.Fatalf("report has %d topologies, want 2 (stock, topod1)", len(run.Topologies))
	}
	for _, top := range run.Topologies {
		for _, name := range fleet.AllScenarios {
			sc := top.Scenario(name)
			switch {
			case sc == nil:
				t.Errorf("%s: no scenario %s", top.Name, name)
			case sc.Error != "":
				t.Errorf("%s: %s: %s", top.Name, name, sc.Error)
			// Any request counts: a 0.1 s scenario on topod may be Puts
			// alone (topod answers the reads from its own cache).
			case sc.Etcd.RequestsTotal == 0 && name != fleet.ScVSchemad:
				t.Errorf("%s: %s: no etcd request read from the given metrics endpoints: %v", top.Name, name, sc.Etcd.Requests)
			}
		}
		for _, name := range []string{fleet.ScLeader, fleet.ScCompaction} {
			if sc := top.Scenario(name); sc != nil && (sc.Etcd.Requests["MoveLeader"] != 0 || sc.Etcd.Requests["Compact"] != 0) {
				t.Errorf("%s: %s: the user's etcd was changed: %v", top.Name, name, sc.Etcd.Requests)
			}
		}
		if top.Kind == "topod" && top.Scenario(fleet.ScSteady).Topod == nil {
			t.Errorf("%s: no topod figures from the given metrics endpoint", top.Name)
		}
	}
	for _, ck := range run.Checks {
		if !ck.OK {
			t.Errorf("check failed: %s: %s: %s", ck.Topology, ck.Name, ck.Detail)
		}
	}

	// What the benchmark wrote is gone; what was there stays.
	resp, err := etcd.Client().Get(ctx, c.Root+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys left under %s in etcd", resp.Count, c.Root)
	}
	if resp, err := etcd.Client().Get(ctx, "/theirs/key"); err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the user's own key: %v, %v", resp, err)
	}
	conn, err := topoplugin.NewConn(td.Addrs(), c.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	entries, err := conn.ListDir(ctx, "/", false)
	if err != nil && !topo.IsErrType(err, topo.NoNode) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("topod still has %v under %s", entries, c.Root)
	}
}
