// Package vschematest starts the Vitess topologies that the vschema
// service is tested against, in-process and real: topod on bolt, topod on a
// real etcd, and Vitess's stock etcd2 on a real etcd. Each comes with its
// cells registered (or none, Options.NoCells) and, optionally, a
// byte-counting proxy in front of the topology server, so that a test can
// measure what a client reads and writes. OpenFaulty opens a client of one
// whose operations fail where the test says.
package vschematest

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo" // the etcd2 implementation

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	_ "github.com/topod-io/topod/pkg/topoplugin" // the topod implementation
	"github.com/topod-io/topod/pkg/toposerver"
)

// GlobalRoot is the global root of every topology started here; cell c's
// root is /vitess/c.
const GlobalRoot = "/vitess/global"

// Options adjust a topology.
type Options struct {
	// Cells to register (default zone1 and zone2).
	Cells []string
	// NoCells registers no cell at all: the global topology has no cells
	// directory, as a new topology before its first AddCellInfo.
	NoCells bool
	// Proxy puts a byte-counting proxy in front of the topology server:
	// every connection (global and cells) goes through it.
	Proxy bool
	// Etcd options for the topologies on etcd.
	Etcd []harness.EtcdOption
}

// Topology is a running topology with its cells registered.
type Topology struct {
	Kind string // "topod-bolt", "topod-etcd" or "etcd2"
	// Impl, Addr and Root are the --topo-implementation,
	// --topo-global-server-address and --topo-global-root of a client.
	Impl, Addr, Root string
	TS               *topo.Server
	Cells            []string
	Etcd             *harness.Etcd  // nil for bolt
	Topod            *harness.Topod // nil for etcd2
	Proxy            *Proxy         // nil without Options.Proxy
}

// Kind starts a topology of one kind.
type Kind struct {
	Name  string
	Start func(tb testing.TB, opts Options) *Topology
}

// Kinds are the three topologies every vschema test runs against.
var Kinds = []Kind{
	{"topod-bolt", StartTopodBolt},
	{"topod-etcd", StartTopodEtcd},
	{"etcd2", StartEtcd2},
}

