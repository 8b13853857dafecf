package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // --pprof
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	vtlog "vitess.io/vitess/go/vt/log"

	"github.com/topod-io/topod/bench/fleet"
	jdreport "github.com/topod-io/topod/bench/report"
	"github.com/topod-io/topod/internal/harness"
)

// The JD etcd load benchmark (issue 12): --profile selects it.
//
//	topobench --profile jd --out bench/reports/jd         # the whole JD fleet
//	topobench --profile jd --scale 0.02 --out /tmp/jd     # scaled down
//	topobench --profile jd10x ...                         # ten times JD
//	topobench --profile ours.json --etcd-endpoints 10.0.0.1:2379 --topod-addr 10.0.0.2:15999
//
// See package github.com/topod-io/topod/bench/fleet for what it runs.

// isJD reports whether args select the JD benchmark (a --profile flag).
func isJD(args []string) bool {
	for _, a := range args {
		if a == "--profile" || a == "-profile" || strings.HasPrefix(a, "--profile=") || strings.HasPrefix(a, "-profile=") {
			return true
		}
	}
	return false
}

// jdConfig is what the JD benchmark's flags set.
type jdConfig struct {
	fleet.Config
	profile string
	scale   float64
	out     string
	keep    bool
	pprof   string
	merge   []string
}

