package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"vitess.io/vitess/go/stats"
	"vitess.io/vitess/go/vt/discovery"
	"vitess.io/vitess/go/vt/srvtopo"
	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
)

// srvCounts is the counters srvtopo's watchers keep (unpublished: no name).
var srvCounts = stats.NewCountersWithSingleLabel("", "srvtopo counts of the benchmark's clients", "Type")

// Probe kinds: what a change is and who is expected to see it.
const (
	probeSrvKeyspace = "srvkeyspace" // a keyspace's throttler generation in its SrvKeyspace, every cell
	probeVSchema     = "vschema"     // a table named marker in every cell's SrvVSchema
	probeShard       = "shard"       // a shard's new primary, seen by its old primary's WatchShard
)

// probe is one change the clients watch for: who saw it and when.
type probe struct {
	kind   string
	ks     string
	gen    int64
	marker []byte
	shards map[string]int64 // probeShard: keyspace/shard -> the new primary's uid
	start  time.Time

	mu      sync.Mutex
	vtgates map[int]time.Duration
	tablets map[int]time.Duration
}

func newProbe(kind, ks string, gen int64, marker string) *probe {
	return &probe{kind: kind, ks: ks, gen: gen, marker: []byte(marker), start: time.Now(), vtgates: map[int]time.Duration{}, tablets: map[int]time.Duration{}}
}

func (p *probe) see(vtgate bool, id int) {
	d := time.Since(p.start)
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.tablets
	if vtgate {
		m = p.vtgates
	}
	if _, ok := m[id]; !ok {
		m[id] = d
	}
}

func (p *probe) counts() (vtgates, tablets int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.vtgates), len(p.tablets)
}

func (p *probe) latencies(vtgate bool) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.tablets
	if vtgate {
		m = p.vtgates
	}
	out := make([]time.Duration, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	return out
}

// fleetState is what every client of one topology shares.
type fleetState struct {
	topo    *Topology
	layout  *Layout
	cfg     *Config
	probe   atomic.Pointer[probe]
	watchEv atomic.Int64 // watch errors seen by the clients' callbacks and channels
	failed  counts       // failed steps of the clients' start sequences and refreshes, by client and step
}

func (f *fleetState) watchErr(err error) {
	if err != nil && !topo.IsErrType(err, topo.Interrupted) && !errors.Is(err, context.Canceled) {
		f.watchEv.Add(1)
	}
}

// readErr counts err, if it is a failure, as a failed step (a client and
// what it did: "vtorc refresh: GetKeyspace") and returns it.
func (f *fleetState) readErr(step string, err error) error {
	if err != nil && !errors.Is(err, context.Canceled) && !topo.IsErrType(err, topo.NodeExists) {
		f.failed.add(step + ": " + errClass(err))
	}
	return err
}

// hcCounter is the health check the vtgates' TopologyWatcher reports to:
// it only counts the tablets discovered (vtgate's real one would dial
// each tablet's health stream, which has no tablet to dial here). The
// TopologyWatcher calls no other method.
type hcCounter struct {
	discovery.HealthCheck // nil: any other method panics
	tablets               atomic.Int64
	replaced              atomic.Int64
}

func (h *hcCounter) AddTablet(*topodatapb.Tablet)                   { h.tablets.Add(1) }
func (h *hcCounter) RemoveTablet(*topodatapb.Tablet)                { h.tablets.Add(-1) }
func (h *hcCounter) ReplaceTablet(_, _ *topodatapb.Tablet)          { h.replaced.Add(1) }
func (h *hcCounter) GetLoadTabletsTrigger() chan topo.KeyspaceShard { return nil }

// vtgate is one vtgate's topology clients: a topo.Server of its own, a
// srvtopo.ResilientServer on it watching every keyspace's SrvKeyspace of
// its cell (discovery/keyspace_events.go), a watch of the cell's
// SrvVSchema (vtgate/executor.go) and tablet discovery
// (discovery.TopologyWatcher, GetTabletsByCell every
// --tablet-refresh-interval).
type vtgate struct {
	id     int
	cell   string
	cancel context.CancelFunc
	ts     *topo.Server
	tw     *discovery.TopologyWatcher
	done   chan struct{}
	ready  time.Duration // start to serving every keyspace, with its cell's tablets discovered
}