// StartTopodBolt starts topod on a bolt file.
func StartTopodBolt(tb testing.TB, opts Options) *Topology {
	tb.Helper()
	b, err := boltkv.Open(filepath.Join(tb.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		tb.Fatalf("vschematest: open bolt: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return startTopod(tb, "topod-bolt", b, nil, opts)
}

// StartTopodEtcd starts topod on a one-member etcd cluster.
func StartTopodEtcd(tb testing.TB, opts Options) *Topology {
	tb.Helper()
	cluster := harness.StartEtcd(tb, 1, opts.Etcd...)
	b, err := etcdkv.Open(context.Background(), cluster.Endpoints(), etcdkv.Options{})
	if err != nil {
		tb.Fatalf("vschematest: open etcd backend: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return startTopod(tb, "topod-etcd", b, cluster, opts)
}

func startTopod(tb testing.TB, kind string, backend kv.Backend, cluster *harness.Etcd, opts Options) *Topology {
	tb.Helper()
	srv := harness.StartTopod(tb, backend, toposerver.Options{})
	t := &Topology{Kind: kind, Impl: "topod", Addr: srv.Addr, Root: GlobalRoot, Etcd: cluster, Topod: srv}
	if opts.Proxy {
		t.Proxy = StartProxy(tb, srv.Addr)
		t.Addr = t.Proxy.Addr
	}
	t.open(tb, opts)
	return t
}

// StartEtcd2 starts a one-member etcd cluster and opens it with Vitess's
// etcd2 implementation.
func StartEtcd2(tb testing.TB, opts Options) *Topology {
	tb.Helper()
	cluster := harness.StartEtcd(tb, 1, opts.Etcd...)
	t := &Topology{Kind: "etcd2", Impl: "etcd2", Root: GlobalRoot, Etcd: cluster}
	addrs := cluster.Endpoints()
	if opts.Proxy {
		t.Proxy = StartProxy(tb, strings.TrimPrefix(strings.TrimPrefix(addrs[0], "http://"), "https://"))
		addrs = []string{t.Proxy.Addr}
	}
	t.Addr = strings.Join(addrs, ",")
	t.open(tb, opts)
	return t
}

// open opens the topo.Server and registers the cells.
func (t *Topology) open(tb testing.TB, opts Options) {
	tb.Helper()
	ts, err := topo.OpenServer(t.Impl, t.Addr, t.Root)
	if err != nil {
		tb.Fatalf("vschematest: open %s topology at %s: %v", t.Impl, t.Addr, err)
	}
	tb.Cleanup(ts.Close)
	t.TS = ts
	cells := opts.Cells
	switch {
	case opts.NoCells:
		cells = nil
	case len(cells) == 0:
		cells = []string{"zone1", "zone2"}
	}
	for _, cell := range cells {
		t.AddCell(tb, cell)
	}
}

// AddCell registers cell (its root is /vitess/CELL), as vtctldclient
// AddCellInfo does, and adds it to t.Cells.
func (t *Topology) AddCell(tb testing.TB, cell string) {
	tb.Helper()
	if err := t.TS.CreateCellInfo(context.Background(), cell, &topodatapb.CellInfo{
		ServerAddress: t.Addr,
		Root:          path.Join(path.Dir(GlobalRoot), cell),
	}); err != nil {
		tb.Fatalf("vschematest: create cell %s: %v", cell, err)
	}
	t.Cells = append(t.Cells, cell)
}

// CreateKeyspaces creates the keyspace records of names, as vtctldclient
// CreateKeyspace does (without a vschema).
func (t *Topology) CreateKeyspaces(tb testing.TB, names ...string) {
	tb.Helper()
	for _, name := range names {
		if err := t.TS.CreateKeyspace(context.Background(), name, &topodatapb.Keyspace{}); err != nil && !topo.IsErrType(err, topo.NodeExists) {
			tb.Fatalf("vschematest: create keyspace %s: %v", name, err)
		}
	}
}

// Open opens another topo.Server on the same topology (a second client).
func (t *Topology) Open(tb testing.TB) *topo.Server {
	tb.Helper()
	ts, err := topo.OpenServer(t.Impl, t.Addr, t.Root)
	if err != nil {
		tb.Fatalf("vschematest: open %s topology: %v", t.Impl, err)
	}
	tb.Cleanup(ts.Close)
	return ts
}

// QuietVitessLogs sends Vitess's own logging below warnings nowhere: topo
// events (keyspace created, ...) would otherwise flood test output.
func QuietVitessLogs() {
	log.SwapLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// Snapshot is every keyspace's vschema and every cell's SrvVSchema, as
// stored, with their versions: equal snapshots mean nothing was written.
type Snapshot struct {
	VSchemas map[string]string // keyspace -> version and contents
	Cells    map[string]string // cell -> version and contents
	Rules    map[string]string // rules file -> version and contents
}

// Snapshot reads the topology's vschemas, rules and SrvVSchemas.
func (t *Topology) Snapshot(tb testing.TB) Snapshot {
	tb.Helper()
	ctx := context.Background()
	snap := Snapshot{VSchemas: map[string]string{}, Cells: map[string]string{}, Rules: map[string]string{}}
	names, err := t.TS.GetKeyspaces(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	global, err := t.TS.ConnForCell(ctx, topo.GlobalCell)
	if err != nil {
		tb.Fatal(err)
	}
	get := func(conn topo.Conn, p string) (string, bool) {
		data, v, err := conn.Get(ctx, p)
		if topo.IsErrType(err, topo.NoNode) {
			return "", false
		}
		if err != nil {
			tb.Fatalf("vschematest: snapshot: get %s: %v", p, err)
		}
		return v.String() + ":" + string(data), true
	}
	for _, name := range names {
		if s, ok := get(global, path.Join(topo.KeyspacesPath, name, topo.VSchemaFile)); ok {
			snap.VSchemas[name] = s
		}
	}
	for _, f := range []string{topo.RoutingRulesFile, topo.ShardRoutingRulesFile, t.TS.GetKeyspaceRoutingRulesPath(), topo.MirrorRulesFile} {
		if s, ok := get(global, f); ok {
			snap.Rules[f] = s
		}
	}
	for _, cell := range t.Cells {
		conn, err := t.TS.ConnForCell(ctx, cell)
		if err != nil {
			tb.Fatal(err)
		}
		if s, ok := get(conn, topo.SrvVSchemaFile); ok {
			snap.Cells[cell] = s
		}
	}
	return snap
}

// Equal reports whether two snapshots are the same.
func (s Snapshot) Equal(o Snapshot) bool {
	return maps.Equal(s.VSchemas, o.VSchemas) && maps.Equal(s.Cells, o.Cells) && maps.Equal(s.Rules, o.Rules)
}
