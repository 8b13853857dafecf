// Package jd generates the "JD profile": a deterministic, synthetic Vitess
// topology at the scale of the largest known Vitess deployment, as Vitess
// protos, for tests, benchmarks and demos.
//
// # The profile
//
// JD() is 1,911 keyspaces, 4,438 shards, 11,416 tablets, 552,104 tables and
// 8 cells. Scale(10) of it is 19,110 keyspaces and 5,521,040 tables; Sized(n)
// shrinks it to n keyspaces for tests. Every total of a Profile is met
// exactly. Its shape:
//
//   - Shards. Most keyspaces are unsharded, with the single shard "-". The
//     sharded ones follow a fixed tier template scaled to the profile's shard
//     total: for JD, 1 keyspace of 72 shards (MaxShards), 3 of 64, 10 of 32,
//     30 of 16, 80 of 8, 150 of 4 and 497 of 2 (771 sharded, 1,140
//     unsharded). Small profiles approximate it (a profile with fewer than 71
//     shards beyond one per keyspace cannot have a 72-shard keyspace). A sharded keyspace's shards split the keyrange evenly and
//     are named as Vitess names them ("-40", "40-80", "80-c0", "c0-"; see
//     key.GenerateShardRanges). Which keyspace gets which tier is a seeded
//     permutation, so large and small keyspaces are interleaved by name.
//   - Tablets. Every shard has the same number of tablets, give or take one
//     (JD: 2 or 3): a primary, replicas and, with three or more, one rdonly
//     tablet. Tablet j of the g-th shard overall lives in cell (g+j) mod
//     Cells, so primaries and their replicas are spread over the cells.
//   - Tables. Table counts per keyspace are skewed, roughly log-normal: for JD
//     the mean is 289 but the median keyspace has 100 tables, half have fewer
//     than 100, 123 have a thousand or more and the largest has 9,981.
//   - VSchema. The thinnest realistic one. A sharded keyspace has a "hash"
//     vindex and every table a primary column vindex on it (on "id", or a
//     keyspace-wide sharding key such as "user_id"); an unsharded keyspace
//     lists its tables with no vindexes. Sprinkled in, chosen by the seed:
//     sequences (a quarter of the sharded keyspaces have up to 4 tables with
//     auto_increment backed by sequence tables in an unsharded keyspace),
//     lookup vindexes (a tenth have a lookup_unique or
//     consistent_lookup_unique vindex on "email", owned by a table and backed
//     by a lookup table in the same keyspace), reference tables (a tenth have
//     one, sourced from an unsharded keyspace) and routing rules (about 2% of
//     the sharded keyspaces are the target of a MoveTables-style rule).
//     Everything passes Vitess's own vindexes.BuildKeyspace and
//     vindexes.BuildVSchema.
//
// Table names are valid identifiers built from words ("order_detail",
// "sku_price_3"); keyspace names are "ks0001", "ks0002", ...; cells are
// "zone1" ... "zone8".
//
// # Size
//
// The JD SrvVSchema marshals to 14,140,551 bytes (13.5 MiB). DESIGN.md's
// 17.6 MiB assumes a hash vindex on every table; here the 57% of the tables
// that live in unsharded keyspaces carry none, as in a real deployment. With
// one on every table this vschema would be 17.1 MiB (TestJD logs both). The
// 10x profile's is about 139 MB.
//
// # Determinism and cost
//
// The output is a pure function of the Profile (Seed included): the same
// Profile always yields equal protos, and byte-identical marshalled output
// with deterministic marshalling, on any platform (integer arithmetic only).
// A profile's layout (counts per keyspace, shard tiers, which keyspaces have
// sequences ...) is computed once per Profile value and kept for the life of
// the process; Keyspace(i), KeyspaceShards(i) and the other per-item helpers then cost
// time proportional to their output. Generating the whole JD SrvVSchema takes
// about 0.1 s and marshalling it 0.2 s. A Profile that fails Validate makes
// these methods panic.
package jd

import (
	"fmt"
	"math"
)

// Profile describes a synthetic topology by its totals. Its methods generate
// the topology deterministically from these fields alone.
type Profile struct {
	Keyspaces int // number of keyspaces
	Shards    int // total shards over all keyspaces (>= Keyspaces)
	Tablets   int // total tablets over all shards (>= Shards)
	Tables    int // total vschema tables over all keyspaces (>= Keyspaces)
	Cells     int // number of cells the tablets are spread over
	MaxShards int // shards of the largest keyspace
	Seed      int64
}

// The JD profile's totals.
const (
	JDKeyspaces = 1911
	JDShards    = 4438
	JDTablets   = 11416
	JDTables    = 552104
	JDCells     = 8
	JDMaxShards = 72
)

