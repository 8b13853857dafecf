package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"gonum.org/v1/gonum/stat"

	"github.com/topod-io/topod/internal/harness"
)

// srvVSchemaFile is the file every watcher watches, relative to the cell's
// root, as Vitess's topo.Server.WatchSrvVSchema does.
const srvVSchemaFile = "SrvVSchema"

// watchResult is the outcome of one watch scenario.
type watchResult struct {
	Side            string `json:"side"`
	Replicas        int    `json:"topod_replicas,omitempty"`
	Keyspaces       int    `json:"keyspaces"`
	SrvVSchemaBytes int    `json:"srvvschema_bytes"`
	Watchers        int    `json:"watchers"`
	Rounds          int    `json:"rounds"`
	BlobCache       string `json:"plugin_blob_cache,omitempty"`

	// Setup: opening every watcher (connection, Watch, initial value).
	Setup            time.Duration `json:"setup_ns"`
	EtcdWatchers     float64       `json:"etcd_watchers"`
	EtcdWatchStreams float64       `json:"etcd_watch_streams"`
	EtcdSentSetup    float64       `json:"etcd_sent_bytes_setup"`

	// Per change, averaged over the rounds.
	EtcdSentPerChange float64       `json:"etcd_sent_bytes_per_change"`
	Write             time.Duration `json:"write_p50_ns"` // the writer's Update, median over rounds
	DeliveryP50       time.Duration `json:"delivery_p50_ns"`
	DeliveryP99       time.Duration `json:"delivery_p99_ns"`
	// AfterWriteP99 is the p99 of the time from the writer's Update
	// returning to the watcher having the change (0 if it had it before).
	AfterWriteP99 time.Duration `json:"delivery_after_write_p99_ns"`
	AllSaw        time.Duration `json:"all_saw_worst_round_ns"` // the slowest watcher of the worst round
	AllSawRounds  []int64       `json:"all_saw_per_round_ns"`
	Missed        int           `json:"missed"`     // deliveries not seen within the round timeout
	WrongSize     int           `json:"wrong_size"` // deliveries whose contents had the wrong length
	Errors        []string      `json:"errors,omitempty"`

	TopodCPUSetup     time.Duration `json:"topod_cpu_setup_ns,omitempty"`
	TopodCPUPerChange time.Duration `json:"topod_cpu_per_change_ns,omitempty"`
	TopodRSS          int64         `json:"topod_rss_bytes,omitempty"`
	TopodPeakRSS      int64         `json:"topod_peak_rss_bytes,omitempty"`
	// DriverCPUPerChange is the driver process's CPU per change: the
	// embedded etcd, every watcher and the writer.
	DriverCPUPerChange time.Duration `json:"driver_cpu_per_change_ns"`
}

// watchScenario describes one watch run.
type watchScenario struct {
	side     side
	srv      *vschemapb.SrvVSchema // the initial SrvVSchema; changed in place
	watchers int
	rounds   int
	timeout  time.Duration // per round
	cell     string
}

// sighting is a watcher seeing a version of the file.
type sighting struct {
	rev  int64
	at   time.Time
	size int
}

// watcher is one topo.Conn watching the SrvVSchema.
type watcher struct {
	conn topo.Conn
	last atomic.Int64 // highest version seen
	done atomic.Bool  // the watch ended

	mu       sync.Mutex
	seen     []sighting
	err      error
	finished bool
}

// run records every change until the watch ends.
func (w *watcher) run(changes <-chan *topo.WatchData) {
	defer w.done.Store(true)
	for wd := range changes {
		at := time.Now()
		if wd.Err != nil {
			w.mu.Lock()
			w.err = wd.Err
			w.mu.Unlock()
			return
		}
		rev, err := parseVersion(wd.Version)
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.mu.Unlock()
			return
		}
		w.seen = append(w.seen, sighting{rev: rev, at: at, size: len(wd.Contents)})
		w.mu.Unlock()
		w.last.Store(rev)
	}
}

// firstAtLeast returns the first sighting of a version >= rev, and forgets
// the sightings before it.
func (w *watcher) firstAtLeast(rev int64) (sighting, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.seen {
		if s.rev >= rev {
			w.seen = w.seen[i:]
			return s, true
		}
	}
	return sighting{}, false
}

