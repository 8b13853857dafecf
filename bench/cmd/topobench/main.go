// Command topobench is the etcd load benchmark of topod: it runs the same
// workload against stock Vitess etcd2 (vitess.io/vitess/go/vt/topo/etcd2topo,
// every client straight to etcd) and against topod on the same etcd (the
// topod plugin, every client through topod), in one run, and prints a table.
//
//	go run ./bench/cmd/topobench                  # the default run, about 1.5 minutes on 2 cores
//	go run ./bench/cmd/topobench --topod-replicas 2 --compare-uncached
//	go run ./bench/cmd/topobench --watchers 100 --storm-clients 20 --jd-keyspaces 200
//	go run ./bench/cmd/topobench --jd-keyspaces 19110 --phases watch --json
//	go run ./bench/cmd/topobench --phases keyspaces --ks-vtgates 25,50
//
// In the watch and storm phases etcd is embedded in the driver process
// (go.etcd.io/etcd/server/v3/embed); in the keyspaces phase it runs in a
// process of its own (the etcd binary, built at the version go.mod pins,
// internal/harness), fresh for every scenario, so that its
// CPU and RSS are its own. Either way it is one member at etcd's default
// limits, read through its Prometheus metrics endpoint: every number about
// etcd is a difference of two scrapes around a phase, or a gauge read
// during it (the keyspaces phase also reads etcd's /proc). topod runs as
// separate processes (built from this module with go build unless
// --topod-bin is given), so its CPU (utime+stime from /proc/PID/stat) and
// RSS (/proc/PID/status) are its own; every scenario gets fresh topod
// processes (with the topod flags given by --topod-flag), and each side's
// keys are removed from etcd before the next scenario.
//
// # Watch
//
// N watchers (--watchers, default 1,000), each with a connection of its own,
// watch the cell's SrvVSchema: on the etcd2 side each is an
// etcd2topo.NewServer, one etcd client each, as 1,000 vtgates have; on the
// topod side a topoplugin.NewConnWithCache, one gRPC connection each, with a
// blob cache per connection (or one shared cache when that would not fit in
// memory, --plugin-cache). A writer then changes one keyspace, --rounds
// times. For each change and watcher the driver takes the time from the start
// of the writer's Update until the watcher's topo.Conn returns that version
// (or a later one), contents and all: the plugin fetches the changed blobs
// and reassembles the whole file first. Scenarios:
//
//   - side by side, etcd2 and topod: the largest JD-profile SrvVSchema stock
//     etcd2 can store under etcd's 1.5 MiB request limit, found by searching
//     the sizes and confirmed by writing it through etcd2topo (about 240
//     keyspaces, 1.5 MiB);
//   - topod alone at JD scale (--jd-keyspaces, 1,911 keyspaces, 13.5 MiB),
//     once with N bare topod watch streams ("streams": a watcher has the
//     change when the record's new version arrives, so this is topod's
//     fan-out alone) and once with plugin watchers (--jd-plugin-watchers,
//     default 100: each reassembles 13.5 MiB per change on this machine's
//     cores, which 1,000 of them turn into minutes of CPU).
//
// # Read storm
//
// As in vitess#20465: C clients (--storm-clients, default 100) watch the
// SrvVSchema; on its change each reads every one of S shard records
// (--storm-shards, default 300, the JD profile's most sharded keyspaces), at
// most --storm-concurrency at a time (vtgate's --topo-read-concurrency). The
// driver reports the requests that reached etcd during the storm and the
// time from the change to the last read.
//
// Everything but topod shares the driver process and this machine's cores:
// the watchers' and etcd's CPU is the driver's, which the table reports too.
// --compare-uncached adds topod with --mirror-prefixes= (no in-memory mirror)
// to the side-by-side watch and the storm.
//
// # Keyspaces
//
// Vitess's real watch shape (issue 9), not in the default phases: a cell of
// K keyspaces (--ks-keyspaces, default 1,911, the JD profile), each with a
// SrvKeyspace (partitions for PRIMARY, REPLICA and RDONLY over the
// keyspace's JD shards), and a small SrvVSchema naming them, written with
// topo.Server's UpdateSrvKeyspace and UpdateSrvVSchema. N vtgate-like
// clients (--ks-vtgates, a list: each count is a scenario), each a
// topo.Server of its own, call topo.Server.WatchSrvKeyspace for every
// keyspace and WatchSrvVSchema once, as srvtopo does for vtgate's keyspace
// event watcher; --ks-stalled more clients open the same watches and never
// read them. Separately, the vttablet shape: every tablet of the JD profile
// at K keyspaces (--ks-tablets) watches its keyspace's SrvKeyspace and every
// primary its shard record (WatchShard), --ks-tablets-per-conn tablets to a
// topo.Server. Then one SrvKeyspace change (to the most sharded keyspace,
// --ks-one-rounds times, again once the stalled clients are open) and a
// burst of --ks-burst updates to different keyspaces, written one after the other by one
// writer. Each scenario runs on stock etcd2 and on topod, each on a fresh
// etcd process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
)

