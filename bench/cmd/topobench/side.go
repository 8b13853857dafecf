package main

import (
	"context"
	"fmt"
	"path"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/topoplugin"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// side is one way of reaching etcd: stock Vitess etcd2topo directly, or the
// topod plugin through topod replicas.
type side interface {
	name() string
	// root is the side's topo root: its sides' keys never overlap.
	root() string
	replicas() int
	// prepare is called before a scenario whose clients read a file of
	// fileSize bytes through conns connections; it returns a description of
	// the client-side caching, if any.
	prepare(fileSize, conns int) string
	// dial opens a new client connection, as one more vtgate would.
	dial(root string) (topo.Conn, error)
	// dialWriter opens the connection of the scenario's writer.
	dialWriter(root string) (topo.Conn, error)
	// contents reports whether watchers get the file's contents (and the
	// driver can check their size).
	contents() bool
	// stats returns the CPU and memory of the side's own processes (none
	// for etcd2: etcd runs in the driver).
	stats() (harness.ProcStats, error)
}

// etcd2Side is Vitess's etcd2topo on the embedded etcd: every connection is
// its own etcd client (its own gRPC connection), as every vtgate has.
type etcd2Side struct {
	endpoint string
}

func (s *etcd2Side) name() string                              { return "etcd2" }
func (s *etcd2Side) root() string                              { return "/etcd2" }
func (s *etcd2Side) replicas() int                             { return 0 }
func (s *etcd2Side) prepare(int, int) string                   { return "" }
func (s *etcd2Side) stats() (harness.ProcStats, error)         { return harness.ProcStats{}, nil }
func (s *etcd2Side) contents() bool                            { return true }
func (s *etcd2Side) dialWriter(root string) (topo.Conn, error) { return s.dial(root) }

func (s *etcd2Side) dial(root string) (topo.Conn, error) {
	conn, err := etcd2topo.NewServer(s.endpoint, root)
	if err != nil {
		return nil, fmt.Errorf("etcd2topo.NewServer(%s, %s): %w", s.endpoint, root, err)
	}
	return conn, nil
}

// Plugin blob cache modes.
const (
	cacheAuto     = "auto"
	cacheSeparate = "separate"
	cacheShared   = "shared"
)

// separateCacheBudget is how much memory auto mode lets separate
// per-connection caches take, in total, before it shares one cache.
const separateCacheBudget = 4 << 30

// pluginCacheBytes bounds each plugin blob cache (the plugin's default).
const pluginCacheBytes = 512 << 20

// topodSide is the topod plugin talking to topod replicas on the same etcd.
// Every connection is its own gRPC connection. Blob caches are separate per
// connection, as in separate vtgates, unless that would not fit in memory
// (cacheMode): then they share one cache, as connections of one process do.
type topodSide struct {
	cluster   *harness.TopodProcs
	cacheMode string
	nocache   bool // topod runs with --mirror-prefixes= (no mirror)

	mode   string       // of the current scenario: cacheSeparate or cacheShared
	shared *cache.Cache // in cacheShared mode
}

func (s *topodSide) name() string {
	if s.nocache {
		return "topod-nocache"
	}
	return "topod"
}
func (s *topodSide) root() string { return "/topodplugin" } // not under /topod/, topod's own keys
func (s *topodSide) replicas() int {
	return s.cluster.Replicas()
}
func (s *topodSide) stats() (harness.ProcStats, error) { return s.cluster.Stats() }
func (s *topodSide) contents() bool                    { return true }

func (s *topodSide) prepare(fileSize, conns int) string {
	s.mode = s.cacheMode
	if s.mode == cacheAuto || s.mode == "" {
		s.mode = cacheSeparate
		if int64(fileSize)*int64(conns) > separateCacheBudget {
			s.mode = cacheShared
		}
	}
	s.shared = nil
	if s.mode == cacheShared {
		s.shared = cache.New(pluginCacheBytes)
		return fmt.Sprintf("one shared by the %d connections", conns)
	}
	return "one per connection"
}

func (s *topodSide) dial(root string) (topo.Conn, error) {
	c := s.shared
	if c == nil {
		c = cache.New(pluginCacheBytes)
	}
	return s.dialWith(root, c)
}

func (s *topodSide) dialWriter(root string) (topo.Conn, error) {
	return s.dialWith(root, cache.New(pluginCacheBytes))
}

func (s *topodSide) dialWith(root string, c *cache.Cache) (topo.Conn, error) {
	conn, err := topoplugin.NewConnWithCache(s.cluster.Addrs(), root, c)
	if err != nil {
		return nil, fmt.Errorf("topoplugin.NewConnWithCache(%s, %s): %w", s.cluster.Addrs(), root, err)
	}
	return conn, nil
}

// topodStreamSide watches through bare topod watch streams instead of the
// plugin: each watcher is its own gRPC connection and WatchStream (carrying
// its one watch), and
// counts as having seen a change when the record's new version arrives,
// without fetching its blobs or reassembling the file. It measures topod's
// fan-out alone; the writer is a plugin connection.
type topodStreamSide struct {
	*topodSide
}

func (s *topodStreamSide) name() string            { return "topod-streams" }
func (s *topodStreamSide) contents() bool          { return false }
func (s *topodStreamSide) prepare(int, int) string { return "none (no blobs fetched)" }

func (s *topodStreamSide) dial(root string) (topo.Conn, error) {
	cc, err := grpc.NewClient(s.cluster.Pick(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to topod: %w", err)
	}
	return &streamConn{root: root, cc: cc, client: topodv1.NewTopoClient(cc)}, nil
}

// streamConn is a topo.Conn of which only Watch and Close work: a bare
// topod watch stream reporting versions, with no contents.
type streamConn struct {
	topo.Conn // nil: every other method panics
	root      string
	cc        *grpc.ClientConn
	client    topodv1.TopoClient
}

func (c *streamConn) Close() { c.cc.Close() }

// Watch is part of topo.Conn: WatchData carry the version only.
func (c *streamConn) Watch(ctx context.Context, filePath string) (*topo.WatchData, <-chan *topo.WatchData, error) {
	p := path.Join(c.root, filePath)
	stream, err := c.client.WatchStream(ctx, grpc.WaitForReady(true))
	if err != nil {
		return nil, nil, fmt.Errorf("watch %s: %w", p, err)
	}
	create := &topodv1.WatchCreate{WatchId: 1, Path: p}
	if err := stream.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: create}}); err != nil {
		return nil, nil, fmt.Errorf("watch %s: %w", p, err)
	}
	// recv returns the next message of the watch (the stream carries no
	// other), or why it ended.
	var pending []*topodv1.WatchUpdate
	recv := func() (*topodv1.WatchResponse, error) {
		for {
			for len(pending) == 0 {
				msg, err := stream.Recv()
				if err != nil {
					return nil, err
				}
				pending = msg.Updates
			}
			u := pending[0]
			pending = pending[1:]
			if u.Response != nil {
				return u.Response, nil
			}
			if u.Ended {
				return nil, fmt.Errorf("watch ended: %v: %s", codes.Code(u.Code), u.Error)
			}
		}
	}
	var version int64 = -1
	for {
		msg, err := recv()
		if err != nil {
			return nil, nil, fmt.Errorf("watch %s: initial state: %w", p, err)
		}
		for _, ev := range msg.Events {
			if ev.Path == p && !ev.Deleted {
				version = ev.Version
			}
		}
		if !msg.Initial || msg.InitialComplete {
			break
		}
	}
	if version < 0 {
		return nil, nil, fmt.Errorf("watch %s: no initial version", p)
	}
	changes := make(chan *topo.WatchData, 10)
	go func() {
		defer close(changes)
		for {
			msg, err := recv()
			if err != nil {
				changes <- &topo.WatchData{Err: err}
				return
			}
			for _, ev := range msg.Events {
				if ev.Path == p && !ev.Deleted {
					changes <- &topo.WatchData{Version: topoplugin.Version(ev.Version)}
				}
			}
		}
	}()
	return &topo.WatchData{Version: topoplugin.Version(version)}, changes, nil
}