func parseJDFlags(args []string) (jdConfig, error) {
	c := jdConfig{Config: fleet.Config{
		Steady: 45 * time.Second, LeaderWindow: 20 * time.Second, CompactWindow: 20 * time.Second, CompactEvery: 250 * time.Millisecond,
		Settle: 3 * time.Second, TabletRefresh: time.Minute, VTOrcRefresh: 15 * time.Second,
		TabletsPerConn: 50, VtgateBatch: 0, TabletBatch: 4, StartConcurrency: 32, ReparentShards: 100, RestartCell: "zone1",
		EtcdMembers: 3, CellEtcdMembers: 1, Root: "/vitess", PluginCacheBytes: 64 << 20,
		SampleInterval: time.Second, StartTimeout: 5 * time.Minute, ChangeTimeout: 2 * time.Minute,
	}, scale: 1}
	var topologies, topodFlags, etcdEPs, etcdMetrics, topodAddrs, topodMetrics string
	fs := flag.NewFlagSet("topobench --profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.profile, "profile", "jd", "the fleet: jd (1,911 keyspaces, 4,438 shards, 11,416 tablets, 8 cells, 200 vtgates, 3 VTOrcs), jd10x, or a JSON profile file (keyspaces, shards_per_keyspace, tablets_per_shard, cells, vtgates_per_cell, tables_per_keyspace[, vtorcs, max_shards, seed])")
	fs.Float64Var(&c.scale, "scale", c.scale, "scale the profile's keyspaces (shards, tablets, tables in proportion) and vtgates by this factor, e.g. 0.02")
	fs.StringVar(&c.out, "out", "", "directory for report.md, report.json and the charts (required)")
	fs.StringVar(&topologies, "topologies", strings.Join(fleet.AllTopologies, ","), "topologies to run, in order: stock (etcd2), topod1, topod3 (topod replicas on the same etcd), topod-cells (topod per cell, each cell on an etcd cluster of its own), stock-on-topod (stock etcd2 clients on topod x1's etcd endpoint)")
	fs.DurationVar(&c.Steady, "steady", c.Steady, "steady-state scenario length")
	fs.DurationVar(&c.LeaderWindow, "leader-window", c.LeaderWindow, "length of the etcd leader change and leader kill scenarios")
	fs.DurationVar(&c.CompactWindow, "compact-window", c.CompactWindow, "compaction scenario length")
	fs.DurationVar(&c.CompactEvery, "compact-every", c.CompactEvery, "compaction interval in the compaction scenario")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "wait after each change before a scenario ends")
	fs.DurationVar(&c.TabletRefresh, "tablet-refresh-interval", c.TabletRefresh, "vtgate's tablet discovery interval")
	fs.DurationVar(&c.VTOrcRefresh, "topo-information-refresh-duration", c.VTOrcRefresh, "VTOrc's topology refresh interval")
	fs.IntVar(&c.TabletsPerConn, "tablets-per-conn", c.TabletsPerConn, "tablets of a cell sharing one topo.Server (1: a connection per tablet)")
	fs.BoolVar(&c.TabletVSchemaWatch, "tablet-vschema-watch", c.TabletVSchemaWatch, "tablets also watch the SrvVSchema, as vttablet's vstreamer engine does (a copy per tablet per change)")
	fs.IntVar(&c.VtgateBatch, "vtgate-restart-batch", c.VtgateBatch, "vtgates restarted at once in the rolling restart (0: a quarter of them, a Kubernetes Deployment's default maxUnavailable of 25%)")
	fs.IntVar(&c.TabletBatch, "tablet-restart-batch", c.TabletBatch, "tablet connection groups restarted at once in the cell's rolling restart")
	fs.IntVar(&c.StartConcurrency, "start-concurrency", c.StartConcurrency, "vtgates starting at once in the fleet start (tablets: a quarter as many groups of them)")
	fs.IntVar(&c.ReparentShards, "reparent-shards", c.ReparentShards, "shards of the reparent storm")
	fs.StringVar(&c.RestartCell, "restart-cell", c.RestartCell, "cell whose tablets the tablet restart scenario restarts")
	fs.IntVar(&c.EtcdMembers, "etcd-members", c.EtcdMembers, "members of the (global) etcd cluster")
	fs.IntVar(&c.CellEtcdMembers, "cell-etcd-members", c.CellEtcdMembers, "members of each cell's etcd cluster (topod-cells)")
	fs.StringVar(&c.TopodBin, "topod-bin", "", "topod binary (default: go build this module's ./cmd/topod)")
	fs.StringVar(&topodFlags, "topod-flags", "", "extra flags for every topod process, space-separated")
	fs.StringVar(&etcdEPs, "etcd-endpoints", "", "your etcd (host:port,...) instead of the embedded clusters; the benchmark writes under --root/<topology>-<time> and deletes it afterwards; it does not move your leader or compact")
	fs.StringVar(&etcdMetrics, "etcd-metrics-urls", "", "Prometheus endpoints of your etcd members (default http://<endpoint>/metrics)")
	fs.StringVar(&topodAddrs, "topod-addr", "", "your topod replicas (host:port,...) instead of topod processes, for the topod1/topod3 topologies")
	fs.StringVar(&topodMetrics, "topod-metrics-urls", "", "Prometheus endpoints of your topod replicas (--metrics-listen)")
	fs.StringVar(&c.Root, "root", c.Root, "key prefix of the topologies")
	fs.Int64Var(&c.PluginCacheBytes, "plugin-cache-bytes", c.PluginCacheBytes, "bound of each plugin connection's blob cache")
	fs.DurationVar(&c.SampleInterval, "sample-interval", c.SampleInterval, "how often the servers are read for the charts")
	fs.DurationVar(&c.StartTimeout, "start-timeout", c.StartTimeout, "how long a client may take to start")
	fs.DurationVar(&c.ChangeTimeout, "change-timeout", c.ChangeTimeout, "how long a change may take to reach every watcher")
	fs.BoolVar(&c.keep, "keep", false, "keep the servers' data directories")
	fs.Func("merge", "report.json files of separate runs (same profile and settings, a topology or more each): write their merged report to --out instead of running", func(v string) error {
		c.merge = append(c.merge, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&c.pprof, "pprof", "", "serve the driver's net/http/pprof on this address (e.g. localhost:6060), to see where the clients spend")
	fs.BoolVar(&c.EtcdUnsafeNoFsync, "etcd-unsafe-no-fsync", false, "run the embedded etcd members without fsync: for tests of the pipeline only, the figures are not etcd's")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.out == "" {
		return c, errors.New("--out is required with --profile")
	}
	var p fleet.Profile
	switch c.profile {
	case "jd":
		p = fleet.JD()
	case "jd10x":
		p = fleet.JD10x()
	default:
		var err error
		if p, err = fleet.LoadProfile(c.profile); err != nil {
			return c, err
		}
	}
	p, err := p.Scaled(c.scale)
	if err != nil {
		return c, err
	}
	c.Profile = p
	split := func(s string) []string {
		var out []string
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
			out = append(out, f)
		}
		return out
	}
	c.Topologies = split(topologies)
	for _, t := range c.Topologies {
		found := false
		for _, k := range fleet.AllTopologies {
			found = found || k == t
		}
		if !found {
			return c, fmt.Errorf("--topologies: unknown topology %q (want %s)", t, strings.Join(fleet.AllTopologies, ", "))
		}
	}
	c.TopodFlags = strings.Fields(topodFlags)
	c.EtcdEndpoints, c.EtcdMetricsURLs = split(etcdEPs), split(etcdMetrics)
	c.TopodAddrs, c.TopodMetricsURLs = split(topodAddrs), split(topodMetrics)
	if c.VtgateBatch <= 0 {
		c.VtgateBatch = max(1, p.Vtgates()/4)
	}
	switch {
	case c.TabletsPerConn < 1, c.TabletBatch < 1, c.StartConcurrency < 1, c.ReparentShards < 0, c.EtcdMembers < 1, c.CellEtcdMembers < 1:
		return c, errors.New("--tablets-per-conn, --tablet-restart-batch, --start-concurrency, --etcd-members and --cell-etcd-members must be at least 1")
	case c.SampleInterval <= 0, c.CompactEvery <= 0:
		return c, errors.New("--sample-interval and --compact-every must be positive")
	}
	found := false
	for _, cell := range p.Topo.CellNames() {
		found = found || cell == c.RestartCell
	}
	if !found {
		return c, fmt.Errorf("--restart-cell %q is not a cell of the profile", c.RestartCell)
	}
	return c, nil
}

// runJD runs the JD benchmark and writes its report.
func runJD(ctx context.Context, args []string) error {
	c, err := parseJDFlags(args)
	if err != nil {
		return err
	}
	return runJDConfig(ctx, c)
}

func runJDConfig(ctx context.Context, c jdConfig) error {
	if len(c.merge) > 0 {
		return mergeJD(c)
	}
	dir, err := os.MkdirTemp("", "topobench-jd-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Fprintln(stderr, "topobench: keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	c.Dir, c.Log = dir, stderr
	if os.Getenv("GOMEMLIMIT") == "" {
		// At JD scale the driver holds every client's caches (a plugin
		// connection keeps the 13.5 MiB SrvVSchema's blobs) and the
		// garbage of 11,416 tablets' SrvVSchema reads: a soft limit makes
		// the collector work harder before the machine runs out, rather
		// than letting the heap double.
		if total, err := memTotal(); err == nil {
			debug.SetMemoryLimit(total * 3 / 4)
		}
	}
	if c.pprof != "" {
		ln, err := net.Listen("tcp", c.pprof)
		if err != nil {
			return fmt.Errorf("--pprof: %w", err)
		}
		defer ln.Close()
		fmt.Fprintf(stderr, "topobench: pprof on http://%s/debug/pprof/\n", ln.Addr())
		go func() { _ = http.Serve(ln, nil) }() // the default mux has net/http/pprof's handlers
	}
	// Vitess's own code (srvtopo, discovery, topo locks) logs every lock
	// and retry at info level: warnings and errors only.
	prev := vtlog.SwapLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	defer vtlog.SwapLogger(prev)
	if c.TopodBin == "" && len(c.TopodAddrs) == 0 {
		fmt.Fprintln(stderr, "topobench: building topod")
		if c.TopodBin, err = harness.BuildTopod(ctx, dir, topodBuildFlags...); err != nil {
			return err
		}
	}
	run, err := fleet.Run(ctx, c.Config)
	if run != nil {
		if werr := jdreport.Write(run, c.out); werr != nil {
			return errors.Join(err, werr)
		}
		abs, _ := filepath.Abs(c.out)
		fmt.Fprintf(stderr, "topobench: report in %s (%.0f s)\n", abs, run.Seconds)
	}
	return err
}

// mergeJD writes the report of the runs in c.merge to c.out.
func mergeJD(c jdConfig) error {
	var runs []*jdreport.Run
	for _, p := range c.merge {
		r, err := jdreport.ReadJSON(p)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	run, err := jdreport.Merge(runs...)
	if err != nil {
		return err
	}
	run.Checks = fleet.Checks(run)
	if err := jdreport.Write(run, c.out); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "topobench: merged %d runs into %s\n", len(runs), c.out)
	return nil
}

// memTotal returns the machine's memory (sysinfo(2)).
func memTotal() (int64, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, fmt.Errorf("sysinfo: %w", err)
	}
	return int64(si.Totalram) * int64(si.Unit), nil
}