func (w *watcher) error() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// parseVersion turns a topo.Version (etcd2topo's and the plugin's are both
// backend revisions) into a number.
func parseVersion(v topo.Version) (int64, error) {
	if v == nil {
		return 0, errors.New("watch delivered no version")
	}
	n, err := strconv.ParseInt(v.String(), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("version %q is not a revision: %w", v.String(), err)
	}
	return n, nil
}

// runWatch opens sc.watchers watchers of the cell's SrvVSchema on side, then
// changes one keyspace sc.rounds times and measures, per change, the time
// from the start of the writer's Update until each watcher has the new
// version.
func runWatch(ctx context.Context, env *env, sc watchScenario) (*watchResult, error) {
	s := sc.side
	root := s.root() + "/" + sc.cell
	data, err := marshal(sc.srv)
	if err != nil {
		return nil, err
	}
	res := &watchResult{
		Side:            s.name(),
		Replicas:        s.replicas(),
		Keyspaces:       len(sc.srv.Keyspaces),
		SrvVSchemaBytes: len(data),
		Watchers:        sc.watchers,
		Rounds:          sc.rounds,
		BlobCache:       s.prepare(len(data), sc.watchers),
	}
	env.logf("watch: %s, %d keyspaces (%s), %d watchers, %d changes", res.Side, res.Keyspaces, fmtBytes(float64(len(data))), sc.watchers, sc.rounds)

	writer, err := s.dialWriter(root)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	defer writer.Close()
	if _, err := writer.Update(ctx, srvVSchemaFile, data, nil); err != nil {
		return nil, fmt.Errorf("write the initial SrvVSchema (%d bytes): %w", len(data), err)
	}
	if err := bump(ctx, writer); err != nil {
		return nil, err
	}

	// Open the watchers.
	m0, err := env.etcd.scrape(ctx)
	if err != nil {
		return nil, err
	}
	t0, err := s.stats()
	if err != nil {
		return nil, err
	}
	watchCtx, cancelWatches := context.WithCancel(ctx)
	watchers := make([]*watcher, sc.watchers)
	defer func() {
		cancelWatches()
		for _, w := range watchers {
			if w != nil {
				w.conn.Close()
			}
		}
	}()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range watchers {
		g.Go(func() error {
			conn, err := s.dial(root)
			if err != nil {
				return fmt.Errorf("watcher %d: %w", i, err)
			}
			w := &watcher{conn: conn}
			watchers[i] = w
			initial, changes, err := conn.Watch(watchCtx, srvVSchemaFile)
			if err != nil {
				return fmt.Errorf("watcher %d: watch: %w", i, err)
			}
			if s.contents() && len(initial.Contents) != len(data) {
				return fmt.Errorf("watcher %d: initial SrvVSchema is %d bytes, want %d", i, len(initial.Contents), len(data))
			}
			rev, err := parseVersion(initial.Version)
			if err != nil {
				return fmt.Errorf("watcher %d: %w", i, err)
			}
			w.last.Store(rev)
			go w.run(changes)
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("open watchers: %w", err)
	}
	res.Setup = time.Since(start)
	// Let the last initial values drain before reading the gauges.
	time.Sleep(500 * time.Millisecond)
	m1, err := env.etcd.scrape(ctx)
	if err != nil {
		return nil, err
	}
	t1, err := s.stats()
	if err != nil {
		return nil, err
	}
	res.EtcdWatchers, res.EtcdWatchStreams = m1.Watchers, m1.WatchStreams
	res.EtcdSentSetup = m1.sub(m0).SentBytes
	res.TopodCPUSetup = t1.CPU - t0.CPU
	env.logf("  %d watchers open in %v; etcd: %v watchers, %v watch streams", sc.watchers, res.Setup.Round(time.Millisecond), m1.Watchers, m1.WatchStreams)

	// The changes.
	d0, err := harness.ReadProcStats(env.pid)
	if err != nil {
		return nil, err
	}
	var latencies, afterWrite, writes []time.Duration
	names := slices.Sorted(maps.Keys(sc.srv.Keyspaces))
	for r := range sc.rounds {
		ks := names[(r*7919+1)%len(names)]
		changeKeyspace(sc.srv.Keyspaces[ks], r)
		data, err := marshal(sc.srv)
		if err != nil {
			return nil, err
		}
		runtime.GC() // the previous round's garbage is not this round's cost
		begin := time.Now()
		v, err := writer.Update(ctx, srvVSchemaFile, data, nil)
		if err != nil {
			return nil, fmt.Errorf("change %d (keyspace %s): update: %w", r, ks, err)
		}
		end := time.Now()
		writes = append(writes, end.Sub(begin))
		rev, err := parseVersion(v)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", r, err)
		}
		waitAll(ctx, watchers, rev, sc.timeout)
		var worst time.Duration
		for _, w := range watchers {
			s, ok := w.firstAtLeast(rev)
			if !ok {
				res.Missed++
				if err := w.error(); err != nil && len(res.Errors) < 5 {
					res.Errors = append(res.Errors, err.Error())
				}
				continue
			}
			if sc.side.contents() && s.rev == rev && s.size != len(data) {
				res.WrongSize++
			}
			d := s.at.Sub(begin)
			latencies = append(latencies, d)
			afterWrite = append(afterWrite, max(0, s.at.Sub(end)))
			worst = max(worst, d)
		}
		res.AllSawRounds = append(res.AllSawRounds, int64(worst))
		env.logf("  change %d (%s): write %v, slowest watcher %v", r, ks, writes[r].Round(time.Millisecond), worst.Round(time.Millisecond))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond) // quiesce between changes
	}
	m2, err := env.etcd.scrape(ctx)
	if err != nil {
		return nil, err
	}
	t2, err := s.stats()
	if err != nil {
		return nil, err
	}
	d1, err := harness.ReadProcStats(env.pid)
	if err != nil {
		return nil, err
	}
	n := time.Duration(sc.rounds)
	res.EtcdSentPerChange = m2.sub(m1).SentBytes / float64(sc.rounds)
	res.TopodCPUPerChange = (t2.CPU - t1.CPU) / n
	res.TopodRSS, res.TopodPeakRSS = t2.RSS, t2.PeakRSS
	res.DriverCPUPerChange = (d1.CPU - d0.CPU) / n
	res.Write = percentile(writes, 0.5)
	res.DeliveryP50 = percentile(latencies, 0.5)
	res.DeliveryP99 = percentile(latencies, 0.99)
	res.AfterWriteP99 = percentile(afterWrite, 0.99)
	for _, d := range res.AllSawRounds {
		res.AllSaw = max(res.AllSaw, time.Duration(d))
	}
	return res, nil
}

