package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/bench/report"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/topoplugin"
)

// Topology names, for Config.Topologies.
const (
	TopoStock     = "stock"       // etcd2, a global and 8 cell prefixes on one etcd cluster
	TopoTopod1    = "topod1"      // topod x1 on that etcd, global and per cell
	TopoTopod3    = "topod3"      // topod x3
	TopoTopodCell = "topod-cells" // topod per cell, each cell on an etcd cluster of its own
	// TopoStockOnTopod: stock etcd2 clients (the official Vitess images)
	// on topod x1's etcd endpoint, on the same etcd; the stock layout (its
	// writers are stock clients, which send at most 2 MiB).
	TopoStockOnTopod = "stock-on-topod"
)

// AllTopologies are the topologies in the order they run.
var AllTopologies = []string{TopoStock, TopoTopod1, TopoTopod3, TopoTopodCell, TopoStockOnTopod}

// Scenario names, in the order they run.
const (
	ScLayout        = "layout"
	ScStart         = "fleet-start"
	ScSteady        = "steady"
	ScVtgateRestart = "vtgate-restart"
	ScTabletRestart = "tablet-restart"
	ScVSchemaVtctld = "vschema-vtctld"
	ScVSchemad      = "vschema-vschemad"
	ScReparent      = "reparent-storm"
	ScLeader        = "etcd-leader-change"
	ScCompaction    = "etcd-compaction"
	ScLeaderKill    = "etcd-leader-kill"
)

// AllScenarios are the scenarios in the order they run.
var AllScenarios = []string{ScLayout, ScStart, ScSteady, ScVtgateRestart, ScTabletRestart, ScVSchemaVtctld, ScVSchemad, ScReparent, ScLeader, ScCompaction, ScLeaderKill}

// scenariosBefore are the scenarios of a topology whose report does not
// list them (report.Topology.Planned): those written before
// etcd-leader-kill.
var scenariosBefore = AllScenarios[:len(AllScenarios)-1]

