//go:build !race

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/bench/fleet"
	jdreport "github.com/topod-io/topod/bench/report"
)

// TestJDScaled runs the JD benchmark's whole pipeline at --scale 0.02 (38
// keyspaces, 88 shards, 227 tablets, 8 vtgates, 3 VTOrcs) with short
// scenarios, on every topology, and checks the report: every scenario of
// every topology has figures, report.json parses, report.md and every
// chart (SVG and PNG) are written, and the run's own checks pass (no
// missed change; the clients' requests and the servers' add up). Nothing
// here is timed.
//
// It is built without the race detector: Vitess 24's own
// topo.Server.UpdateSrvKeyspaceThrottlerConfig, which the throttler
// scenario calls as vtctld does, appends to one slice from a goroutine per
// cell, and the detector fails the run on it; under -race the run also
// takes ten times as long. `make test` runs it in a step of its own.
func TestJDScaled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd clusters and topod processes")
	}
	stderr = &logWriter{t: t, start: time.Now()}
	t.Cleanup(func() { stderr = os.Stderr })
	// topod is built without the race detector too (TestSmoke covers it
	// with it).
	topodBuildFlags = nil
	out := t.TempDir()
	c, err := parseJDFlags([]string{"--profile", "jd", "--scale", "0.02", "--out", out,
		"--steady", "2s", "--leader-window", "2s", "--compact-window", "2s", "--settle", "0s", "--reparent-shards", "20", "--etcd-unsafe-no-fsync",
		"--tablet-refresh-interval", "2s", "--topo-information-refresh-duration", "2s", "--sample-interval", "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := runJDConfig(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	t.Logf("run took %v", time.Since(start))

	run, err := jdreport.ReadJSON(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Topologies) != len(fleet.AllTopologies) {
		t.Fatalf("report has %d topologies, want %d", len(run.Topologies), len(fleet.AllTopologies))
	}
	for _, top := range run.Topologies {
		if len(top.Series) < 2 {
			t.Errorf("%s: %d samples, want a series", top.Name, len(top.Series))
		}
		for _, name := range fleet.AllScenarios {
			sc := top.Scenario(name)
			if sc == nil {
				t.Errorf("%s: no scenario %s", top.Name, name)
				continue
			}
			if sc.Error != "" {
				t.Errorf("%s: %s: %s", top.Name, name, sc.Error)
			}
			if sc.Seconds <= 0 || sc.Etcd.CPUSeconds < 0 {
				t.Errorf("%s: %s: no figures: %+v", top.Name, name, sc.Etcd)
			}
			if (top.TopodReplicas > 0) != (sc.Topod != nil) {
				t.Errorf("%s: %s: topod figures %v for a topology with %d topod replicas", top.Name, name, sc.Topod != nil, top.TopodReplicas)
			}
		}
		// Every write reaches etcd, on either side: the layout's writes
		// are etcd Txn/Put requests.
		if l := top.Scenario(fleet.ScLayout); l != nil && l.Etcd.Requests["Txn"]+l.Etcd.Requests["Put"] == 0 {
			t.Errorf("%s: layout: no etcd writes counted: %v", top.Name, l.Etcd.Requests)
		}
		if s := top.Scenario(fleet.ScSteady); s != nil && (s.Client.Change == nil || s.Client.Change.Seen == 0) {
			t.Errorf("%s: steady: the change reached no vtgate: %+v", top.Name, s.Client.Change)
		}
	}
	for _, c := range run.Checks {
		if !c.OK {
			t.Errorf("check failed: %s: %s: %s", c.Topology, c.Name, c.Detail)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Headline", "## Checks", "## Charts", "stock etcd2", "topod x1", "topod x3", "topod per cell", "go/vt/discovery/topology_watcher.go"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, chart := range []string{"etcd_requests", "etcd_bytes", "etcd_watchers", "cpu", "rss", "delivery_steady", "vtgate_start"} {
		for _, ext := range []string{".svg", ".png"} {
			if fi, err := os.Stat(filepath.Join(out, chart+ext)); err != nil || fi.Size() == 0 {
				t.Errorf("chart %s%s: %v", chart, ext, err)
			}
		}
	}
}
