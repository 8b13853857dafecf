package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/logutil"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topotools"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/proto/vttime"

	"gonum.org/v1/gonum/stat"

	"github.com/topod-io/topod/bench/report"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemastore"
)

type topodataTablet = topodatapb.Tablet

var osGetpid = os.Getpid

// scenarios runs every scenario, in order; a failed scenario is recorded
// and the next one runs, unless the fleet could not start.
func (r *topoRun) scenarios(ctx context.Context) error {
	var w *topo.Server
	var store *vschemastore.Store
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	var errs []error
	run := func(name string, fn func(ctx context.Context, sc *report.Scenario) error) bool {
		if ctx.Err() != nil {
			return false
		}
		err := r.scenario(ctx, name, fn)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return err == nil
	}
	if !run(ScLayout, func(ctx context.Context, sc *report.Scenario) error {
		var err error
		if w, err = r.topo.Dial(); err != nil {
			return err
		}
		t0 := time.Now()
		err = r.layout.Write(ctx, w, r.topo.Cells)
		sc.Client.Write = time.Since(t0).Seconds()
		return err
	}) {
		return errors.Join(errs...)
	}
	opts := vschemastore.StoreOptions{}
	if r.topo.Kind == Topod {
		conns := topoplugin.NewCellConns(w, nil)
		defer conns.Close()
		opts.RecordConn = func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
			c, err := conns.Get(ctx, cell)
			if err != nil {
				return nil, err
			}
			return c, nil
		}
	}
	store, err := vschemastore.NewStore(w, opts)
	if err != nil {
		return err
	}
	if !run(ScStart, func(ctx context.Context, sc *report.Scenario) error { return r.startFleet(ctx, sc) }) {
		return errors.Join(errs...)
	}
	run(ScSteady, func(ctx context.Context, sc *report.Scenario) error {
		return r.window(ctx, r.cfg.Steady, func() error { return r.throttlerChange(ctx, w, sc) })
	})
	run(ScVtgateRestart, r.vtgateRestart)
	run(ScTabletRestart, r.tabletRestart)
	run(ScVSchemaVtctld, func(ctx context.Context, sc *report.Scenario) error { return r.vschemaChange(ctx, w, nil, sc) })
	run(ScVSchemad, func(ctx context.Context, sc *report.Scenario) error { return r.vschemaChange(ctx, w, store, sc) })
	run(ScReparent, func(ctx context.Context, sc *report.Scenario) error { return r.reparentStorm(ctx, w, sc) })
	run(ScLeader, func(ctx context.Context, sc *report.Scenario) error {
		return r.leaderEvent(ctx, w, sc, moveLeader(ctx))
	})
	run(ScCompaction, func(ctx context.Context, sc *report.Scenario) error { return r.compaction(ctx, w, sc) })
	// Last: the killed member stays down until the servers stop.
	run(ScLeaderKill, func(ctx context.Context, sc *report.Scenario) error {
		return r.leaderEvent(ctx, w, sc, killLeader(ctx))
	})
	return errors.Join(errs...)
}

