package fleet

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
)

// EtcdRequestLimit is etcd's default maximum request size (1.5 MiB): stock
// etcd2 cannot store a SrvVSchema larger than this, less the key and the
// request's framing.
const EtcdRequestLimit = 1536 * 1024

// stockSpare is what the stock SrvVSchema leaves below EtcdRequestLimit:
// the key and framing, and the tables the vschema changes add.
const stockSpare = 32 << 10

// Layout is the topology a profile lays out, and what the clients need to
// know of it.
type Layout struct {
	P         Profile
	Names     []string                        // keyspace names
	Tablets   map[string][]*topodatapb.Tablet // by cell
	Shards    []jd.ShardRecord                // every shard
	tableCap  int                             // 0: every table
	SrvVSSize int                             // marshalled SrvVSchema bytes
	FullSize  int                             // ... with every table
	Note      string
}

// NewLayout returns the layout of p. If maxSrvVSchema > 0 the keyspaces'
// vschemas keep at most the first N tables (by name) each, the largest N
// whose SrvVSchema is at most maxSrvVSchema bytes: what stock etcd2 can
// store.
func NewLayout(p Profile, maxSrvVSchema int) *Layout {
	t := p.Topo
	l := &Layout{P: p, Tablets: map[string][]*topodatapb.Tablet{}}
	for i := range t.Keyspaces {
		l.Names = append(l.Names, t.KeyspaceName(i))
		l.Shards = append(l.Shards, t.KeyspaceShards(i)...)
	}
	for _, cell := range t.CellNames() {
		l.Tablets[cell] = t.CellTablets(cell)
	}
	kss := make([]*vschemapb.Keyspace, t.Keyspaces)
	maxTables := 0
	for i := range kss {
		_, kss[i] = t.Keyspace(i)
		maxTables = max(maxTables, len(kss[i].Tables))
	}
	rules := t.RoutingRules()
	size := func(tcap int) int {
		srv := &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{}, RoutingRules: rules}
		for i, ks := range kss {
			srv.Keyspaces[l.Names[i]] = truncate(ks, tcap)
		}
		return proto.Size(srv)
	}
	l.FullSize = size(0)
	l.SrvVSSize = l.FullSize
	if maxSrvVSchema > 0 && l.FullSize > maxSrvVSchema {
		lo, hi := 0, maxTables // size(lo) fits (with lo = 0 meaning no table: a vschema of vindexes only), size(hi) does not
		if size(1) > maxSrvVSchema {
			lo = 0
		}
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			if size(mid) <= maxSrvVSchema {
				lo = mid
			} else {
				hi = mid
			}
		}
		l.tableCap = max(lo, 1)
		l.SrvVSSize = size(l.tableCap)
		kept := 0
		for _, ks := range kss {
			kept += min(len(ks.Tables), l.tableCap)
		}
		l.Note = fmt.Sprintf("stock etcd2 cannot store this profile's SrvVSchema (%d keyspaces, %d tables, %.2f MiB, over etcd's %.1f MiB request limit): "+
			"its topology keeps at most %d tables per keyspace (the first by name; %d tables in all), a %.2f MiB SrvVSchema, the largest that fits with %d KiB to spare",
			t.Keyspaces, t.Tables, mib(l.FullSize), mib(EtcdRequestLimit), l.tableCap, kept, mib(l.SrvVSSize), stockSpare>>10)
	}
	return l
}

func mib(n int) float64 { return float64(n) / (1 << 20) }

// truncate returns ks with at most tcap tables (the first by name); tcap 0
// keeps them all.
func truncate(ks *vschemapb.Keyspace, tcap int) *vschemapb.Keyspace {
	if tcap <= 0 || len(ks.Tables) <= tcap {
		return ks
	}
	names := make([]string, 0, len(ks.Tables))
	for n := range ks.Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	out := &vschemapb.Keyspace{Sharded: ks.Sharded, Vindexes: ks.Vindexes, Tables: make(map[string]*vschemapb.Table, tcap)}
	for _, n := range names[:tcap] {
		out.Tables[n] = ks.Tables[n]
	}
	return out
}

// VSchema returns the vschema of keyspace i as laid out.
func (l *Layout) VSchema(i int) *vschemapb.Keyspace {
	_, ks := l.P.Topo.Keyspace(i)
	return truncate(ks, l.tableCap)
}

// Write lays the topology out through ts: the cells' CellInfos (cells),
// then jdtopo's keyspaces, shards, tablets, vschemas, routing rules,
// SrvKeyspaces and SrvVSchemas.
func (l *Layout) Write(ctx context.Context, ts *topo.Server, cells []Cell) error {
	for _, c := range cells {
		if err := ts.CreateCellInfo(ctx, c.Name, &topodatapb.CellInfo{ServerAddress: c.Addr, Root: c.Root}); err != nil {
			return fmt.Errorf("fleet: CreateCellInfo %s: %w", c.Name, err)
		}
	}
	if err := jdtopo.WriteWith(ctx, ts, l.P.Topo, jdtopo.Options{VSchema: l.VSchema, Concurrency: 32}); err != nil {
		return fmt.Errorf("fleet: lay out %s: %w", l.P.Name, err)
	}
	return nil
}

// ProbeKeyspace returns the keyspace the vschema changes edit: an unsharded
// keyspace whose vschema refers to no other (no sequences held), so that a
// change validates on its own.
func (l *Layout) ProbeKeyspace() int {
	t := l.P.Topo
	for i := range t.Keyspaces {
		if t.ShardCount(i) != 1 {
			continue
		}
		_, ks := t.Keyspace(i)
		plain := true
		for _, tb := range ks.Tables {
			if tb.Type != "" || tb.AutoIncrement != nil || tb.Source != "" {
				plain = false
				break
			}
		}
		if plain && len(ks.Vindexes) == 0 {
			return i
		}
	}
	return 0
}

// MostSharded returns the keyspace with the most shards.
func (l *Layout) MostSharded() int {
	best := 0
	for i := range l.P.Topo.Keyspaces {
		if l.P.Topo.ShardCount(i) > l.P.Topo.ShardCount(best) {
			best = i
		}
	}
	return best
}