// startVtgate starts vtgate id of cell and returns once it serves: every
// keyspace's SrvKeyspace and the SrvVSchema received, every tablet of its
// cell discovered.
func (f *fleetState) startVtgate(ctx context.Context, id int, cell string) (*vtgate, error) {
	t0 := time.Now()
	vctx, cancel := context.WithCancel(context.Background())
	g := &vtgate{id: id, cell: cell, cancel: cancel, done: make(chan struct{})}
	fail := func(err error) (*vtgate, error) {
		g.stop()
		return nil, fmt.Errorf("vtgate %d (%s): %w", id, cell, err)
	}
	var err error
	if g.ts, err = f.topo.Dial(); err != nil {
		return fail(err)
	}
	rs := srvtopo.NewResilientServer(vctx, g.ts, srvCounts)
	// vtgate.go: the keyspaces of the cell (GetSrvKeyspaceNames), then the
	// SrvVSchema (GetSrvVSchema; here its bytes: see the package notes).
	names, err := rs.GetSrvKeyspaceNames(ctx, cell, false)
	if err != nil {
		f.readErr("vtgate start: GetSrvKeyspaceNames", err)
		return fail(fmt.Errorf("GetSrvKeyspaceNames: %w", err))
	}
	conn, err := g.ts.ConnForCell(ctx, cell)
	if err != nil {
		return fail(err)
	}
	if _, _, err := conn.Get(ctx, "SrvVSchema"); f.readErr("vtgate start: get SrvVSchema", err) != nil {
		return fail(fmt.Errorf("get SrvVSchema: %w", err))
	}
	// keyspace_events.go: one WatchSrvKeyspace per keyspace.
	var first sync.WaitGroup
	first.Add(len(names))
	for _, ks := range names {
		var once atomic.Bool
		rs.WatchSrvKeyspace(vctx, cell, ks, func(srv *topodatapb.SrvKeyspace, err error) bool {
			if err != nil {
				f.watchErr(err)
				return vctx.Err() == nil
			}
			if once.CompareAndSwap(false, true) {
				first.Done()
			}
			if p := f.probe.Load(); p != nil && p.kind == probeSrvKeyspace && p.ks == ks && srv.GetThrottlerConfig().GetThreshold() >= float64(p.gen) {
				p.see(true, id)
			}
			return vctx.Err() == nil
		})
	}
	// executor.go: the SrvVSchema watch.
	cur, changes, err := conn.Watch(vctx, "SrvVSchema")
	if err != nil {
		f.readErr("vtgate start: watch SrvVSchema", err)
		return fail(fmt.Errorf("watch SrvVSchema: %w", err))
	}
	f.seeVSchema(true, id, cur.Contents)
	go func() {
		defer close(g.done)
		for wd := range changes {
			if wd.Err != nil {
				f.watchErr(wd.Err)
				continue
			}
			f.seeVSchema(true, id, wd.Contents)
		}
	}()
	// discovery: the cell's tablets, every --tablet-refresh-interval.
	hc := &hcCounter{}
	g.tw = discovery.NewTopologyWatcher(vctx, g.ts, hc, nil, cell, f.cfg.TabletRefresh, true)
	g.tw.Start()
	want := int64(len(f.layout.Tablets[cell]))
	waitCh := make(chan struct{})
	go func() {
		first.Wait()
		close(waitCh)
	}()
	deadline := time.After(f.cfg.StartTimeout)
	for hc.tablets.Load() < want {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-deadline:
			return fail(fmt.Errorf("discovered %d of %d tablets after %v", hc.tablets.Load(), want, f.cfg.StartTimeout))
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-waitCh:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-deadline:
		return fail(fmt.Errorf("not every SrvKeyspace of %d received after %v", len(names), f.cfg.StartTimeout))
	}
	g.ready = time.Since(t0)
	return g, nil
}

func (f *fleetState) seeVSchema(vtgate bool, id int, contents []byte) {
	if p := f.probe.Load(); p != nil && p.kind == probeVSchema && bytes.Contains(contents, p.marker) {
		p.see(vtgate, id)
	}
}

func (g *vtgate) stop() {
	if g.tw != nil {
		g.tw.Stop()
	}
	g.cancel()
	if g.ts != nil {
		g.ts.Close()
	}
}