// scenario runs fn as scenario name and records its figures: the servers
// read just before and just after, the clients' calls and errors.
func (r *topoRun) scenario(ctx context.Context, name string, fn func(ctx context.Context, sc *report.Scenario) error) error {
	r.cfg.logf("%s: %s", r.name, name)
	r.smp.setScenario(name)
	sc := report.Scenario{Name: name, StartS: time.Since(r.smp.start).Seconds()}
	// The clients' calls are read on both sides of each server read: the
	// calls made between the two server reads lie between the inner and
	// the outer difference, whatever was in flight.
	calls0 := r.topo.Calls.Snapshot()
	failedCalls0, failedSteps0, werr0 := r.topo.Calls.Failed(), r.st.failed.snapshot(), r.st.watchEv.Load()
	a := r.smp.take(ctx)
	callsA := r.topo.Calls.Snapshot()
	err := fn(ctx, &sc)
	callsB := r.topo.Calls.Snapshot()
	b := r.smp.take(ctx)
	sc.Seconds = b.t.Sub(a.t).Seconds()
	sc.Etcd, sc.Topod = r.smp.figures(a, b, sc.StartS, len(r.srv.Topod) > 0)
	sc.Client.Calls = since(r.topo.Calls.Snapshot(), calls0)
	sc.Client.CallsInner = since(callsB, callsA)
	sc.Client.FailedCalls = since(r.topo.Calls.Failed(), failedCalls0)
	sc.Client.FailedSteps = since(r.st.failed.snapshot(), failedSteps0)
	for _, m := range []map[string]int64{sc.Client.FailedCalls, sc.Client.FailedSteps} {
		for _, n := range m {
			sc.Client.ReadErrors += n
		}
	}
	sc.Client.WatchErrors = r.st.watchEv.Load() - werr0
	if err != nil {
		sc.Error = err.Error()
	}
	r.st.probe.Store(nil)
	r.rep.Scenarios = append(r.rep.Scenarios, sc)
	r.cfg.logf("%s: %s: %.1fs, etcd %.0f req/s, %.0f B/s, %.0f watchers peak%s", r.name, name, sc.Seconds, sc.Etcd.RequestsPerSec, sc.Etcd.BytesPerSec, sc.Etcd.WatchersPeak, errSuffix(err))
	return err
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// window runs change at a third of d, and returns at d (or once the change
// is done, if later).
func (r *topoRun) window(ctx context.Context, d time.Duration, change func() error) error {
	t0 := time.Now()
	if err := sleep(ctx, d/3); err != nil {
		return err
	}
	err := change()
	return errors.Join(err, sleep(ctx, d-time.Since(t0)))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// throttlerChange changes the most sharded keyspace's throttler threshold
// as vtctld's UpdateThrottlerConfig does (grpcvtctldserver/server.go: lock
// the keyspace, UpdateKeyspace, topo.Server.UpdateSrvKeyspaceThrottlerConfig
// in every cell) and waits until every vtgate and every tablet of the
// keyspace saw it.
func (r *topoRun) throttlerChange(ctx context.Context, w *topo.Server, sc *report.Scenario) error {
	ks := r.layout.Names[r.layout.MostSharded()]
	r.gen++
	gen := r.gen
	p := newProbe(probeSrvKeyspace, ks, gen, "")
	r.st.probe.Store(p)
	tc := &topodatapb.ThrottlerConfig{Enabled: true, Threshold: float64(gen), CustomQuery: ""}
	err := func() (err error) {
		lctx, unlock, err := w.LockKeyspace(ctx, ks, "UpdateThrottlerConfig")
		if err != nil {
			return fmt.Errorf("LockKeyspace: %w", err)
		}
		defer unlock(&err)
		ki, err := w.GetKeyspace(lctx, ks)
		if err != nil {
			return err
		}
		ki.ThrottlerConfig = tc
		if err := w.UpdateKeyspace(lctx, ki); err != nil {
			return err
		}
		_, err = w.UpdateSrvKeyspaceThrottlerConfig(lctx, ks, nil, func(*topodatapb.ThrottlerConfig) *topodatapb.ThrottlerConfig {
			return proto.Clone(tc).(*topodatapb.ThrottlerConfig)
		})
		return err
	}()
	sc.Client.Write = time.Since(p.start).Seconds()
	if err != nil {
		return fmt.Errorf("throttler change of %s: %w", ks, err)
	}
	tablets := 0
	for _, ts := range r.layout.Tablets {
		for _, t := range ts {
			if t.Keyspace == ks {
				tablets++
			}
		}
	}
	vtgates := r.nVtgates()
	r.await(ctx, p, vtgates, tablets)
	sc.Client.Change = delivery(p, true, "throttler threshold of "+ks+" (SrvKeyspace, every cell) to every vtgate", vtgates)
	sc.Client.TabletSeen = delivery(p, false, "... to the tablets of "+ks+" (throttler watch)", tablets)
	return nil
}

func (r *topoRun) nVtgates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vtgates)
}

