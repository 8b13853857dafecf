package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
)

// stormResult is the outcome of one read storm.
type stormResult struct {
	Side        string `json:"side"`
	Replicas    int    `json:"topod_replicas,omitempty"`
	Clients     int    `json:"clients"`
	Shards      int    `json:"shards"`
	Keyspaces   int    `json:"keyspaces"`
	Concurrency int    `json:"concurrency_per_client"`
	Reads       int    `json:"reads"` // shard reads the clients made

	// etcd, during the storm (from the SrvVSchema update to the last read).
	EtcdRangeRPCs  float64 `json:"etcd_range_rpcs"`
	EtcdKVRPCs     float64 `json:"etcd_kv_rpcs"`
	EtcdMVCCRanges float64 `json:"etcd_mvcc_ranges"`
	EtcdSent       float64 `json:"etcd_sent_bytes"`

	Wall       time.Duration `json:"wall_ns"` // SrvVSchema update start to the last client's last read
	ClientP50  time.Duration `json:"client_done_p50_ns"`
	ClientP99  time.Duration `json:"client_done_p99_ns"`
	ReadErrors int           `json:"read_errors"`
	Errors     []string      `json:"errors,omitempty"`

	TopodCPU     time.Duration `json:"topod_cpu_ns,omitempty"`
	TopodRSS     int64         `json:"topod_rss_bytes,omitempty"`
	TopodPeakRSS int64         `json:"topod_peak_rss_bytes,omitempty"`
}

// stormScenario describes one read storm.
type stormScenario struct {
	side        side
	clients     int
	shards      int
	concurrency int
	cell        string
	timeout     time.Duration
}

// stormTopology returns the storm's shard records: the shards of the JD
// profile's most sharded keyspaces, largest first, up to n (the last
// keyspace may be cut short), and a SrvVSchema naming their keyspaces with
// one routing rule, the condition under which vitess#20465 makes every
// vtgate read every shard record on a SrvVSchema change.
func stormTopology(n int) ([]jd.ShardRecord, *vschemapb.SrvVSchema) {
	p := jd.JD()
	order := make([]int, p.Keyspaces)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(p.ShardCount(b), p.ShardCount(a)) })
	var shards []jd.ShardRecord
	srv := &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{}}
	for _, i := range order {
		if len(shards) >= n {
			break
		}
		recs := p.KeyspaceShards(i)
		recs = recs[:min(len(recs), n-len(shards))]
		shards = append(shards, recs...)
		name := p.KeyspaceName(i)
		srv.Keyspaces[name] = &vschemapb.Keyspace{
			Sharded:  true,
			Vindexes: map[string]*vschemapb.Vindex{"hash": {Type: "hash"}},
			Tables: map[string]*vschemapb.Table{
				"t": {ColumnVindexes: []*vschemapb.ColumnVindex{{Name: "hash", Columns: []string{"id"}}}},
			},
		}
		if srv.RoutingRules == nil {
			srv.RoutingRules = &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{
				{FromTable: "t_old", ToTables: []string{name + ".t"}},
			}}
		}
	}
	return shards, srv
}

// shardPath is where Vitess keeps a shard record, relative to the global
// root.
func shardPath(r jd.ShardRecord) string {
	return path.Join("global", "keyspaces", r.Keyspace, "shards", r.Name, "Shard")
}