// etcd2TopodSide is Vitess's stock etcd2topo pointed at topod's etcd
// endpoint (what an official Vitess image does with
// --topo-implementation etcd2 and topod's address): every connection is
// its own etcd client, and topod serves them from its mirror.
type etcd2TopodSide struct {
	cluster *harness.TopodProcs
}

func (s *etcd2TopodSide) name() string                      { return "etcd2-on-topod" }
func (s *etcd2TopodSide) root() string                      { return "/etcd2topod" }
func (s *etcd2TopodSide) replicas() int                     { return s.cluster.Replicas() }
func (s *etcd2TopodSide) prepare(int, int) string           { return "" }
func (s *etcd2TopodSide) stats() (harness.ProcStats, error) { return s.cluster.Stats() }
func (s *etcd2TopodSide) contents() bool                    { return true }

// endpointMetrics scrapes the replicas' /metrics, for the etcd endpoint's
// own figures.
func (s *etcd2TopodSide) endpointMetrics(ctx context.Context) ([]harness.Metrics, error) {
	var out []harness.Metrics
	for _, u := range s.cluster.MetricsURLs() {
		m, err := harness.Scrape(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
func (s *etcd2TopodSide) dialWriter(root string) (topo.Conn, error) { return s.dial(root) }

func (s *etcd2TopodSide) dial(root string) (topo.Conn, error) {
	conn, err := etcd2topo.NewServer(s.cluster.Addrs(), root)
	if err != nil {
		return nil, fmt.Errorf("etcd2topo.NewServer(%s, %s): %w", s.cluster.Addrs(), root, err)
	}
	return conn, nil
}