// stderr receives progress lines and etcd's error log.
var stderr io.Writer = os.Stderr

// config is what the flags set.
type config struct {
	Watchers         int
	Rounds           int
	StockKeyspaces   int // 0: the largest etcd2 can store
	JDKeyspaces      int // 0: no topod-only JD-scale watch
	JDClients        string
	JDPluginWatchers int // 0: Watchers
	CompareUncached  bool
	StormClients     int
	StormShards      int
	StormConcurrency int
	TopodReplicas    int
	TopodBin         string
	TopodFlags       []string
	Cache            string
	Cell             string
	Phases           string
	RoundTimeout     time.Duration
	JSON             bool
	Keep             bool

	// The keyspaces phase.
	KsKeyspaces       int
	KsVtgates         string
	KsVtgateCounts    []int // KsVtgates parsed
	KsSides           []string
	KsTablets         int // -1: the JD profile's tablets at KsKeyspaces; 0: no tablet shape
	KsTabletsPerConn  int
	KsBurst           int
	KsOneRounds       int
	KsStalled         int
	KsOpenConcurrency int
}

func defaultConfig() config {
	return config{
		Watchers:         1000,
		Rounds:           3,
		JDKeyspaces:      jd.JD().Keyspaces,
		JDClients:        "streams,plugin",
		JDPluginWatchers: 100,
		StormClients:     100,
		StormShards:      300,
		StormConcurrency: 32,
		TopodReplicas:    1,
		Cache:            cacheAuto,
		Cell:             "zone1",
		Phases:           "watch,storm",
		RoundTimeout:     2 * time.Minute,

		KsKeyspaces:       jd.JD().Keyspaces,
		KsSides:           []string{"etcd2", "topod", "etcd2-on-topod"},
		KsVtgates:         "50",
		KsTablets:         -1,
		KsTabletsPerConn:  50,
		KsBurst:           200,
		KsOneRounds:       20,
		KsStalled:         1,
		KsOpenConcurrency: 64,
	}
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func parseFlags(args []string) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("topobench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Watchers, "watchers", cfg.Watchers, "watchers of the SrvVSchema, each with its own connection")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "one-keyspace changes per watch scenario")
	fs.IntVar(&cfg.StockKeyspaces, "stock-keyspaces", cfg.StockKeyspaces, "keyspaces of the side-by-side SrvVSchema (JD profile sized); 0 = the largest stock etcd2 can store")
	fs.IntVar(&cfg.JDKeyspaces, "jd-keyspaces", cfg.JDKeyspaces, "keyspaces of the topod-only JD-scale watch (1911 = the JD profile, 19110 = 10x); 0 skips it")
	fs.StringVar(&cfg.JDClients, "jd-clients", cfg.JDClients, "watchers of the JD-scale watch, comma-separated: streams (bare topod watch streams: topod's fan-out alone), plugin (the topod plugin: fetch and reassemble too)")
	fs.IntVar(&cfg.JDPluginWatchers, "jd-plugin-watchers", cfg.JDPluginWatchers, "plugin watchers of the JD-scale watch (0 = --watchers): each reassembles 13.5 MiB per change on this machine's cores, 1,000 of them take minutes")
	fs.BoolVar(&cfg.CompareUncached, "compare-uncached", cfg.CompareUncached, "also run topod with --mirror-prefixes= (no mirror: every watch and read goes to etcd) in the side-by-side watch and the storm")
	fs.IntVar(&cfg.StormClients, "storm-clients", cfg.StormClients, "read storm: clients (vtgates)")
	fs.IntVar(&cfg.StormShards, "storm-shards", cfg.StormShards, "read storm: shard records each client reads")
	fs.IntVar(&cfg.StormConcurrency, "storm-concurrency", cfg.StormConcurrency, "read storm: reads in flight per client (vtgate's --topo-read-concurrency)")
	fs.IntVar(&cfg.TopodReplicas, "topod-replicas", cfg.TopodReplicas, "topod processes on the one etcd; clients spread over them")
	fs.StringVar(&cfg.TopodBin, "topod-bin", cfg.TopodBin, "topod binary to run (default: go build this module's ./cmd/topod into a temporary directory)")
	fs.Var((*stringList)(&cfg.TopodFlags), "topod-flag", "extra flag for every topod process, e.g. --topod-flag=--blob-cache-bytes=1073741824 (repeatable)")
	fs.StringVar(&cfg.Cache, "plugin-cache", cfg.Cache, "topod plugin blob caches of the watchers: separate (one per connection, as separate vtgates), shared (one for all, as connections of one process), or auto (separate unless watchers x SrvVSchema size > 4 GiB)")
	fs.StringVar(&cfg.Cell, "cell", cfg.Cell, "cell of the watched SrvVSchema")
	fs.StringVar(&cfg.Phases, "phases", cfg.Phases, "comma-separated phases to run: watch, storm, keyspaces (not run by default)")
	fs.IntVar(&cfg.KsKeyspaces, "ks-keyspaces", cfg.KsKeyspaces, "keyspaces: keyspaces of the cell (JD profile sized), each with a SrvKeyspace")
	fs.Func("ks-sides", "keyspaces: comma-separated sides to run: etcd2 (stock etcd2topo on etcd), topod (the plugin on topod), etcd2-on-topod (stock etcd2topo on topod's etcd endpoint) (default etcd2,topod,etcd2-on-topod)", func(v string) error {
		cfg.KsSides = nil
		for _, side := range strings.Split(v, ",") {
			if !slices.Contains([]string{"etcd2", "topod", "etcd2-on-topod"}, side) {
				return fmt.Errorf("unknown side %q", side)
			}
			cfg.KsSides = append(cfg.KsSides, side)
		}
		return nil
	})
	fs.StringVar(&cfg.KsVtgates, "ks-vtgates", cfg.KsVtgates, "keyspaces: vtgate-like clients, each a topo.Server of its own (its own connections) watching every SrvKeyspace and the SrvVSchema; a comma-separated list runs each count, e.g. 25,50")
	fs.IntVar(&cfg.KsTablets, "ks-tablets", cfg.KsTablets, "keyspaces: tablets of the vttablet shape (every tablet watches its keyspace's SrvKeyspace, primaries their shard record); -1 = the JD profile's tablets at --ks-keyspaces, 0 skips the vttablet shape")
	fs.IntVar(&cfg.KsTabletsPerConn, "ks-tablets-per-conn", cfg.KsTabletsPerConn, "keyspaces: tablets sharing one topo.Server (one connection pair) in the vttablet shape; 1 = a connection per tablet")
	fs.IntVar(&cfg.KsOneRounds, "ks-one-rounds", cfg.KsOneRounds, "keyspaces: times the one change is made, one after the other once the last was delivered everywhere; its p50/p99 are over every delivery of every round")
	fs.IntVar(&cfg.KsBurst, "ks-burst", cfg.KsBurst, "keyspaces: SrvKeyspace updates of the burst, one each to that many different keyspaces, written one after the other by one writer")
	fs.IntVar(&cfg.KsStalled, "ks-stalled", cfg.KsStalled, "keyspaces: extra vtgate-like clients that open every watch and never read their channels")
	fs.IntVar(&cfg.KsOpenConcurrency, "ks-open-concurrency", cfg.KsOpenConcurrency, "keyspaces: watches being opened at once, over all clients")
	fs.DurationVar(&cfg.RoundTimeout, "round-timeout", cfg.RoundTimeout, "how long a change may take to reach every watcher, and a storm to end")
	fs.BoolVar(&cfg.JSON, "json", cfg.JSON, "print the results as JSON instead of tables")
	fs.BoolVar(&cfg.Keep, "keep", cfg.Keep, "keep the temporary directory (etcd data, topod logs)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case cfg.Watchers < 1, cfg.Rounds < 1:
		return cfg, errors.New("--watchers and --rounds must be at least 1")
	case cfg.StormClients < 1, cfg.StormShards < 1, cfg.StormConcurrency < 1:
		return cfg, errors.New("--storm-clients, --storm-shards and --storm-concurrency must be at least 1")
	case cfg.TopodReplicas < 1:
		return cfg, errors.New("--topod-replicas must be at least 1")
	case cfg.StockKeyspaces < 0, cfg.JDKeyspaces < 0, cfg.JDPluginWatchers < 0:
		return cfg, errors.New("--stock-keyspaces, --jd-keyspaces and --jd-plugin-watchers cannot be negative")
	case cfg.StormShards > jd.JD().Shards:
		return cfg, fmt.Errorf("--storm-shards is at most %d (the JD profile's shards)", jd.JD().Shards)
	case cfg.KsKeyspaces < 1, cfg.KsBurst < 1, cfg.KsOneRounds < 1, cfg.KsTabletsPerConn < 1, cfg.KsOpenConcurrency < 1:
		return cfg, errors.New("--ks-keyspaces, --ks-burst, --ks-tablets-per-conn and --ks-open-concurrency must be at least 1")
	case cfg.KsStalled < 0, cfg.KsTablets < -1:
		return cfg, errors.New("--ks-stalled cannot be negative, --ks-tablets is at least -1")
	}
	cfg.KsVtgateCounts = nil
	for _, f := range strings.Split(cfg.KsVtgates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("--ks-vtgates: %q is not a positive count", f)
		}
		cfg.KsVtgateCounts = append(cfg.KsVtgateCounts, n)
	}
	switch cfg.Cache {
	case cacheAuto, cacheShared, cacheSeparate:
	default:
		return cfg, fmt.Errorf("--plugin-cache %q: want auto, shared or separate", cfg.Cache)
	}
	for _, c := range strings.Split(cfg.JDClients, ",") {
		if c != "streams" && c != "plugin" {
			return cfg, fmt.Errorf("--jd-clients: unknown client %q (want streams, plugin)", c)
		}
	}
	for _, p := range strings.Split(cfg.Phases, ",") {
		if p != "watch" && p != "storm" && p != "keyspaces" {
			return cfg, fmt.Errorf("--phases: unknown phase %q (want watch, storm, keyspaces)", p)
		}
	}
	return cfg, nil
}