// tabletGroup is tablets of one cell sharing one topo.Server (see
// Config.TabletsPerConn); each tablet still runs its own start sequence
// and opens its own watches.
type tabletGroup struct {
	cell    string
	tablets []*topodatapb.Tablet
	ids     []int
	cancel  context.CancelFunc
	ts      *topo.Server
}

// startTablets starts a group of tablets: a topo.Server for them, then
// each tablet's start sequence, re-created from
// vttablet/tabletmanager/tm_init.go, and its watches: the throttler's
// WatchSrvKeyspace through a srvtopo.ResilientServer of its own
// (tabletserver/throttle/throttler.go), a primary's WatchShard
// (tabletmanager/shard_watcher.go) and, with Config.TabletVSchemaWatch, the
// vstreamer's SrvVSchema watch (tabletserver/vstreamer/engine.go).
func (f *fleetState) startTablets(ctx context.Context, cell string, tablets []*topodatapb.Tablet, ids []int) (*tabletGroup, error) {
	tctx, cancel := context.WithCancel(context.Background())
	tg := &tabletGroup{cell: cell, tablets: tablets, ids: ids, cancel: cancel}
	var err error
	if tg.ts, err = f.topo.Dial(); err != nil {
		cancel()
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, t := range tablets {
		g.Go(func() error { return f.startTablet(gctx, tctx, tg.ts, t, ids[i]) })
	}
	if err := g.Wait(); err != nil {
		tg.stop()
		return nil, err
	}
	return tg, nil
}

func (f *fleetState) startTablet(ctx, tctx context.Context, ts *topo.Server, t *topodatapb.Tablet, id int) error {
	fail := func(what string, err error) error {
		f.readErr("tablet start: "+what, err)
		return fmt.Errorf("tablet %d (%s/%s): %s: %w", t.Alias.Uid, t.Keyspace, t.Shard, what, err)
	}
	cell := t.Alias.Cell
	// tm_init.go: the shard and keyspace (createKeyspaceShard), the
	// SrvKeyspace, the SrvVSchema (its bytes), the tablet record
	// (CreateTablet, then GetTablet and UpdateTablet when it exists), then
	// checkPrimaryShip: the shard, its primary's record, the durability
	// policy (the keyspace record).
	if _, err := ts.GetShard(ctx, t.Keyspace, t.Shard); err != nil {
		return fail("GetShard", err)
	}
	if _, err := ts.GetKeyspace(ctx, t.Keyspace); err != nil {
		return fail("GetKeyspace", err)
	}
	if _, err := ts.GetSrvKeyspace(ctx, cell, t.Keyspace); err != nil {
		return fail("GetSrvKeyspace", err)
	}
	conn, err := ts.ConnForCell(ctx, cell)
	if err != nil {
		return fail("ConnForCell", err)
	}
	if _, _, err := conn.Get(ctx, "SrvVSchema"); err != nil {
		return fail("get SrvVSchema", err)
	}
	if err := ts.CreateTablet(ctx, t); err != nil {
		if !topo.IsErrType(err, topo.NodeExists) {
			return fail("CreateTablet", err)
		}
		ti, err := ts.GetTablet(ctx, t.Alias)
		if err != nil {
			return fail("GetTablet", err)
		}
		if err := ts.UpdateTablet(ctx, ti); err != nil {
			return fail("UpdateTablet", err)
		}
	}
	si, err := ts.GetShard(ctx, t.Keyspace, t.Shard)
	if err != nil {
		return fail("GetShard", err)
	}
	if si.PrimaryAlias != nil {
		if _, err := ts.GetTablet(ctx, si.PrimaryAlias); err != nil && !topo.IsErrType(err, topo.NoNode) {
			return fail("GetTablet(primary)", err)
		}
	}
	if _, err := ts.GetKeyspaceDurability(ctx, t.Keyspace); err != nil {
		return fail("GetKeyspaceDurability", err)
	}
	// The throttler's watch, through the tablet's own srvtopo server.
	rs := srvtopo.NewResilientServer(tctx, ts, srvCounts)
	ks := t.Keyspace
	rs.WatchSrvKeyspace(tctx, cell, ks, func(srv *topodatapb.SrvKeyspace, err error) bool {
		if err != nil {
			f.watchErr(err)
			return tctx.Err() == nil
		}
		if p := f.probe.Load(); p != nil && p.kind == probeSrvKeyspace && p.ks == ks && srv.GetThrottlerConfig().GetThreshold() >= float64(p.gen) {
			p.see(false, id)
		}
		return tctx.Err() == nil
	})
	if t.Type == topodatapb.TabletType_PRIMARY {
		_, changes, err := ts.WatchShard(tctx, t.Keyspace, t.Shard)
		if err != nil {
			return fail("WatchShard", err)
		}
		key := t.Keyspace + "/" + t.Shard
		go func() {
			for wd := range changes {
				if wd.Err != nil {
					f.watchErr(wd.Err)
					continue
				}
				if p := f.probe.Load(); p != nil && p.kind == probeShard && wd.Value != nil && wd.Value.PrimaryAlias != nil &&
					p.shards[key] == int64(wd.Value.PrimaryAlias.Uid) {
					p.see(false, id)
				}
			}
		}()
	}
	if f.cfg.TabletVSchemaWatch {
		_, changes, err := conn.Watch(tctx, "SrvVSchema")
		if err != nil {
			return fail("watch SrvVSchema", err)
		}
		go func() {
			for wd := range changes {
				if wd.Err != nil {
					f.watchErr(wd.Err)
					continue
				}
				f.seeVSchema(false, id, wd.Contents)
			}
		}()
	}
	return nil
}

func (tg *tabletGroup) stop() {
	tg.cancel()
	if tg.ts != nil {
		tg.ts.Close()
	}
}

// vtorc is one VTOrc's topology refresh, re-created from
// vtorc/logic/keyspace_shard_discovery.go (RefreshAllKeyspacesAndShards:
// GetKeyspaces, then per keyspace GetKeyspace and FindAllShardsInKeyspace
// with concurrency 8, all keyspaces at once) and
// vtorc/logic/tablet_discovery.go (refreshAllTablets: the cells, then
// GetTabletsByCell per cell, all at once), every
// --topo-information-refresh-duration. VTOrc's own functions keep their
// results in its sqlite backend through package globals, so they cannot be
// called as a library here.
type vtorc struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *fleetState) startVTOrc(ctx context.Context) (*vtorc, error) {
	ts, err := f.topo.Dial()
	if err != nil {
		return nil, err
	}
	vctx, cancel := context.WithCancel(context.Background())
	o := &vtorc{cancel: cancel, done: make(chan struct{})}
	refresh := func() {
		rctx, rcancel := context.WithTimeout(vctx, topo.RemoteOperationTimeout)
		defer rcancel()
		kss, err := ts.GetKeyspaces(rctx)
		if f.readErr("vtorc refresh: GetKeyspaces", err) != nil {
			return
		}
		eg, ectx := errgroup.WithContext(rctx)
		for _, ks := range kss {
			eg.Go(func() error {
				_, err := ts.GetKeyspace(ectx, ks)
				f.readErr("vtorc refresh: GetKeyspace", err)
				return nil
			})
			eg.Go(func() error {
				_, err := ts.FindAllShardsInKeyspace(ectx, ks, &topo.FindAllShardsInKeyspaceOptions{Concurrency: 8})
				f.readErr("vtorc refresh: FindAllShardsInKeyspace", err)
				return nil
			})
		}
		_ = eg.Wait()
		cells, err := ts.GetCellInfoNames(rctx)
		if f.readErr("vtorc refresh: GetCellInfoNames", err) != nil {
			return
		}
		var wg sync.WaitGroup
		for _, cell := range cells {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := ts.GetTabletsByCell(rctx, cell, nil)
				f.readErr("vtorc refresh: GetTabletsByCell", err)
			}()
		}
		wg.Wait()
	}
	refresh() // vtorc refreshes once before its ticks
	if err := vctx.Err(); err != nil {
		return nil, err
	}
	go func() {
		defer close(o.done)
		defer ts.Close()
		tick := time.NewTicker(f.cfg.VTOrcRefresh)
		defer tick.Stop()
		for {
			select {
			case <-vctx.Done():
				return
			case <-tick.C:
				refresh()
			}
		}
	}()
	return o, nil
}

func (o *vtorc) stop() {
	o.cancel()
	<-o.done
}