// bump writes an unrelated file next to the watched one, so that the
// watched file is not etcd's latest revision, as in a live cell. (etcd2topo
// starts its etcd watch at the revision of its initial read, inclusive: when
// the watched key was the very last write, every watcher gets its whole value
// a second time.)
func bump(ctx context.Context, conn topo.Conn) error {
	if _, err := conn.Update(ctx, "topobench-bump", []byte("bump"), nil); err != nil {
		return fmt.Errorf("write topobench-bump: %w", err)
	}
	return nil
}

// waitAll waits until every watcher has seen rev or later, its watch ended,
// or the timeout passed.
func waitAll(ctx context.Context, watchers []*watcher, rev int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, w := range watchers {
			if w.last.Load() < rev && !w.done.Load() {
				all = false
				break
			}
		}
		if all || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// changeKeyspace makes round r's one-keyspace change: a column added to
// the keyspace's first table (or, in a keyspace with no tables, a table).
func changeKeyspace(ks *vschemapb.Keyspace, r int) {
	col := fmt.Sprintf("topobench_r%d", r)
	if len(ks.Tables) == 0 {
		if ks.Tables == nil {
			ks.Tables = map[string]*vschemapb.Table{}
		}
		ks.Tables[col] = &vschemapb.Table{}
		return
	}
	first := slices.Min(slices.Collect(maps.Keys(ks.Tables)))
	t := ks.Tables[first]
	t.Columns = append(t.Columns, &vschemapb.Column{Name: col})
}

// marshal is how the driver serializes a SrvVSchema: deterministically, so
// the plugin's reassembled bytes have the same length.
func marshal(m proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	return b, nil
}

// percentile returns the p-th quantile of ds (gonum's empirical quantile,
// as bench/fleet's: the smallest sample at or above the fraction); 0 if
// empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := make([]float64, len(ds))
	for i, d := range ds {
		s[i] = float64(d)
	}
	slices.Sort(s)
	return time.Duration(stat.Quantile(p, stat.Empirical, s, nil))
}