func main() {
	// The etcd clients of etcd2topo log at info level by default (a refused
	// oversized write is logged as a warning, then returned as an error,
	// which the driver reports); keep them to errors unless told otherwise.
	if os.Getenv("ETCD_CLIENT_DEBUG") == "" {
		os.Setenv("ETCD_CLIENT_DEBUG", "error")
	}
	if isJD(os.Args[1:]) {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		err := runJD(ctx, os.Args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "topobench:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "topobench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if rep != nil {
		if cfg.JSON {
			err = errors.Join(err, rep.writeJSON(os.Stdout))
		} else {
			err = errors.Join(err, rep.writeText(os.Stdout))
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "topobench:", err)
		os.Exit(1)
	}
}

// env is what the phases share.
type env struct {
	cfg      config
	etcd     *etcdServer
	pid      int // the driver's
	dir      string
	topodBin string
	topods   int // topod clusters started so far
	// baseWatchers is etcd's watcher count with no client: phases wait for
	// it before starting.
	baseWatchers float64
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(stderr, "topobench: "+format+"\n", args...)
}

// run runs the phases cfg asks for. It returns what it measured so far even
// when a phase fails.
func run(ctx context.Context, cfg config) (*report, error) {
	dir, err := os.MkdirTemp("", "topobench-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		fmt.Fprintln(stderr, "topobench: keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	e := &env{cfg: cfg, pid: os.Getpid(), dir: dir, topodBin: cfg.TopodBin}
	if e.topodBin == "" {
		e.logf("building topod")
		if e.topodBin, err = harness.BuildTopod(ctx, dir, topodBuildFlags...); err != nil {
			return nil, err
		}
	}
	rep := &report{Started: time.Now().UTC(), GoMaxProcs: runtime.GOMAXPROCS(0), Cell: cfg.Cell}
	phases := strings.Split(cfg.Phases, ",")
	has := func(p string) bool {
		return slices.Contains(phases, p)
	}
	if has("watch") || has("storm") {
		if e.etcd, err = startEtcd(ctx, dir); err != nil {
			return nil, err
		}
		defer e.etcd.Close()
		m, err := e.etcd.scrape(ctx)
		if err != nil {
			return nil, err
		}
		e.baseWatchers = m.Watchers
	}
	if has("watch") {
		if err := e.watchPhase(ctx, rep); err != nil {
			return rep, err
		}
	}
	if has("storm") {
		if err := e.stormPhase(ctx, rep); err != nil {
			return rep, err
		}
	}
	if has("keyspaces") {
		if err := e.keyspacesPhase(ctx, rep); err != nil {
			return rep, err
		}
	}
	rep.Notes = append(rep.Notes, notes(rep)...)
	return rep, nil
}

// watchPhase runs the watch scenarios: etcd2 and topod at the largest size
// etcd2 can store, then topod alone at JD scale.
func (e *env) watchPhase(ctx context.Context, rep *report) error {
	cfg := e.cfg
	stock := &etcd2Side{endpoint: e.etcd.endpoint}
	n, note, err := e.stockKeyspaces(ctx, stock)
	if err != nil {
		return err
	}
	rep.StockKeyspaces, rep.StockNote = n, note
	e.logf("%s", note)
	scenario := func(s side, p jd.Profile, watchers int) watchScenario {
		return watchScenario{side: s, srv: p.SrvVSchema(), watchers: watchers, rounds: cfg.Rounds, timeout: cfg.RoundTimeout, cell: cfg.Cell}
	}
	stockProfile := jd.JD().Sized(n)

	if err := e.phase(ctx, stock, func() error {
		res, err := runWatch(ctx, e, scenario(stock, stockProfile, cfg.Watchers))
		if res != nil {
			rep.Watch = append(rep.Watch, res)
		}
		return err
	}); err != nil {
		return fmt.Errorf("watch, etcd2: %w", err)
	}
	type run struct {
		profile  jd.Profile
		watchers int
		streams  bool
		nocache  bool
	}
	runs := []run{{profile: stockProfile, watchers: cfg.Watchers}}
	if cfg.CompareUncached {
		runs = append(runs, run{profile: stockProfile, watchers: cfg.Watchers, nocache: true})
	}
	if cfg.JDKeyspaces > 0 {
		p := jdProfile(cfg.JDKeyspaces)
		for _, c := range strings.Split(cfg.JDClients, ",") {
			r := run{profile: p, watchers: cfg.Watchers, streams: c == "streams"}
			if !r.streams && cfg.JDPluginWatchers > 0 {
				r.watchers = cfg.JDPluginWatchers
			}
			runs = append(runs, r)
		}
	}
	for _, r := range runs {
		if err := e.withTopod(ctx, r.nocache, func(ts *topodSide) error {
			var s side = ts
			if r.streams {
				s = &topodStreamSide{ts}
			}
			res, err := runWatch(ctx, e, scenario(s, r.profile, r.watchers))
			if res != nil {
				rep.Watch = append(rep.Watch, res)
			}
			return err
		}); err != nil {
			return fmt.Errorf("watch, topod, %d keyspaces: %w", r.profile.Keyspaces, err)
		}
	}
	return nil
}

// stormPhase runs the read storm on etcd2, then on topod.
func (e *env) stormPhase(ctx context.Context, rep *report) error {
	cfg := e.cfg
	scenario := func(s side) stormScenario {
		return stormScenario{side: s, clients: cfg.StormClients, shards: cfg.StormShards, concurrency: cfg.StormConcurrency, cell: cfg.Cell, timeout: cfg.RoundTimeout}
	}
	stock := &etcd2Side{endpoint: e.etcd.endpoint}
	if err := e.phase(ctx, stock, func() error {
		res, err := runStorm(ctx, e, scenario(stock))
		if res != nil {
			rep.Storm = append(rep.Storm, res)
		}
		return err
	}); err != nil {
		return fmt.Errorf("storm, etcd2: %w", err)
	}
	variants := []bool{false}
	if cfg.CompareUncached {
		variants = append(variants, true)
	}
	for _, nocache := range variants {
		if err := e.withTopod(ctx, nocache, func(s *topodSide) error {
			res, err := runStorm(ctx, e, scenario(s))
			if res != nil {
				rep.Storm = append(rep.Storm, res)
			}
			return err
		}); err != nil {
			return fmt.Errorf("storm, %s: %w", sideLabel("topod", cfg.TopodReplicas), err)
		}
	}
	// Stock etcd2topo clients on topod's etcd endpoint: their default
	// (linearizable) reads are answered from topod's memory once a
	// batched revision request confirms it current.
	if err := e.withTopod(ctx, false, func(ts *topodSide) error {
		s := &etcd2TopodSide{cluster: ts.cluster}
		res, err := runStorm(ctx, e, scenario(s))
		if res != nil {
			rep.Storm = append(rep.Storm, res)
		}
		return errors.Join(err, e.etcd.deletePrefix(ctx, s.root()+"/"))
	}); err != nil {
		return fmt.Errorf("storm, %s: %w", sideLabel("etcd2-on-topod", cfg.TopodReplicas), err)
	}
	return nil
}

// phase runs fn once etcd has no watchers left from a previous phase, then
// removes the side's keys.
func (e *env) phase(ctx context.Context, s side, fn func() error) error {
	if err := e.etcd.waitWatchers(ctx, e.baseWatchers, 30*time.Second); err != nil {
		return err
	}
	err := fn()
	return errors.Join(err, e.etcd.deletePrefix(ctx, s.root()+"/"))
}

// withTopod runs fn with fresh topod replicas, stopped afterwards; nocache
// starts them with --mirror-prefixes= (no mirror).
func (e *env) withTopod(ctx context.Context, nocache bool, fn func(s *topodSide) error) error {
	if err := e.etcd.waitWatchers(ctx, e.baseWatchers, 30*time.Second); err != nil {
		return err
	}
	e.topods++
	flags := e.cfg.TopodFlags
	if nocache {
		flags = append(slices.Clone(flags), "--mirror-prefixes=")
	}
	c, err := startTopod(ctx, e.topodBin, e.etcd.endpoint, filepath.Join(e.dir, fmt.Sprintf("topod%d", e.topods)), e.cfg.TopodReplicas, flags)
	if err != nil {
		return err
	}
	s := &topodSide{cluster: c, cacheMode: e.cfg.Cache, nocache: nocache}
	err = fn(s)
	c.Stop()
	return errors.Join(err, e.etcd.deletePrefix(ctx, s.root()+"/"))
}

// jdProfile returns the JD profile at n keyspaces.
func jdProfile(n int) jd.Profile {
	if n == jd.JD().Keyspaces {
		return jd.JD()
	}
	return jd.JD().Sized(n)
}

// notes explain how to read the tables.
func notes(rep *report) []string {
	var out []string
	if rep.StockNote != "" {
		out = append(out, rep.StockNote)
	}
	streams := false
	for _, w := range rep.Watch {
		streams = streams || w.Side == "topod-streams"
	}
	if len(rep.Watch) > 0 {
		out = append(out,
			"delivery: per watcher and change, from the start of the writer's Update until the watcher's topo.Conn returned that version "+
				"with its full contents (the plugin fetches the changed blobs and reassembles the whole file first); p50/p99 over every watcher and change")
		if streams {
			out = append(out, "streams: bare topod Watch streams, one gRPC connection each, that have a change when the record's new version arrives "+
				"(no blobs fetched, nothing reassembled): topod's fan-out alone")
		}
		out = append(out, fmt.Sprintf("etcd, the writer and every watcher run in the driver process on this machine's %d cores (GOMAXPROCS=%d), "+
			"topod beside them: client-side work that N real vtgates do on N machines (etcd2: decoding each pushed copy; plugin: "+
			"fetching and reassembling) is done here on those cores, see the driver CPU row", runtime.NumCPU(), rep.GoMaxProcs))
	}
	if len(rep.Storm) > 0 {
		out = append(out, "storm requests: deltas of etcd's grpc_server_handled_total{grpc_service=\"etcdserverpb.KV\"} and etcd_mvcc_range_total "+
			"from just before the SrvVSchema change to the last read")
	}
	if len(rep.Keyspaces) > 0 {
		out = append(out, keyspacesNotes(rep)...)
	}
	return out
}