// runStorm writes the storm's shard records and SrvVSchema, opens the
// clients, each watching the SrvVSchema, then changes the SrvVSchema: every
// client then reads every shard record, sc.concurrency at a time, as vtgate's
// keyspace event watcher does (vitess#20465).
func runStorm(ctx context.Context, env *env, sc stormScenario) (*stormResult, error) {
	s := sc.side
	root := s.root()
	shards, srv := stormTopology(sc.shards)
	res := &stormResult{
		Side:        s.name(),
		Replicas:    s.replicas(),
		Clients:     sc.clients,
		Shards:      len(shards),
		Keyspaces:   len(srv.Keyspaces),
		Concurrency: sc.concurrency,
	}
	srvFile := path.Join(sc.cell, srvVSchemaFile)
	env.logf("storm: %s, %d clients x %d shards (%d keyspaces), %d reads at a time per client", res.Side, sc.clients, len(shards), len(srv.Keyspaces), sc.concurrency)
	data, err := marshal(srv)
	if err != nil {
		return nil, err
	}
	s.prepare(len(data), sc.clients)

	writer, err := s.dialWriter(root)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	defer writer.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, r := range shards {
		g.Go(func() error {
			b, err := marshal(r.Shard)
			if err != nil {
				return err
			}
			if _, err := writer.Update(gctx, shardPath(r), b, nil); err != nil {
				return fmt.Errorf("write shard %s/%s: %w", r.Keyspace, r.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if _, err := writer.Update(ctx, srvFile, data, nil); err != nil {
		return nil, fmt.Errorf("write the SrvVSchema: %w", err)
	}
	if err := bump(ctx, writer); err != nil {
		return nil, err
	}

	// The clients: each watches the SrvVSchema and, on its first change,
	// reads every shard.
	watchCtx, cancelWatches := context.WithCancel(ctx)
	defer cancelWatches()
	var (
		mu         sync.Mutex
		finished   []time.Time
		readErrors int
		reads      atomic.Int64
		errs       []string
		wg         sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		readErrors++
		if len(errs) < 5 {
			errs = append(errs, err.Error())
		}
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(16)
	var connsMu sync.Mutex
	var conns []interface{ Close() }
	defer func() {
		cancelWatches()
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range sc.clients {
		g.Go(func() error {
			conn, err := s.dial(root)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			connsMu.Lock()
			conns = append(conns, conn)
			connsMu.Unlock()
			initial, changes, err := conn.Watch(watchCtx, srvFile)
			if err != nil {
				return fmt.Errorf("client %d: watch: %w", i, err)
			}
			rev0, err := parseVersion(initial.Version)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Wait for the change: a version past the initial one.
				for {
					wd, ok := <-changes
					if !ok || wd.Err != nil {
						fail(fmt.Errorf("client %d: watch ended: %v", i, wd))
						return
					}
					if rev, err := parseVersion(wd.Version); err != nil || rev > rev0 {
						break
					}
				}
				rg, rctx := errgroup.WithContext(watchCtx)
				rg.SetLimit(sc.concurrency)
				for _, r := range shards {
					rg.Go(func() error {
						reads.Add(1)
						b, _, err := conn.Get(rctx, shardPath(r))
						if err != nil {
							fail(fmt.Errorf("client %d: get %s: %w", i, shardPath(r), err))
							return nil
						}
						var shard topodatapb.Shard
						if err := shard.UnmarshalVT(b); err != nil {
							fail(fmt.Errorf("client %d: %s: %w", i, shardPath(r), err))
						}
						return nil
					})
				}
				_ = rg.Wait()
				mu.Lock()
				finished = append(finished, time.Now())
				mu.Unlock()
			}()
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("open storm clients: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // let the watches settle

	m0, err := env.etcd.scrape(ctx)
	if err != nil {
		return nil, err
	}
	t0, err := s.stats()
	if err != nil {
		return nil, err
	}
	srv.Keyspaces[slices.Min(slices.Collect(maps.Keys(srv.Keyspaces)))].Tables["t_storm"] = &vschemapb.Table{}
	if data, err = marshal(srv); err != nil {
		return nil, err
	}
	begin := time.Now()
	if _, err := writer.Update(ctx, srvFile, data, nil); err != nil {
		return nil, fmt.Errorf("change the SrvVSchema: %w", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(sc.timeout):
		cancelWatches()
		<-done
		fail(fmt.Errorf("storm not over after %v", sc.timeout))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	m1, err := env.etcd.scrape(ctx)
	if err != nil {
		return nil, err
	}
	t1, err := s.stats()
	if err != nil {
		return nil, err
	}
	d := m1.sub(m0)
	res.EtcdRangeRPCs, res.EtcdKVRPCs, res.EtcdMVCCRanges, res.EtcdSent = d.RangeRPCs, d.KVRPCs, d.MVCCRanges, d.SentBytes
	res.TopodCPU = t1.CPU - t0.CPU
	res.TopodRSS, res.TopodPeakRSS = t1.RSS, t1.PeakRSS
	var took []time.Duration
	for _, f := range finished {
		took = append(took, f.Sub(begin))
	}
	res.Reads = int(reads.Load())
	res.ClientP50, res.ClientP99 = percentile(took, 0.5), percentile(took, 0.99)
	res.Wall = slices.Max(append(took, 0))
	res.ReadErrors, res.Errors = readErrors, errs
	env.logf("  %d reads in %v; etcd Range RPCs: %v", res.Reads, res.Wall.Round(time.Millisecond), res.EtcdRangeRPCs)
	return res, nil
}
