package jd

import (
	"fmt"
	"strconv"
	"strings"

	"vitess.io/vitess/go/vt/key"
	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	"vitess.io/vitess/go/vt/proto/vttime"
)

// primaryTermStart is the (fixed, for determinism) start of every primary's
// term: 2024-01-01T00:00:00Z.
const primaryTermStart = 1704067200

// Ports of every generated tablet (each has its own host).
const (
	VTPort    = 15000
	GRPCPort  = 16000
	MySQLPort = 3306
)

// ShardRecord is one shard of the topology: the keyspace and shard names and
// the topo Shard record stored at keyspaces/<Keyspace>/shards/<Name>/Shard.
type ShardRecord struct {
	Keyspace string
	Name     string
	Shard    *topodatapb.Shard
}

// KeyspaceRecord returns the name and topo Keyspace record of keyspace i, as
// stored at keyspaces/<name>/Keyspace.
func (p Profile) KeyspaceRecord(i int) (name string, ks *topodatapb.Keyspace) {
	p.checkKeyspace(i)
	return p.layout().ksNames[i], &topodatapb.Keyspace{
		KeyspaceType:     topodatapb.KeyspaceType_NORMAL,
		DurabilityPolicy: "semi_sync",
	}
}

// ShardNames returns the shard names of keyspace i in keyrange order: "-"
// for an unsharded keyspace, else an even split such as "-40", "40-80",
// "80-c0", "c0-" (key.GenerateShardRanges).
func (p Profile) ShardNames(i int) []string {
	p.checkKeyspace(i)
	return shardNames(p.layout().ks[i].shards)
}

func shardNames(n int) []string {
	names, err := key.GenerateShardRanges(n, 0)
	if err != nil {
		panic(fmt.Sprintf("jd: key.GenerateShardRanges(%d): %v", n, err)) // Validate bounds n
	}
	return names
}

// keyRange returns the key range of a shard name, as topo.ValidateShardName
// computes it.
func keyRange(shard string) *topodatapb.KeyRange {
	start, end, _ := strings.Cut(shard, "-")
	kr, err := key.ParseKeyRangeParts(start, end)
	if err != nil {
		panic(fmt.Sprintf("jd: parse key range of shard %q: %v", shard, err))
	}
	return kr
}

// KeyspaceShards returns the shards of keyspace i, with key ranges, their primary's
// alias and a serving primary.
func (p Profile) KeyspaceShards(i int) []ShardRecord {
	p.checkKeyspace(i)
	l := p.layout()
	kl := &l.ks[i]
	names := shardNames(kl.shards)
	out := make([]ShardRecord, len(names))
	for j, name := range names {
		g := kl.firstShard + j
		out[j] = ShardRecord{
			Keyspace: l.ksNames[i],
			Name:     name,
			Shard: &topodatapb.Shard{
				PrimaryAlias:         p.tabletAlias(g, 0),
				PrimaryTermStartTime: &vttime.Time{Seconds: primaryTermStart},
				KeyRange:             keyRange(name),
				IsPrimaryServing:     true,
			},
		}
	}
	return out
}

// SrvKeyspace returns the name and serving keyspace record of keyspace i, as
// stored in every cell at keyspaces/<name>/SrvKeyspace: one partition per
// served tablet type (primary, replica, rdonly), each listing all shards.
func (p Profile) SrvKeyspace(i int) (name string, srv *topodatapb.SrvKeyspace) {
	p.checkKeyspace(i)
	names := p.ShardNames(i)
	srv = &topodatapb.SrvKeyspace{}
	for _, tt := range []topodatapb.TabletType{topodatapb.TabletType_PRIMARY, topodatapb.TabletType_REPLICA, topodatapb.TabletType_RDONLY} {
		part := &topodatapb.SrvKeyspace_KeyspacePartition{ServedType: tt}
		for _, shard := range names {
			part.ShardReferences = append(part.ShardReferences, &topodatapb.ShardReference{Name: shard, KeyRange: keyRange(shard)})
		}
		srv.Partitions = append(srv.Partitions, part)
	}
	return p.layout().ksNames[i], srv
}

// shardTablets returns the index of the first tablet of global shard g
// among all tablets, and its number of tablets: Tablets/Shards each, plus
// one for an evenly spread Tablets%Shards of the shards.
func (p Profile) shardTablets(g int) (first, n int) {
	s, base, rem := int64(p.Shards), int64(p.Tablets/p.Shards), int64(p.Tablets%p.Shards)
	at := func(g int64) int64 { return g*base + g*rem/s }
	return int(at(int64(g))), int(at(int64(g)+1) - at(int64(g)))
}

// tabletAlias returns the alias of tablet j of global shard g: in cell
// (g+j) mod Cells, with a uid unique over all cells.
func (p Profile) tabletAlias(g, j int) *topodatapb.TabletAlias {
	first, _ := p.shardTablets(g)
	return &topodatapb.TabletAlias{
		Cell: p.CellName((g + j) % p.Cells),
		Uid:  uint32(tabletUIDBase + first + j),
	}
}

// tabletType returns the type of tablet j of a shard of n tablets: the
// first is the primary, the last of three or more is rdonly, the others are
// replicas.
func tabletType(j, n int) topodatapb.TabletType {
	switch {
	case j == 0:
		return topodatapb.TabletType_PRIMARY
	case n >= 3 && j == n-1:
		return topodatapb.TabletType_RDONLY
	default:
		return topodatapb.TabletType_REPLICA
	}
}

// CellTablets returns the tablets in cell (a name from CellNames), in keyspace
// and shard order, as stored at tablets/<alias>/Tablet in that cell. It
// returns nil for an unknown cell.
func (p Profile) CellTablets(cell string) []*topodatapb.Tablet {
	c, err := strconv.Atoi(strings.TrimPrefix(cell, "zone"))
	if err != nil || c < 1 || c > p.Cells || p.CellName(c-1) != cell {
		return nil
	}
	c-- // index
	l := p.layout()
	out := make([]*topodatapb.Tablet, 0, p.Tablets/p.Cells+1)
	for i := range l.ks {
		kl := &l.ks[i]
		for j, shard := range shardNames(kl.shards) {
			g := kl.firstShard + j
			first, n := p.shardTablets(g)
			for t := range n {
				if (g+t)%p.Cells != c {
					continue
				}
				uid := uint32(tabletUIDBase + first + t)
				host := fmt.Sprintf("vttablet-%s-%010d", cell, uid)
				tablet := &topodatapb.Tablet{
					Alias:         &topodatapb.TabletAlias{Cell: cell, Uid: uid},
					Hostname:      host,
					PortMap:       map[string]int32{"vt": VTPort, "grpc": GRPCPort},
					Keyspace:      l.ksNames[i],
					Shard:         shard,
					KeyRange:      keyRange(shard),
					Type:          tabletType(t, n),
					MysqlHostname: host,
					MysqlPort:     MySQLPort,
				}
				if tablet.Type == topodatapb.TabletType_PRIMARY {
					tablet.PrimaryTermStartTime = &vttime.Time{Seconds: primaryTermStart}
				}
				out = append(out, tablet)
			}
		}
	}
	return out
}