// JD returns the JD profile: 1,911 keyspaces, 4,438 shards, 11,416 tablets,
// 552,104 tables, 8 cells, 72 shards in the largest keyspace.
func JD() Profile {
	return Profile{
		Keyspaces: JDKeyspaces,
		Shards:    JDShards,
		Tablets:   JDTablets,
		Tables:    JDTables,
		Cells:     JDCells,
		MaxShards: JDMaxShards,
		Seed:      1,
	}
}

// Scale returns p with f times the keyspaces, shards, tablets and tables; the
// cells and the largest keyspace stay the same. JD().Scale(10) is the 10x
// profile: 19,110 keyspaces, 44,380 shards, 114,160 tablets, 5,521,040 tables.
func (p Profile) Scale(f int) Profile {
	p.Keyspaces *= f
	p.Shards *= f
	p.Tablets *= f
	p.Tables *= f
	return p
}

// Sized returns p scaled to n keyspaces: shards, tablets and tables are
// scaled proportionally (rounded, and raised where needed to keep the profile
// valid); cells, MaxShards and the seed stay. For small test topologies, such
// as JD().Sized(50) (50 keyspaces, 116 shards, 299 tablets, 14,445 tables).
func (p Profile) Sized(n int) Profile {
	if p.Keyspaces <= 0 || n <= 0 {
		p.Keyspaces = n
		return p // invalid either way; Validate says why
	}
	scale := func(x int) int {
		return int((int64(x)*int64(n) + int64(p.Keyspaces)/2) / int64(p.Keyspaces))
	}
	q := p
	q.Keyspaces = n
	q.Shards = max(n, scale(p.Shards))
	q.Tablets = max(q.Shards, scale(p.Tablets))
	q.Tables = max(n, scale(p.Tables))
	return q
}

// Validate reports whether the totals are consistent: at least one keyspace
// and cell, at least one shard and one table per keyspace, at least one
// tablet per shard, and no more shards than Keyspaces*MaxShards.
func (p Profile) Validate() error {
	switch {
	case p.Keyspaces < 1:
		return fmt.Errorf("jd: profile has %d keyspaces, want at least 1", p.Keyspaces)
	case p.Cells < 1:
		return fmt.Errorf("jd: profile has %d cells, want at least 1", p.Cells)
	case p.MaxShards < 1 || p.MaxShards > 65536:
		return fmt.Errorf("jd: profile has MaxShards %d, want 1 to 65536", p.MaxShards)
	case p.Shards < p.Keyspaces:
		return fmt.Errorf("jd: profile has %d shards for %d keyspaces, want at least one each", p.Shards, p.Keyspaces)
	case int64(p.Shards) > int64(p.Keyspaces)*int64(p.MaxShards):
		return fmt.Errorf("jd: profile has %d shards, more than %d keyspaces of at most %d", p.Shards, p.Keyspaces, p.MaxShards)
	case p.Tablets < p.Shards:
		return fmt.Errorf("jd: profile has %d tablets for %d shards, want at least one each", p.Tablets, p.Shards)
	case p.Tables < p.Keyspaces:
		return fmt.Errorf("jd: profile has %d tables for %d keyspaces, want at least one each", p.Tables, p.Keyspaces)
	case p.Tablets > math.MaxUint32-tabletUIDBase:
		return fmt.Errorf("jd: profile has %d tablets, too many for 32-bit tablet uids", p.Tablets)
	}
	return nil
}

// KeyspaceName returns the name of keyspace i (0 <= i < Keyspaces): "ks0001"
// for i = 0, with at least four digits.
func (p Profile) KeyspaceName(i int) string {
	p.checkKeyspace(i)
	return p.layout().ksNames[i]
}

// CellName returns the name of cell c (0 <= c < Cells): "zone1" for c = 0.
func (p Profile) CellName(c int) string {
	return fmt.Sprintf("zone%d", c+1)
}

// CellNames returns the names of all cells.
func (p Profile) CellNames() []string {
	names := make([]string, p.Cells)
	for c := range names {
		names[c] = p.CellName(c)
	}
	return names
}

// ShardCount returns the number of shards of keyspace i.
func (p Profile) ShardCount(i int) int {
	p.checkKeyspace(i)
	return p.layout().ks[i].shards
}

// TableCount returns the number of tables in the vschema of keyspace i.
func (p Profile) TableCount(i int) int {
	p.checkKeyspace(i)
	return p.layout().ks[i].tables
}

func (p Profile) checkKeyspace(i int) {
	if i < 0 || i >= p.Keyspaces {
		panic(fmt.Sprintf("jd: keyspace index %d out of range [0, %d)", i, p.Keyspaces))
	}
}