// await waits until p was seen by vtgates vtgates and tablets tablets, or
// ChangeTimeout.
func (r *topoRun) await(ctx context.Context, p *probe, vtgates, tablets int) {
	deadline := time.Now().Add(r.cfg.ChangeTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		v, t := p.counts()
		if v >= vtgates && t >= tablets {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func delivery(p *probe, vtgates bool, what string, want int) *report.Delivery {
	lat := p.latencies(vtgates)
	d := &report.Delivery{What: what, Watchers: want, Seen: len(lat), Missed: max(0, want-len(lat))}
	s := secs(lat)
	d.P50, d.P99, d.Max = quantiles(s)
	if vtgates && len(s) <= 2000 {
		d.Samples = s
	}
	return d
}

func secs(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	sort.Float64s(out)
	return out
}

// quantiles returns p50, p99 and max of sorted s (gonum's empirical
// quantile: the smallest sample at or above the fraction).
func quantiles(s []float64) (p50, p99, mx float64) {
	if len(s) == 0 {
		return 0, 0, 0
	}
	return stat.Quantile(0.50, stat.Empirical, s, nil), stat.Quantile(0.99, stat.Empirical, s, nil), s[len(s)-1]
}

func vtgateDist(gs []*vtgate) *report.Dist {
	var ds []time.Duration
	for _, g := range gs {
		ds = append(ds, g.ready)
	}
	return dist(ds)
}

func dist(ds []time.Duration) *report.Dist {
	s := secs(ds)
	d := &report.Dist{N: len(s)}
	d.P50, d.P99, d.Max = quantiles(s)
	if len(s) <= 2000 {
		d.Samples = s
	}
	return d
}

// vtgateRestart restarts every vtgate, VtgateBatch at a time: each stops
// (its watches and connections closed) and starts again as a new vtgate
// does, and the scenario records its start-to-serving time.
func (r *topoRun) vtgateRestart(ctx context.Context, sc *report.Scenario) error {
	r.mu.Lock()
	old := r.vtgates
	r.mu.Unlock()
	var ds []time.Duration
	var errs []error
	for i := 0; i < len(old); i += r.cfg.VtgateBatch {
		batch := old[i:min(i+r.cfg.VtgateBatch, len(old))]
		var specs []vtgateSpec
		for _, g := range batch {
			g.stop()
			specs = append(specs, vtgateSpec{id: g.id, cell: g.cell})
		}
		gs, err := r.startVtgates(ctx, specs)
		r.mu.Lock()
		for j, g := range gs {
			for k := range r.vtgates {
				if r.vtgates[k].id == g.id {
					r.vtgates[k] = gs[j]
				}
			}
			ds = append(ds, g.ready)
		}
		r.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			break
		}
	}
	r.mu.Lock()
	r.vtgates = slices.DeleteFunc(r.vtgates, func(g *vtgate) bool { return g.ts == nil })
	r.mu.Unlock()
	sc.Client.VtgateStart = dist(ds)
	sc.Notes = append(sc.Notes, fmt.Sprintf("%d vtgates restarted, %d at a time", len(ds), r.cfg.VtgateBatch))
	return errors.Join(errs...)
}

// tabletRestart restarts every tablet of RestartCell, TabletBatch groups
// at a time: each group's tablets stop and run their start sequence again.
func (r *topoRun) tabletRestart(ctx context.Context, sc *report.Scenario) error {
	cell := r.cfg.RestartCell
	r.mu.Lock()
	var mine []int
	for i, g := range r.groups {
		if g.cell == cell {
			mine = append(mine, i)
		}
	}
	r.mu.Unlock()
	n := 0
	t0 := time.Now()
	for i := 0; i < len(mine); i += r.cfg.TabletBatch {
		idx := mine[i:min(i+r.cfg.TabletBatch, len(mine))]
		g, gctx := errgroup.WithContext(ctx)
		for _, k := range idx {
			r.mu.Lock()
			old := r.groups[k]
			r.mu.Unlock()
			old.stop()
			n += len(old.tablets)
			g.Go(func() error {
				tg, err := r.st.startTablets(gctx, old.cell, old.tablets, old.ids)
				if err != nil {
					return err
				}
				r.mu.Lock()
				r.groups[k] = tg
				r.mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	sc.Client.Write = time.Since(t0).Seconds()
	sc.Notes = append(sc.Notes, fmt.Sprintf("%d tablets of %s restarted (%d topo.Servers, %d at a time)", n, cell, len(mine), r.cfg.TabletBatch))
	return nil
}

// vschemaChange adds a table to one keyspace's vschema, through vtctld's
// ApplyVSchema (store nil: grpcvtctldserver/server.go, GetKeyspace,
// SaveVSchema, RebuildSrvVSchema of every cell, GetVSchema) or through
// vschemad's store (vschemastore.Store.Apply: the keyspace's vschema, then
// its piece of every cell's SrvVSchema), and waits until every vtgate's
// SrvVSchema watch returned it.
func (r *topoRun) vschemaChange(ctx context.Context, w *topo.Server, store *vschemastore.Store, sc *report.Scenario) error {
	i := r.layout.ProbeKeyspace()
	ks := r.layout.Names[i]
	r.vsEdits++
	marker := fmt.Sprintf("bench_probe_%d_%d", r.vsEdits, time.Now().UnixNano())
	vs := proto.Clone(r.layout.VSchema(i)).(*vschemapb.Keyspace)
	vs.Tables[marker] = &vschemapb.Table{}
	p := newProbe(probeVSchema, ks, 0, marker)
	r.st.probe.Store(p)
	var err error
	if store == nil {
		err = func() error {
			if _, err := w.GetKeyspace(ctx, ks); err != nil {
				return err
			}
			if err := w.SaveVSchema(ctx, &topo.KeyspaceVSchemaInfo{Name: ks, Keyspace: vs}); err != nil {
				return fmt.Errorf("SaveVSchema: %w", err)
			}
			if err := w.RebuildSrvVSchema(ctx, nil); err != nil {
				return fmt.Errorf("RebuildSrvVSchema: %w", err)
			}
			_, err := w.GetVSchema(ctx, ks)
			return err
		}()
	} else {
		_, err = store.Apply(ctx, []vschemastore.Change{{Keyspace: ks, VSchema: vs}}, vschemastore.ApplyOptions{})
		if err != nil {
			err = fmt.Errorf("vschemastore Apply: %w", err)
		}
	}
	sc.Client.Write = time.Since(p.start).Seconds()
	if err != nil {
		return err
	}
	tablets := 0
	if r.cfg.TabletVSchemaWatch {
		tablets = r.cfg.Profile.Topo.Tablets
	}
	vtgates := r.nVtgates()
	r.await(ctx, p, vtgates, tablets)
	sc.Client.Change = delivery(p, true, "a new table in "+ks+"'s vschema (SrvVSchema, every cell) to every vtgate", vtgates)
	if tablets > 0 {
		sc.Client.TabletSeen = delivery(p, false, "... to every tablet (vstreamer's SrvVSchema watch)", tablets)
	}
	return sleep(ctx, r.cfg.Settle)
}

// reparentStorm reparents ReparentShards shards at once, each with the
// topology writes of PlannedReparentShard, re-created from
// vtctl/reparentutil/planned_reparenter.go and the tablet manager's
// ChangeType (tabletmanager/rpc_actions.go, topotools.ChangeType): the
// shard lock, the shard and its tablets read (GetTabletMapForShard), the
// new primary's record (type PRIMARY, term start), the shard record
// (primary alias, term start), the old primary's record (type REPLICA);
// then, as vtctld's RebuildKeyspaceGraph, topotools.RebuildKeyspace of
// every keyspace touched. It waits until every old primary's WatchShard
// saw its shard's new primary.
func (r *topoRun) reparentStorm(ctx context.Context, w *topo.Server, sc *report.Scenario) error {
	byShard := map[string][]*topodatapb.Tablet{}
	for _, ts := range r.layout.Tablets {
		for _, t := range ts {
			k := t.Keyspace + "/" + t.Shard
			byShard[k] = append(byShard[k], t)
		}
	}
	type target struct {
		ks, shard  string
		oldP, newP *topodatapb.TabletAlias
	}
	var targets []target
	p := newProbe(probeShard, "", 0, "")
	p.shards = map[string]int64{}
	for _, s := range r.layout.Shards {
		if len(targets) >= r.cfg.ReparentShards {
			break
		}
		ts := byShard[s.Keyspace+"/"+s.Name]
		if len(ts) < 2 {
			continue
		}
		slices.SortFunc(ts, func(a, b *topodatapb.Tablet) int { return int(a.Alias.Uid) - int(b.Alias.Uid) })
		targets = append(targets, target{ks: s.Keyspace, shard: s.Name, oldP: ts[0].Alias, newP: ts[1].Alias})
		p.shards[s.Keyspace+"/"+s.Name] = int64(ts[1].Alias.Uid)
	}
	r.st.probe.Store(p)
	now := &vttime.Time{Seconds: time.Now().Unix()}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for _, t := range targets {
		g.Go(func() (err error) {
			lctx, unlock, err := w.LockShard(gctx, t.ks, t.shard, "PlannedReparentShard")
			if err != nil {
				return fmt.Errorf("LockShard %s/%s: %w", t.ks, t.shard, err)
			}
			defer unlock(&err)
			if _, err := w.GetShard(lctx, t.ks, t.shard); err != nil {
				return err
			}
			if _, err := w.GetTabletMapForShard(lctx, t.ks, t.shard); err != nil {
				return err
			}
			if _, err := w.UpdateTabletFields(lctx, t.newP, func(tb *topodatapb.Tablet) error {
				tb.Type, tb.PrimaryTermStartTime = topodatapb.TabletType_PRIMARY, now
				return nil
			}); err != nil {
				return err
			}
			if _, err := w.UpdateShardFields(lctx, t.ks, t.shard, func(si *topo.ShardInfo) error {
				si.PrimaryAlias, si.PrimaryTermStartTime = t.newP, now
				return nil
			}); err != nil {
				return err
			}
			_, err = w.UpdateTabletFields(lctx, t.oldP, func(tb *topodatapb.Tablet) error {
				tb.Type, tb.PrimaryTermStartTime = topodatapb.TabletType_REPLICA, nil
				return nil
			})
			return err
		})
	}
	err := g.Wait()
	kss := map[string]bool{}
	for _, t := range targets {
		kss[t.ks] = true
	}
	rb, rctx := errgroup.WithContext(ctx)
	rb.SetLimit(8)
	for ks := range kss {
		rb.Go(func() error {
			return topotools.RebuildKeyspace(rctx, logutil.NewMemoryLogger(), w, ks, nil, false)
		})
	}
	err = errors.Join(err, rb.Wait())
	sc.Client.Write = time.Since(p.start).Seconds()
	if err != nil {
		return err
	}
	r.await(ctx, p, 0, len(targets))
	sc.Client.Change = delivery(p, false, fmt.Sprintf("the new primary of each of %d shards to its old primary's WatchShard", len(targets)), len(targets))
	sc.Notes = append(sc.Notes, fmt.Sprintf("%d shards of %d keyspaces reparented at once (32 in flight), then RebuildKeyspace of each keyspace", len(targets), len(kss)))
	return sleep(ctx, r.cfg.Settle)
}

// leaderEvent does act to the (global) etcd cluster a third into the
// window (unless it is the user's, which is left alone), then changes a
// throttler threshold and waits for every vtgate and tablet to see it.
func (r *topoRun) leaderEvent(ctx context.Context, w *topo.Server, sc *report.Scenario, act func(e *harness.EtcdProcs) (note string, err error)) error {
	e := r.srv.Etcd[0]
	return r.window(ctx, r.cfg.LeaderWindow, func() error {
		if e.External() {
			sc.Notes = append(sc.Notes, "the user's etcd: left alone")
		} else {
			note, err := act(e)
			if err != nil {
				return err
			}
			sc.Notes = append(sc.Notes, note)
		}
		return r.throttlerChange(ctx, w, sc)
	})
}

// moveLeader hands the leadership to another member (MoveLeader): no
// connection breaks.
func moveLeader(ctx context.Context) func(e *harness.EtcdProcs) (string, error) {
	return func(e *harness.EtcdProcs) (string, error) {
		to, err := e.MoveLeader(ctx)
		return fmt.Sprintf("leader of %s moved to member %d", e.Name(), to), err
	}
}

// killLeader kills the leader (harness.EtcdProcs.KillLeader, SIGKILL): every
// client connection to it breaks, and each watch on it resumes on another
// member, the resync storm, while the others elect a new leader. The
// member stays down.
func killLeader(ctx context.Context) func(e *harness.EtcdProcs) (string, error) {
	return func(e *harness.EtcdProcs) (string, error) {
		i, err := e.KillLeader(ctx)
		return fmt.Sprintf("leader of %s (member %d) killed with SIGKILL, left down", e.Name(), i), err
	}
}

// compaction compacts every etcd cluster to its current revision every
// CompactEvery for the window, with a throttler change a third in.
func (r *topoRun) compaction(ctx context.Context, w *topo.Server, sc *report.Scenario) error {
	if r.cfg.external() {
		sc.Notes = append(sc.Notes, "the user's etcd: not compacted")
		return r.window(ctx, r.cfg.CompactWindow, func() error { return r.throttlerChange(ctx, w, sc) })
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		tick := time.NewTicker(r.cfg.CompactEvery)
		defer tick.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-tick.C:
				for _, e := range r.srv.Etcd {
					if _, err := e.Compact(cctx); err == nil {
						n++
					}
				}
			}
		}
	}()
	err := r.window(ctx, r.cfg.CompactWindow, func() error { return r.throttlerChange(ctx, w, sc) })
	cancel()
	n := <-done
	sc.Notes = append(sc.Notes, fmt.Sprintf("%d compactions (every %v, each cluster to its current revision)", n, r.cfg.CompactEvery))
	return err
}
