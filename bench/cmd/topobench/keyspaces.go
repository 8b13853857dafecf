package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
)

// The keyspaces phase (issue 9): Vitess's real watch shape. A vtgate's
// keyspace event watcher (go/vt/discovery/keyspace_events.go,
// newKeyspaceState) watches, through srvtopo, the SrvKeyspace of every
// keyspace of its cell plus the cell's SrvVSchema: srvtopo holds one
// topo.Server watch per (cell, keyspace) and one per cell for the
// SrvVSchema, which is what each vtgate-like client here opens, with
// topo.Server's own WatchSrvKeyspace and WatchSrvVSchema on a topo.Server of
// its own. The vttablet shape: every tablet's throttler watches its
// keyspace's SrvKeyspace and every primary its shard record
// (topo.Server.WatchShard). Then one SrvKeyspace change and a burst of
// updates to different keyspaces, as a RebuildKeyspaceGraph or a reparent
// storm writes them, delivered to every watcher of each keyspace.
//
// topo.Server's SrvKeyspace watch hands out the value without its version,
// so every update sets the keyspace's throttler threshold (as
// UpdateThrottlerConfig does) to the keyspace's generation, 1, 2, ...: a
// watcher has an update when its channel returns that generation or a later
// one.

// Shapes of the keyspaces phase.
const (
	shapeVtgates = "vtgates"
	shapeTablets = "tablets"
)

// ksCellServer is the ServerAddress of the benchmark's CellInfo: the
// benchmark's topo.Factory ignores it (each side dials its own servers).
const ksCellServer = "topobench"

// ksResult is the outcome of one keyspaces scenario: one side, one shape.
type ksResult struct {
	Side      string `json:"side"`
	Replicas  int    `json:"topod_replicas,omitempty"`
	Shape     string `json:"shape"` // vtgates or tablets
	Keyspaces int    `json:"keyspaces"`
	// Clients are vtgates or tablets; Servers the topo.Servers they use
	// (each its own global and cell connection): one per vtgate, one per
	// group of TabletsPerServer tablets.
	Clients          int `json:"clients"`
	Servers          int `json:"topo_servers"`
	TabletsPerServer int `json:"tablets_per_server,omitempty"`
	// Watches = SrvKeyspaceWatches + OtherWatches (the SrvVSchema watches
	// of vtgates, the shard watches of primaries); stalled clients' apart.
	Watches            int `json:"watches"`
	SrvKeyspaceWatches int `json:"srvkeyspace_watches"`
	OtherWatches       int `json:"other_watches"`
	SrvVSchemaBytes    int `json:"srvvschema_bytes"`

	Open             time.Duration `json:"open_ns"` // topo.Servers and every watch with its initial value
	EtcdWatchers     float64       `json:"etcd_watchers"`
	EtcdWatchStreams float64       `json:"etcd_watch_streams"`
	DriverCPUOpen    time.Duration `json:"driver_cpu_open_ns"`

	// Server memory: once the clients are open, once the stalled clients
	// are open too, at the end (and the peak over the scenario).
	EtcdRSSOpen     int64 `json:"etcd_rss_open_bytes"`
	EtcdRSSStalled  int64 `json:"etcd_rss_stalled_bytes,omitempty"`
	EtcdRSSEnd      int64 `json:"etcd_rss_end_bytes"`
	EtcdPeakRSS     int64 `json:"etcd_peak_rss_bytes"`
	TopodRSSOpen    int64 `json:"topod_rss_open_bytes,omitempty"`
	TopodRSSStalled int64 `json:"topod_rss_stalled_bytes,omitempty"`
	TopodRSSEnd     int64 `json:"topod_rss_end_bytes,omitempty"`
	TopodPeakRSS    int64 `json:"topod_peak_rss_bytes,omitempty"`

	Stalled        int `json:"stalled_clients"`
	StalledWatches int `json:"stalled_watches"`

	One ksDelivery `json:"one_change"`
	// OneInside is topod's own part of the one change's deliveries, from
	// its etcd endpoint's metrics (stock etcd2 on topod only).
	OneInside  *ksInside   `json:"one_change_inside_topod,omitempty"`
	OneStalled *ksDelivery `json:"one_change_with_stalled,omitempty"`
	Burst      ksDelivery  `json:"burst"`

	EtcdCPUBurst   time.Duration `json:"etcd_cpu_burst_ns"`
	TopodCPUBurst  time.Duration `json:"topod_cpu_burst_ns,omitempty"`
	DriverCPUBurst time.Duration `json:"driver_cpu_burst_ns"`

	Missed     int      `json:"missed"`     // over every change
	Duplicated int      `json:"duplicated"` // a version delivered again (or an older one) to one watch
	Errors     []string `json:"errors,omitempty"`
}