// Config is a run.
type Config struct {
	Profile    Profile
	Topologies []string

	Steady        time.Duration // the steady-state scenario
	LeaderWindow  time.Duration // the leader-change scenario
	CompactWindow time.Duration // the compaction scenario
	CompactEvery  time.Duration
	Settle        time.Duration // after each change, before the scenario ends

	TabletRefresh      time.Duration // vtgate --tablet-refresh-interval
	VTOrcRefresh       time.Duration // vtorc --topo-information-refresh-duration
	TabletsPerConn     int           // tablets sharing one topo.Server
	TabletVSchemaWatch bool          // tablets watch the SrvVSchema too (vstreamer)
	VtgateBatch        int           // vtgates restarted at once (rolling restart)
	TabletBatch        int           // tablet groups restarted at once
	StartConcurrency   int           // clients starting at once
	ReparentShards     int
	RestartCell        string

	EtcdMembers int // of the (global) etcd cluster
	// EtcdUnsafeNoFsync runs the members without fsync (etcd's
	// --unsafe-no-fsync): for tests of the pipeline, never for figures.
	EtcdUnsafeNoFsync bool
	CellEtcdMembers   int    // of each cell's etcd cluster (topod-cells)
	EtcdBin           string // the etcd binary; default harness.EtcdBinary
	TopodBin          string
	TopodFlags        []string
	EtcdEndpoints     []string // external etcd instead of the embedded one
	EtcdMetricsURLs   []string
	TopodAddrs        []string // external topod instead of topod processes
	TopodMetricsURLs  []string
	Root              string // key prefix of the benchmark's topologies

	PluginCacheBytes int64
	SampleInterval   time.Duration
	StartTimeout     time.Duration // a client's start
	ChangeTimeout    time.Duration // a change reaching every watcher
	Dir              string
	Log              io.Writer
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "%s topobench: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// external reports whether the user gave their own servers.
func (c *Config) external() bool { return len(c.EtcdEndpoints) > 0 }

// Run runs every topology of cfg, one after the other, each on fresh
// servers, and returns the report (as far as it got, with an error).
func Run(ctx context.Context, cfg Config) (*report.Run, error) {
	p := cfg.Profile
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if cfg.EtcdBin == "" && !cfg.external() {
		bin, err := harness.EtcdBinary(ctx)
		if err != nil {
			return nil, err
		}
		cfg.EtcdBin = bin
	}
	run := &report.Run{
		Started: time.Now().UTC(),
		Machine: report.Machine{CPUs: runtime.NumCPU(), GoMaxProcs: runtime.GOMAXPROCS(0), LoadBefore: harness.LoadAvg(), FileLimit: fileLimit()},
		Profile: report.Profile{Name: p.Name, Keyspaces: p.Topo.Keyspaces, Shards: p.Topo.Shards, Tablets: p.Topo.Tablets, Tables: p.Topo.Tables,
			Cells: p.Topo.Cells, VtgatesPerCell: p.VtgatesPerCell, Vtgates: p.Vtgates(), VTOrcs: p.VTOrcs},
		Sources: Sources(),
	}
	run.Settings = cfg.settings()
	cfg.logf("laying out profile %s: %d keyspaces, %d shards, %d tablets, %d tables, %d cells, %d vtgates, %d vtorcs",
		p.Name, p.Topo.Keyspaces, p.Topo.Shards, p.Topo.Tablets, p.Topo.Tables, p.Topo.Cells, p.Vtgates(), p.VTOrcs)
	full := NewLayout(p, 0)
	run.Profile.SrvVSchemaFull = full.FullSize
	var stock *Layout
	var errs []error
	for _, name := range cfg.Topologies {
		l := full
		if name == TopoStock || name == TopoStockOnTopod {
			if stock == nil {
				stock = NewLayout(p, EtcdRequestLimit-stockSpare)
				if stock.Note != "" {
					run.Notes = append(run.Notes, stock.Note)
				}
			}
			l = stock
		}
		t, err := runTopology(ctx, &cfg, name, l)
		if t != nil {
			run.Topologies = append(run.Topologies, *t)
		}
		if err != nil {
			cfg.logf("%s: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	run.Finished = time.Now().UTC()
	run.Seconds = run.Finished.Sub(run.Started).Seconds()
	run.Machine.LoadAfter = harness.LoadAvg()
	if s, err := harness.ReadProcStats(osGetpid()); err == nil {
		run.Machine.DriverPeak = s.PeakRSS
	}
	run.Checks = Checks(run)
	run.Notes = append(run.Notes, cfg.notes()...)
	return run, errors.Join(errs...)
}

// topoRun is one topology's run.
type topoRun struct {
	cfg    *Config
	name   string
	layout *Layout
	srv    *Servers
	topo   *Topology
	st     *fleetState
	smp    *sampler
	rep    *report.Topology

	mu      sync.Mutex
	vtgates []*vtgate
	groups  []*tabletGroup
	vtorcs  []*vtorc
	gen     int64 // the throttler generation of the probe changes
	vsEdits int
}

func runTopology(ctx context.Context, cfg *Config, name string, l *Layout) (*report.Topology, error) {
	r := &topoRun{cfg: cfg, name: name, layout: l, srv: &Servers{}}
	cfg.logf("%s: starting servers", name)
	stop, err := r.startServers(ctx)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return nil, err
	}
	r.rep = &report.Topology{Name: r.label(), Kind: string(r.topo.Kind), SrvVSchemaBytes: l.SrvVSSize, Note: l.Note, Planned: AllScenarios}
	for _, e := range r.srv.Etcd {
		r.rep.EtcdClusters++
		r.rep.EtcdMembers += max(len(e.MetricsURLs()), 1)
	}
	for _, t := range r.srv.Topod {
		r.rep.TopodReplicas += t.Replicas()
	}
	r.st = &fleetState{topo: r.topo, layout: l, cfg: cfg}
	r.smp = &sampler{srv: r.srv, start: time.Now()}
	sctx, scancel := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Add(1)
	r.smp.take(ctx)
	go func() {
		defer swg.Done()
		r.smp.run(sctx, cfg.SampleInterval)
	}()
	defer func() {
		scancel()
		swg.Wait()
		r.rep.Series = r.smp.series()
	}()
	defer r.stopFleet()
	err = r.scenarios(ctx)
	_, opened := r.topo.Conns()
	r.rep.Conns = opened
	return r.rep, err
}

func (r *topoRun) label() string {
	switch r.name {
	case TopoStock:
		return "stock etcd2"
	case TopoTopod1:
		return "topod x1"
	case TopoTopod3:
		return "topod x3"
	case TopoTopodCell:
		return "topod per cell"
	case TopoStockOnTopod:
		return "stock etcd2 on topod x1"
	}
	return r.name
}

// startServers starts the topology's etcd clusters and topod replicas (or
// takes the user's) and returns what stops them.
func (r *topoRun) startServers(ctx context.Context) (func(), error) {
	cfg := r.cfg
	p := cfg.Profile
	dir := filepath.Join(cfg.Dir, r.name)
	var stops []func()
	var stopsMu sync.Mutex
	stop := func() {
		// Topod replicas first (their clients are gone), then etcd.
		var wg sync.WaitGroup
		for _, f := range slices.Backward(stops) {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		wg.Wait()
	}
	addStop := func(f func()) {
		stopsMu.Lock()
		defer stopsMu.Unlock()
		stops = append(stops, f)
	}
	root := strings.TrimSuffix(cfg.Root, "/")
	if cfg.external() {
		root = fmt.Sprintf("%s/%s-%d", root, r.name, time.Now().Unix())
	}
	etcd := func(name string, members int) (*harness.EtcdProcs, error) {
		if cfg.external() {
			e, err := harness.ExternalEtcd(name, cfg.EtcdEndpoints, cfg.EtcdMetricsURLs)
			if err != nil {
				return nil, err
			}
			addStop(func() {
				// The benchmark's keys only: under its own root.
				dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = e.DeletePrefix(dctx, root+"/")
				e.Close()
			})
			return e, nil
		}
		e, err := harness.StartEtcdProcs(ctx, harness.EtcdProcsConfig{Name: name, Binary: cfg.EtcdBin, Dir: dir, Members: members, NoFsync: cfg.EtcdUnsafeNoFsync})
		if err != nil {
			return nil, err
		}
		addStop(e.Close)
		return e, nil
	}
	topod := func(e *harness.EtcdProcs, replicas int, sub string) (*harness.TopodProcs, error) {
		if len(cfg.TopodAddrs) > 0 {
			t := harness.ExternalTopod(cfg.TopodAddrs, cfg.TopodMetricsURLs)
			addStop(func() {
				// The benchmark's files only: under its own root, through
				// topod (its records are not under root in etcd).
				dctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				if err := deleteTree(dctx, t.Addrs(), root); err != nil {
					cfg.logf("%s: removing %s from your topod: %v", r.name, root, err)
				}
			})
			return t, nil
		}
		t, err := harness.StartTopodProcs(ctx, cfg.TopodBin, e.Endpoints(), filepath.Join(dir, sub), replicas, cfg.TopodFlags)
		if err != nil {
			return nil, err
		}
		addStop(t.Stop)
		return t, nil
	}
	r.topo = &Topology{PluginCacheBytes: cfg.PluginCacheBytes, GlobalRoot: root + "/global"}
	cellRoot := func(c string) string { return root + "/" + c }
	global, err := etcd("etcd", cfg.EtcdMembers)
	if err != nil {
		return stop, err
	}
	r.srv.Etcd = append(r.srv.Etcd, global)
	switch r.name {
	case TopoStock:
		r.topo.Kind = Stock
		r.topo.GlobalAddr = strings.Join(global.Endpoints(), ",")
		for _, c := range p.Topo.CellNames() {
			r.topo.Cells = append(r.topo.Cells, Cell{Name: c, Addr: r.topo.GlobalAddr, Root: cellRoot(c)})
		}
	case TopoStockOnTopod:
		t, err := topod(global, 1, "topod")
		if err != nil {
			return stop, err
		}
		r.srv.Topod = append(r.srv.Topod, t)
		r.topo.Kind = Stock
		r.topo.GlobalAddr = t.Addrs()
		for _, c := range p.Topo.CellNames() {
			r.topo.Cells = append(r.topo.Cells, Cell{Name: c, Addr: t.Addrs(), Root: cellRoot(c)})
		}
	case TopoTopod1, TopoTopod3:
		replicas := 1
		if r.name == TopoTopod3 {
			replicas = 3
		}
		t, err := topod(global, replicas, "topod")
		if err != nil {
			return stop, err
		}
		r.srv.Topod = append(r.srv.Topod, t)
		r.topo.Kind = Topod
		r.topo.GlobalAddr = t.Addrs()
		for _, c := range p.Topo.CellNames() {
			r.topo.Cells = append(r.topo.Cells, Cell{Name: c, Addr: t.Addrs(), Root: cellRoot(c)})
		}
	case TopoTopodCell:
		if cfg.external() {
			return stop, errors.New("topod per cell needs an etcd cluster per cell: not with --etcd-endpoints")
		}
		t, err := topod(global, 1, "topod-global")
		if err != nil {
			return stop, err
		}
		r.srv.Topod = append(r.srv.Topod, t)
		r.topo.Kind = Topod
		r.topo.GlobalAddr = t.Addrs()
		// Each cell's etcd cluster and topod, started side by side.
		cells := p.Topo.CellNames()
		es := make([]*harness.EtcdProcs, len(cells))
		cts := make([]*harness.TopodProcs, len(cells))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for i, c := range cells {
			g.Go(func() error {
				_ = gctx
				e, err := etcd("etcd-"+c, cfg.CellEtcdMembers)
				if err != nil {
					return err
				}
				es[i] = e
				cts[i], err = topod(e, 1, "topod-"+c)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return stop, err
		}
		for i, c := range cells {
			r.srv.Etcd = append(r.srv.Etcd, es[i])
			r.srv.Topod = append(r.srv.Topod, cts[i])
			r.topo.Cells = append(r.topo.Cells, Cell{Name: c, Addr: cts[i].Addrs(), Root: cellRoot(c)})
		}
	default:
		return stop, fmt.Errorf("unknown topology %q (want %s)", r.name, strings.Join(AllTopologies, ", "))
	}
	return stop, nil
}

// stopFleet stops every client.
func (r *topoRun) stopFleet() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range r.vtgates {
		wg.Add(1)
		go func() { defer wg.Done(); g.stop() }()
	}
	for _, tg := range r.groups {
		wg.Add(1)
		go func() { defer wg.Done(); tg.stop() }()
	}
	for _, o := range r.vtorcs {
		wg.Add(1)
		go func() { defer wg.Done(); o.stop() }()
	}
	wg.Wait()
	r.vtgates, r.groups, r.vtorcs = nil, nil, nil
}

// startFleet starts the VTOrcs, the tablets and the vtgates.
func (r *topoRun) startFleet(ctx context.Context, sc *report.Scenario) error {
	cfg := r.cfg
	p := cfg.Profile
	for range p.VTOrcs {
		o, err := r.st.startVTOrc(ctx)
		if err != nil {
			return fmt.Errorf("vtorc: %w", err)
		}
		r.vtorcs = append(r.vtorcs, o)
	}
	cfg.logf("%s: %d vtorcs started; starting %d tablets", r.name, p.VTOrcs, p.Topo.Tablets)
	groups, err := r.startTabletGroups(ctx, p.Topo.CellNames())
	r.groups = append(r.groups, groups...)
	if err != nil {
		return err
	}
	cfg.logf("%s: tablets started (%d topo.Servers); starting %d vtgates", r.name, len(groups), p.Vtgates())
	gs, err := r.startVtgates(ctx, r.vtgateSpecs())
	r.vtgates = gs
	sc.Client.VtgateStart = vtgateDist(gs)
	return err
}

type vtgateSpec struct {
	id   int
	cell string
}

func (r *topoRun) vtgateSpecs() []vtgateSpec {
	var out []vtgateSpec
	p := r.cfg.Profile
	for c, cell := range p.Topo.CellNames() {
		for j := range p.VtgatesPerCell {
			out = append(out, vtgateSpec{id: c*p.VtgatesPerCell + j, cell: cell})
		}
	}
	return out
}

func (r *topoRun) startVtgates(ctx context.Context, specs []vtgateSpec) ([]*vtgate, error) {
	out := make([]*vtgate, len(specs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.StartConcurrency)
	for i, s := range specs {
		g.Go(func() error {
			v, err := r.st.startVtgate(gctx, s.id, s.cell)
			out[i] = v
			return err
		})
	}
	err := g.Wait()
	return slices.DeleteFunc(out, func(v *vtgate) bool { return v == nil }), err
}

func (r *topoRun) startTabletGroups(ctx context.Context, cells []string) ([]*tabletGroup, error) {
	type spec struct {
		cell    string
		tablets []int
	}
	var specs []spec
	id := 0
	for _, cell := range cells {
		ts := r.layout.Tablets[cell]
		for i := 0; i < len(ts); i += r.cfg.TabletsPerConn {
			s := spec{cell: cell}
			for j := i; j < min(i+r.cfg.TabletsPerConn, len(ts)); j++ {
				s.tablets = append(s.tablets, j)
			}
			specs = append(specs, s)
		}
		id++
	}
	out := make([]*tabletGroup, len(specs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, r.cfg.StartConcurrency/4))
	for i, s := range specs {
		g.Go(func() error {
			tablets := r.layout.Tablets[s.cell]
			var ts []*topodataTablet
			var ids []int
			for _, j := range s.tablets {
				ts = append(ts, tablets[j])
				ids = append(ids, int(tablets[j].Alias.Uid))
			}
			tg, err := r.st.startTablets(gctx, s.cell, ts, ids)
			out[i] = tg
			return err
		})
	}
	err := g.Wait()
	return slices.DeleteFunc(out, func(v *tabletGroup) bool { return v == nil }), err
}

// deleteTree deletes every file under root of the topod at addr, depth
// first: the benchmark's own files on a topod it did not start.
func deleteTree(ctx context.Context, addr, root string) error {
	conn, err := topoplugin.NewConn(addr, root)
	if err != nil {
		return fmt.Errorf("topoplugin.NewConn(%s, %s): %w", addr, root, err)
	}
	defer conn.Close()
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := conn.ListDir(ctx, dir, true)
		if topo.IsErrType(err, topo.NoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ListDir %s%s: %w", root, dir, err)
		}
		for _, e := range entries {
			p := path.Join(dir, e.Name)
			if e.Type == topo.TypeDirectory {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			if err := conn.Delete(ctx, p, nil); err != nil && !topo.IsErrType(err, topo.NoNode) {
				return fmt.Errorf("Delete %s%s: %w", root, p, err)
			}
		}
		return nil
	}
	return walk("/")
}

// fileLimit is this process's RLIMIT_NOFILE soft limit, for the report (Go
// raises it to the hard limit at start).
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}