// ksDelivery is what one change or one burst measured. A delivery is a
// (watcher, update) pair: from the start of the update's write until the
// watcher's channel returned that generation or a later one.
type ksDelivery struct {
	Keyspace   string        `json:"keyspace,omitempty"` // of a one-keyspace change
	Updates    int           `json:"updates"`
	Rounds     int           `json:"rounds"` // times the updates were made, one round after the other
	Deliveries int           `json:"deliveries"`
	Missed     int           `json:"missed"` // not seen within --round-timeout
	Write      time.Duration `json:"write_ns"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
}

// ksInside splits a change's delivery through topod's etcd endpoint:
// the backend watch's hop (how long a write through topod waited, after
// etcd's answer, for topod's mirror to apply it) and topod's fan-out (from
// an event's arrival in the watch window to its send to each watch).
type ksInside struct {
	HopP50  time.Duration `json:"backend_hop_p50_ns"`
	HopP99  time.Duration `json:"backend_hop_p99_ns"`
	SendP50 time.Duration `json:"send_p50_ns"`
	SendP99 time.Duration `json:"send_p99_ns"`
	Sends   int           `json:"sends"`
}

// endpointSide is a side whose topod replicas' etcd endpoint metrics can
// be read.
type endpointSide interface {
	endpointMetrics(ctx context.Context) ([]harness.Metrics, error)
}

// inside reads topod's etcd endpoint histograms from the side's replicas,
// summed (nil for a side without them).
func (r *ksRun) inside(ctx context.Context) (hop, send harness.Histogram, ok bool, err error) {
	es, ok := r.side.(endpointSide)
	if !ok {
		return hop, send, false, nil
	}
	ms, err := es.endpointMetrics(ctx)
	if err != nil {
		return hop, send, false, err
	}
	for _, m := range ms {
		hop = hop.Add(m.Histogram("topod_etcd_write_visible_wait_seconds"))
		send = send.Add(m.Histogram("topod_etcd_watch_send_delay_seconds"))
	}
	return hop, send, true, nil
}

// ksLayout is the cell the keyspaces phase lays out: the JD profile at
// --ks-keyspaces, a SrvKeyspace per keyspace, a small SrvVSchema naming
// them, and the tablets of the vttablet shape.
type ksLayout struct {
	names   []string
	srv     []*topodatapb.SrvKeyspace // without the generation
	vschema *vschemapb.SrvVSchema
	tablets []ksTablet
	shards  []jd.ShardRecord // watched by the tablets' primaries
	one     int              // the keyspace of the one change: the most sharded
	burst   []int            // the keyspaces of the burst
	note    string
}

// ksTablet is one tablet of the vttablet shape.
type ksTablet struct {
	ks      int
	shard   string
	primary bool
}

// newKsLayout returns the layout of the JD profile at keyspaces, with
// tablets tablets (-1: the profile's) and a burst of burst keyspaces (at
// most all of them).
func newKsLayout(keyspaces, tablets, burst int) *ksLayout {
	p := jdProfile(keyspaces)
	l := &ksLayout{vschema: &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{}}}
	index := map[string]int{}
	for i := range p.Keyspaces {
		name, srv := p.SrvKeyspace(i)
		l.names = append(l.names, name)
		l.srv = append(l.srv, srv)
		index[name] = i
		l.vschema.Keyspaces[name] = &vschemapb.Keyspace{Sharded: p.ShardCount(i) > 1}
		if p.ShardCount(i) > p.ShardCount(l.one) {
			l.one = i
		}
	}
	n := min(burst, p.Keyspaces)
	for i := range n {
		l.burst = append(l.burst, i*p.Keyspaces/n)
	}
	if n < burst {
		l.note = fmt.Sprintf("burst: %d updates asked for, %d made (one per keyspace)", burst, n)
	}
	if tablets == 0 {
		return l
	}
	var all []ksTablet
	for _, cell := range p.CellNames() {
		for _, t := range p.CellTablets(cell) {
			all = append(all, ksTablet{ks: index[t.Keyspace], shard: t.Shard, primary: t.Type == topodatapb.TabletType_PRIMARY})
		}
	}
	slices.SortStableFunc(all, func(a, b ksTablet) int { return cmp.Compare(a.ks, b.ks) })
	if tablets < 0 {
		tablets = len(all)
	}
	// Fewer tablets than the profile's: evenly spread over them; more:
	// the profile's again.
	for i := range tablets {
		if tablets <= len(all) {
			l.tablets = append(l.tablets, all[int(int64(i)*int64(len(all))/int64(tablets))])
		} else {
			l.tablets = append(l.tablets, all[i%len(all)])
		}
	}
	watched := map[[2]string]bool{}
	for _, t := range l.tablets {
		if t.primary {
			watched[[2]string{l.names[t.ks], t.shard}] = true
		}
	}
	for i := range p.Keyspaces {
		for _, r := range p.KeyspaceShards(i) {
			if watched[[2]string{r.Keyspace, r.Name}] {
				l.shards = append(l.shards, r)
			}
		}
	}
	return l
}

// srvKeyspace returns keyspace i's SrvKeyspace at generation gen.
func (l *ksLayout) srvKeyspace(i int, gen int64) *topodatapb.SrvKeyspace {
	srv := l.srv[i].CloneVT()
	srv.ThrottlerConfig = &topodatapb.ThrottlerConfig{Enabled: true, Threshold: float64(gen)}
	return srv
}

// generation returns the generation of a SrvKeyspace written by the driver.
func generation(srv *topodatapb.SrvKeyspace) int64 {
	if srv == nil || srv.ThrottlerConfig == nil {
		return 0
	}
	return int64(srv.ThrottlerConfig.Threshold)
}

// keyspacesPhase runs, for each count of vtgate-like clients, stock etcd2
// then topod, and then the vttablet shape on both; every scenario on a
// fresh etcd in a process of its own (and fresh topod processes).
func (e *env) keyspacesPhase(ctx context.Context, rep *report) error {
	cfg := e.cfg
	lay := newKsLayout(cfg.KsKeyspaces, cfg.KsTablets, cfg.KsBurst)
	if lay.note != "" {
		rep.KeyspacesNotes = append(rep.KeyspacesNotes, lay.note)
	}
	type run struct {
		shape   string
		clients int
	}
	var runs []run
	for _, n := range cfg.KsVtgateCounts {
		runs = append(runs, run{shapeVtgates, n})
	}
	if len(lay.tablets) > 0 {
		runs = append(runs, run{shapeTablets, len(lay.tablets)})
	}
	for _, r := range runs {
		for _, kind := range e.cfg.KsSides {
			if err := e.withKsSide(ctx, kind, func(s side, etcd *etcdServer) error {
				res, err := runKeyspaces(ctx, e, ksScenario{
					side: s, etcd: etcd, lay: lay, shape: r.shape, clients: r.clients, stalled: cfg.KsStalled,
					perServer: cfg.KsTabletsPerConn, cell: cfg.Cell, timeout: cfg.RoundTimeout, openConcurrency: cfg.KsOpenConcurrency,
					oneRounds: cfg.KsOneRounds,
				})
				if res != nil {
					rep.Keyspaces = append(rep.Keyspaces, res)
				}
				return err
			}); err != nil {
				return fmt.Errorf("keyspaces, %s, %d %s: %w", kind, r.clients, r.shape, err)
			}
		}
	}
	return nil
}

// withKsSide starts an etcd process (and, for topod, topod replicas on it),
// runs fn on the side, and stops them.
func (e *env) withKsSide(ctx context.Context, kind string, fn func(s side, etcd *etcdServer) error) error {
	e.topods++
	dir := filepath.Join(e.dir, fmt.Sprintf("keyspaces%d", e.topods))
	etcd, err := startEtcdProcess(ctx, dir)
	if err != nil {
		return err
	}
	defer etcd.Close()
	if kind == "etcd2" {
		return fn(&etcd2Side{endpoint: etcd.endpoint}, etcd)
	}
	c, err := startTopod(ctx, e.topodBin, etcd.endpoint, filepath.Join(dir, "topod"), e.cfg.TopodReplicas, e.cfg.TopodFlags)
	if err != nil {
		return err
	}
	defer c.Stop()
	if kind == "etcd2-on-topod" {
		return fn(&etcd2TopodSide{cluster: c}, etcd)
	}
	return fn(&topodSide{cluster: c, cacheMode: e.cfg.Cache}, etcd)
}

// ksScenario describes one keyspaces run.
type ksScenario struct {
	side            side
	etcd            *etcdServer // in a process of its own
	lay             *ksLayout
	shape           string
	clients         int // vtgates or tablets
	stalled         int // vtgate shape only
	perServer       int // tablets per topo.Server
	cell            string
	timeout         time.Duration
	openConcurrency int
	oneRounds       int // times the one change is made
}

// dialFactory is a topo.Factory that dials a side's connection for any
// cell, so that a topo.Server of the side is what topo.OpenServer would
// give a Vitess binary (its global connection, then a cell connection found
// through the cell's CellInfo).
type dialFactory func(root string) (topo.Conn, error)

func (f dialFactory) HasGlobalReadOnlyCell(string, string) bool { return false }
func (f dialFactory) Create(_, _, root string) (topo.Conn, error) {
	return f(root)
}

// ksWatch is one watch of a client.
type ksWatch struct {
	ks int // the SrvKeyspace's keyspace; -1 for a SrvVSchema or Shard watch

	mu   sync.Mutex
	last int64 // the highest generation delivered (the initial one first)
	seen []ksSighting
	dups int
	err  error

	reached *ksRound // the round whose target it has reached; the reader's own
}

// ksSighting is a watch's channel returning a generation.
type ksSighting struct {
	gen int64
	at  time.Time
}

// firstAtLeast returns when the watch first returned gen or a later one.
func (w *ksWatch) firstAtLeast(gen int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.seen {
		if s.gen >= gen {
			return s.at, true
		}
	}
	return time.Time{}, false
}

func (w *ksWatch) forget() {
	w.mu.Lock()
	w.seen = w.seen[:0]
	w.mu.Unlock()
}

// ksRound is one change or burst: the generation it waits for per
// keyspace, and how many watches have yet to reach theirs.
type ksRound struct {
	target    map[int]int64
	remaining atomic.Int64
	done      chan struct{}
}

// ksRun is a scenario's state.
type ksRun struct {
	ksScenario
	globalRoot, cellRoot string
	writer               *topo.Server
	gen                  []int64 // per keyspace, the driver's

	watchCtx context.Context
	round    atomic.Pointer[ksRound]
	closing  atomic.Bool
	readers  sync.WaitGroup

	mu           sync.Mutex
	servers      []*topo.Server
	byKs         [][]*ksWatch // the read SrvKeyspace watches of each keyspace
	watches      []*ksWatch   // every read watch
	stalledChans []any        // the channels nobody reads
	errs         []string
	failures     int
}

func (r *ksRun) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures++
	if len(r.errs) < 5 {
		r.errs = append(r.errs, err.Error())
	}
}

// see records a watch's channel returning generation gen at at.
func (r *ksRun) see(w *ksWatch, gen int64, at time.Time) {
	w.mu.Lock()
	if gen <= w.last {
		w.dups++
	} else {
		w.last = gen
		if w.ks >= 0 {
			w.seen = append(w.seen, ksSighting{gen, at})
		}
	}
	w.mu.Unlock()
	if w.ks < 0 {
		return
	}
	if rd := r.round.Load(); rd != nil && w.reached != rd {
		if t, ok := rd.target[w.ks]; ok && gen >= t {
			w.reached = rd
			if rd.remaining.Add(-1) == 0 {
				close(rd.done)
			}
		}
	}
}

// readWatch reads a watch's channel until it closes.
func readWatch[T any](r *ksRun, w *ksWatch, ch <-chan T, decode func(T) (int64, error)) {
	defer r.readers.Done()
	for wd := range ch {
		at := time.Now()
		gen, err := decode(wd)
		if err != nil {
			if !r.closing.Load() {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				r.fail(fmt.Errorf("watch ended: %w", err))
			}
			continue // the channel closes after an error
		}
		r.see(w, gen, at)
	}
}

func decodeSrvKeyspace(wd *topo.WatchSrvKeyspaceData) (int64, error) {
	if wd.Err != nil {
		return 0, wd.Err
	}
	return generation(wd.Value), nil
}

// A SrvVSchema or Shard watch never changes here: anything it delivers
// (generation 0, no later than its initial value) is a duplicate.
func decodeSrvVSchema(wd *topo.WatchSrvVSchemaData) (int64, error) { return 0, wd.Err }
func decodeShard(wd *topo.WatchShardData) (int64, error)           { return 0, wd.Err }

// newServer opens a topo.Server of the side, as a Vitess binary's.
func (r *ksRun) newServer() (*topo.Server, error) {
	ts, err := topo.NewWithFactory(dialFactory(r.side.dial), ksCellServer, r.globalRoot)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.servers = append(r.servers, ts)
	r.mu.Unlock()
	return ts, nil
}

// watchSrvKeyspace opens a watch of keyspace ks on ts; read says whether it
// is read (a stalled client's is not).
func (r *ksRun) watchSrvKeyspace(ts *topo.Server, ks int, read bool) error {
	cur, ch, err := ts.WatchSrvKeyspace(r.watchCtx, r.cell, r.lay.names[ks])
	if err == nil && cur != nil && cur.Err != nil {
		err = cur.Err
	}
	if err != nil {
		return fmt.Errorf("WatchSrvKeyspace(%s, %s): %w", r.cell, r.lay.names[ks], err)
	}
	if !read {
		r.mu.Lock()
		r.stalledChans = append(r.stalledChans, ch)
		r.mu.Unlock()
		return nil
	}
	w := &ksWatch{ks: ks, last: generation(cur.Value)}
	r.mu.Lock()
	r.byKs[ks] = append(r.byKs[ks], w)
	r.watches = append(r.watches, w)
	r.mu.Unlock()
	r.readers.Add(1)
	go readWatch(r, w, ch, decodeSrvKeyspace)
	return nil
}

func (r *ksRun) watchSrvVSchema(ts *topo.Server, read bool) error {
	_, ch, err := ts.WatchSrvVSchema(r.watchCtx, r.cell)
	if err != nil {
		return fmt.Errorf("WatchSrvVSchema(%s): %w", r.cell, err)
	}
	if !read {
		r.mu.Lock()
		r.stalledChans = append(r.stalledChans, ch)
		r.mu.Unlock()
		return nil
	}
	w := &ksWatch{ks: -1}
	r.mu.Lock()
	r.watches = append(r.watches, w)
	r.mu.Unlock()
	r.readers.Add(1)
	go readWatch(r, w, ch, decodeSrvVSchema)
	return nil
}

func (r *ksRun) watchShard(ts *topo.Server, keyspace, shard string) error {
	_, ch, err := ts.WatchShard(r.watchCtx, keyspace, shard)
	if err != nil {
		return fmt.Errorf("WatchShard(%s, %s): %w", keyspace, shard, err)
	}
	w := &ksWatch{ks: -1}
	r.mu.Lock()
	r.watches = append(r.watches, w)
	r.mu.Unlock()
	r.readers.Add(1)
	go readWatch(r, w, ch, decodeShard)
	return nil
}

// openVtgates opens n vtgate-like clients, each a topo.Server of its own
// watching every SrvKeyspace and the SrvVSchema; read false opens stalled
// ones. It returns the watches opened.
func (r *ksRun) openVtgates(ctx context.Context, n int, read bool) (int, error) {
	servers := make([]*topo.Server, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.openConcurrency)
	for c := range servers {
		g.Go(func() error {
			ts, err := r.newServer()
			servers[c] = ts
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	k := len(r.lay.names)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.openConcurrency)
	// Every client opens its watches keyspace by keyspace, as the keyspace
	// event watcher does, all clients at once.
	for j := 0; j <= k; j++ {
		for c, ts := range servers {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				var err error
				if j == k {
					err = r.watchSrvVSchema(ts, read)
				} else {
					err = r.watchSrvKeyspace(ts, j, read)
				}
				if err != nil {
					return fmt.Errorf("vtgate %d: %w", c, err)
				}
				return nil
			})
		}
	}
	return n * (k + 1), g.Wait()
}

// openTablets opens the tablets, perServer to a topo.Server: every tablet
// watches its keyspace's SrvKeyspace, primaries their shard record too.
// It returns the servers and the shard watches.
func (r *ksRun) openTablets(ctx context.Context) (int, int, error) {
	tablets := r.lay.tablets[:r.clients]
	servers := make([]*topo.Server, (len(tablets)+r.perServer-1)/r.perServer)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.openConcurrency)
	for i := range servers {
		g.Go(func() error {
			ts, err := r.newServer()
			servers[i] = ts
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	shardWatches := 0
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.openConcurrency)
	for i, t := range tablets {
		ts := servers[i/r.perServer]
		if t.primary {
			shardWatches++
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			if err := r.watchSrvKeyspace(ts, t.ks, true); err != nil {
				return fmt.Errorf("tablet %d: %w", i, err)
			}
			if t.primary {
				if err := r.watchShard(ts, r.lay.names[t.ks], t.shard); err != nil {
					return fmt.Errorf("tablet %d: %w", i, err)
				}
			}
			return nil
		})
	}
	return len(servers), shardWatches, g.Wait()
}

// change writes one update to each of kss (distinct keyspaces), one after
// the other, then waits until every read watch of those keyspaces has its
// update, or the round timeout.
func (r *ksRun) change(ctx context.Context, kss []int, rounds int) (ksDelivery, error) {
	d := ksDelivery{Updates: len(kss), Rounds: rounds}
	if len(kss) == 1 {
		d.Keyspace = r.lay.names[kss[0]]
	}
	var lat []time.Duration
	for range rounds {
		l, write, missed, err := r.round1(ctx, kss)
		if err != nil {
			return d, err
		}
		lat = append(lat, l...)
		d.Write += write / time.Duration(rounds)
		d.Missed += missed
	}
	d.Deliveries = len(lat)
	d.P50, d.P99 = percentile(lat, 0.5), percentile(lat, 0.99)
	d.Max = slices.Max(append(lat, 0))
	return d, nil
}

// round1 writes one update to each of kss and waits until every watcher of
// them has it: the latencies of the deliveries, the time to write, and the
// watchers that had not seen theirs within the round timeout.
func (r *ksRun) round1(ctx context.Context, kss []int) (lat []time.Duration, write time.Duration, missed int, err error) {
	rd := &ksRound{target: make(map[int]int64, len(kss)), done: make(chan struct{})}
	srvs := make([]*topodatapb.SrvKeyspace, len(kss))
	var want int64
	for i, k := range kss {
		r.gen[k]++
		rd.target[k] = r.gen[k]
		srvs[i] = r.lay.srvKeyspace(k, r.gen[k])
		want += int64(len(r.byKs[k]))
	}
	rd.remaining.Store(want)
	if want == 0 {
		close(rd.done)
	}
	r.round.Store(rd)
	defer r.round.Store(nil)
	runtime.GC() // the previous round's garbage is not this round's cost

	begins := make([]time.Time, len(kss))
	start := time.Now()
	for i, k := range kss {
		begins[i] = time.Now()
		if err := r.writer.UpdateSrvKeyspace(ctx, r.cell, r.lay.names[k], srvs[i]); err != nil {
			return nil, 0, 0, fmt.Errorf("UpdateSrvKeyspace(%s, %s): %w", r.cell, r.lay.names[k], err)
		}
	}
	write = time.Since(start)
	select {
	case <-rd.done:
	case <-time.After(r.timeout):
	case <-ctx.Done():
		return nil, 0, 0, ctx.Err()
	}
	for i, k := range kss {
		for _, w := range r.byKs[k] {
			at, ok := w.firstAtLeast(rd.target[k])
			if !ok {
				missed++
				continue
			}
			lat = append(lat, at.Sub(begins[i]))
		}
	}
	for _, k := range kss {
		for _, w := range r.byKs[k] {
			w.forget()
		}
	}
	return lat, write, missed, nil
}

// layOut writes the cell: its CellInfo, every SrvKeyspace (generation 1)
// and the SrvVSchema, and the shard records the primaries watch, through
// the writer's topo.Server, then an unrelated file, so that no watched file
// is etcd's latest revision (see bump).
func (r *ksRun) layOut(ctx context.Context) error {
	if err := r.writer.CreateCellInfo(ctx, r.cell, &topodatapb.CellInfo{ServerAddress: ksCellServer, Root: r.cellRoot}); err != nil {
		return fmt.Errorf("CreateCellInfo(%s): %w", r.cell, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, name := range r.lay.names {
		r.gen[i] = 1
		srv := r.lay.srvKeyspace(i, 1)
		g.Go(func() error {
			if err := r.writer.UpdateSrvKeyspace(gctx, r.cell, name, srv); err != nil {
				return fmt.Errorf("UpdateSrvKeyspace(%s, %s): %w", r.cell, name, err)
			}
			return nil
		})
	}
	if r.shape == shapeTablets {
		global, err := r.writer.ConnForCell(ctx, topo.GlobalCell)
		if err != nil {
			return err
		}
		for _, s := range r.lay.shards {
			data, err := s.Shard.MarshalVT()
			if err != nil {
				return err
			}
			p := path.Join(topo.KeyspacesPath, s.Keyspace, topo.ShardsPath, s.Name, topo.ShardFile)
			g.Go(func() error {
				if _, err := global.Create(gctx, p, data); err != nil {
					return fmt.Errorf("create %s: %w", p, err)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := r.writer.UpdateSrvVSchema(ctx, r.cell, r.lay.vschema); err != nil {
		return fmt.Errorf("UpdateSrvVSchema(%s): %w", r.cell, err)
	}
	return r.bump(ctx)
}

func (r *ksRun) bump(ctx context.Context) error {
	conn, err := r.writer.ConnForCell(ctx, r.cell)
	if err != nil {
		return err
	}
	return bump(ctx, conn)
}

// ksStats is a reading of every process's CPU and memory.
type ksStats struct {
	etcd, topod, driver harness.ProcStats
}

func (r *ksRun) stats(env *env) (ksStats, error) {
	var s ksStats
	var err1, err2, err3 error
	s.etcd, err1 = r.etcd.stats()
	s.topod, err2 = r.side.stats()
	s.driver, err3 = harness.ReadProcStats(env.pid)
	return s, errors.Join(err1, err2, err3)
}

// runKeyspaces lays out the cell on the side, opens the clients of the
// scenario's shape, then makes one change (again with the stalled clients
// open, in the vtgate shape) and a burst.
func runKeyspaces(ctx context.Context, env *env, sc ksScenario) (*ksResult, error) {
	s := sc.side
	r := &ksRun{
		ksScenario: sc,
		globalRoot: s.root() + "/global",
		cellRoot:   s.root() + "/" + sc.cell,
		gen:        make([]int64, len(sc.lay.names)),
		byKs:       make([][]*ksWatch, len(sc.lay.names)),
	}
	vschemaBytes, err := marshal(sc.lay.vschema)
	if err != nil {
		return nil, err
	}
	res := &ksResult{
		Side:            s.name(),
		Replicas:        s.replicas(),
		Shape:           sc.shape,
		Keyspaces:       len(sc.lay.names),
		Clients:         sc.clients,
		SrvVSchemaBytes: len(vschemaBytes),
	}
	if sc.shape == shapeVtgates {
		res.Stalled = sc.stalled
		s.prepare(len(vschemaBytes), sc.clients+sc.stalled)
	} else {
		res.TabletsPerServer = sc.perServer
		s.prepare(len(vschemaBytes), sc.clients)
	}
	env.logf("keyspaces: %s, %d keyspaces, %d %s", res.Side, res.Keyspaces, sc.clients, sc.shape)

	var cancelWatches context.CancelFunc
	r.watchCtx, cancelWatches = context.WithCancel(ctx)
	defer func() {
		r.closing.Store(true)
		cancelWatches()
		r.mu.Lock()
		servers := r.servers
		r.mu.Unlock()
		for _, ts := range servers {
			ts.Close()
		}
		done := make(chan struct{})
		go func() { r.readers.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			env.logf("  some watches still open 30s after their cancel")
		}
	}()
	if r.writer, err = topo.NewWithFactory(dialFactory(s.dialWriter), ksCellServer, r.globalRoot); err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	defer r.writer.Close()
	start := time.Now()
	if err := r.layOut(ctx); err != nil {
		return nil, fmt.Errorf("lay out the cell: %w", err)
	}
	shards := 0
	if sc.shape == shapeTablets {
		shards = len(sc.lay.shards)
	}
	env.logf("  laid out %d SrvKeyspaces, the SrvVSchema and %d shard records in %v", len(sc.lay.names), shards, time.Since(start).Round(time.Millisecond))

	// Open the clients.
	s0, err := r.stats(env)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	switch sc.shape {
	case shapeVtgates:
		res.Servers = sc.clients
		res.Watches, err = r.openVtgates(ctx, sc.clients, true)
		res.OtherWatches = sc.clients
	default:
		res.Servers, res.OtherWatches, err = r.openTablets(ctx)
		res.Watches = sc.clients + res.OtherWatches
	}
	if err != nil {
		return nil, fmt.Errorf("open the %s: %w", sc.shape, err)
	}
	res.Open = time.Since(start)
	res.SrvKeyspaceWatches = res.Watches - res.OtherWatches
	time.Sleep(500 * time.Millisecond) // let the initial values drain before reading the gauges
	m1, err := r.etcd.scrape(ctx)
	if err != nil {
		return nil, err
	}
	s1, err := r.stats(env)
	if err != nil {
		return nil, err
	}
	res.EtcdWatchers, res.EtcdWatchStreams = m1.Watchers, m1.WatchStreams
	res.EtcdRSSOpen, res.TopodRSSOpen = s1.etcd.RSS, s1.topod.RSS
	res.DriverCPUOpen = s1.driver.CPU - s0.driver.CPU
	topodRSS := ""
	if s.replicas() > 0 {
		topodRSS = "; topod RSS " + fmtBytes(float64(s1.topod.RSS))
	}
	env.logf("  %d watches open in %v; etcd: %v watchers, RSS %s%s", res.Watches, res.Open.Round(time.Millisecond),
		m1.Watchers, fmtBytes(float64(s1.etcd.RSS)), topodRSS)

	// One change.
	one := []int{sc.lay.one}
	hop0, send0, inside, err := r.inside(ctx)
	if err != nil {
		return nil, err
	}
	if res.One, err = r.change(ctx, one, sc.oneRounds); err != nil {
		return nil, fmt.Errorf("one change: %w", err)
	}
	if inside {
		hop1, send1, _, err := r.inside(ctx)
		if err != nil {
			return nil, err
		}
		hop, send := hop1.Since(hop0), send1.Since(send0)
		sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
		res.OneInside = &ksInside{
			HopP50: sec(hop.Quantile(0.5)), HopP99: sec(hop.Quantile(0.99)),
			SendP50: sec(send.Quantile(0.5)), SendP99: sec(send.Quantile(0.99)), Sends: int(send.Count()),
		}
	}
	env.logf("  one change (%s) x%d: %d deliveries, p99 %v, max %v", res.One.Keyspace, res.One.Rounds, res.One.Deliveries,
		res.One.P99.Round(time.Millisecond), res.One.Max.Round(time.Millisecond))

	// The stalled clients, and the change again.
	if sc.shape == shapeVtgates && sc.stalled > 0 {
		if err := r.bump(ctx); err != nil {
			return nil, err
		}
		if res.StalledWatches, err = r.openVtgates(ctx, sc.stalled, false); err != nil {
			return nil, fmt.Errorf("open the stalled clients: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
		s2, err := r.stats(env)
		if err != nil {
			return nil, err
		}
		res.EtcdRSSStalled, res.TopodRSSStalled = s2.etcd.RSS, s2.topod.RSS
		d, err := r.change(ctx, one, sc.oneRounds)
		if err != nil {
			return nil, fmt.Errorf("one change with the stalled clients: %w", err)
		}
		res.OneStalled = &d
		env.logf("  %d stalled clients (%d watches) open; one change: max %v", sc.stalled, res.StalledWatches, d.Max.Round(time.Millisecond))
	}

	// The burst.
	s3, err := r.stats(env)
	if err != nil {
		return nil, err
	}
	if res.Burst, err = r.change(ctx, sc.lay.burst, 1); err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}
	s4, err := r.stats(env)
	if err != nil {
		return nil, err
	}
	res.EtcdCPUBurst = s4.etcd.CPU - s3.etcd.CPU
	res.TopodCPUBurst = s4.topod.CPU - s3.topod.CPU
	res.DriverCPUBurst = s4.driver.CPU - s3.driver.CPU
	res.EtcdRSSEnd, res.EtcdPeakRSS = s4.etcd.RSS, s4.etcd.PeakRSS
	res.TopodRSSEnd, res.TopodPeakRSS = s4.topod.RSS, s4.topod.PeakRSS
	env.logf("  burst of %d: written in %v, delivery p99 %v, max %v, %d missed", res.Burst.Updates, res.Burst.Write.Round(time.Millisecond),
		res.Burst.P99.Round(time.Millisecond), res.Burst.Max.Round(time.Millisecond), res.Burst.Missed)

	res.Missed = res.One.Missed + res.Burst.Missed
	if res.OneStalled != nil {
		res.Missed += res.OneStalled.Missed
	}
	r.mu.Lock()
	for _, w := range r.watches {
		w.mu.Lock()
		res.Duplicated += w.dups
		w.mu.Unlock()
	}
	res.Errors = slices.Clone(r.errs)
	if r.failures > len(r.errs) {
		res.Errors = append(res.Errors, fmt.Sprintf("... and %d more", r.failures-len(r.errs)))
	}
	r.mu.Unlock()
	return res, nil
}

// keyspacesNotes explain how to read the keyspaces table.
func keyspacesNotes(rep *report) []string {
	out := slices.Clone(rep.KeyspacesNotes)
	out = append(out,
		"keyspaces: every scenario runs on a fresh one-member etcd in a process of its own (the etcd binary at the embedded one's version, default limits), "+
			"so the etcd rows are etcd's alone; topod runs beside it; the clients and the writer are in the driver",
		"keyspaces delivery: per (watcher, update), from the start of the update's UpdateSrvKeyspace until the watcher's topo.Server channel returned that "+
			"generation (the keyspace's throttler threshold, set by each update) or a later one; p50/p99/max over every such pair (the one change: "+
			"over every round of it, each made once the last was delivered everywhere); "+
			"missed: not seen within --round-timeout; duplicated: a watch's channel returning a generation it had already returned (or an older one), "+
			"or any value of the SrvVSchema and Shard watches, which never change",
		"keyspaces stalled clients: vtgate-like clients that open every watch and never receive from their channels; they are not counted in the "+
			"deliveries; each watch gets at most a few events here, which Vitess's buffered channels hold",
	)
	for _, x := range rep.Keyspaces {
		if x.Shape == shapeTablets {
			out = append(out, fmt.Sprintf("keyspaces tablets: %d tablets share each topo.Server (--ks-tablets-per-conn), as a connection per tablet would be %d etcd clients or gRPC connections in the driver; "+
				"each tablet still opens its own watches on it", x.TabletsPerServer, x.Clients))
			break
		}
	}
	return out
}
