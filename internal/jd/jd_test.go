package jd

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"vitess.io/vitess/go/vt/key"
	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/sqlparser"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/topoproto"
	"vitess.io/vitess/go/vt/vtgate/vindexes"
)

var deterministic = proto.MarshalOptions{Deterministic: true}

func TestProfileTotals(t *testing.T) {
	jd := JD()
	want := Profile{Keyspaces: 1911, Shards: 4438, Tablets: 11416, Tables: 552104, Cells: 8, MaxShards: 72, Seed: 1}
	if jd != want {
		t.Fatalf("JD() = %+v, want %+v", jd, want)
	}
	x10 := jd.Scale(10)
	want10 := Profile{Keyspaces: 19110, Shards: 44380, Tablets: 114160, Tables: 5521040, Cells: 8, MaxShards: 72, Seed: 1}
	if x10 != want10 {
		t.Fatalf("JD().Scale(10) = %+v, want %+v", x10, want10)
	}
	small := jd.Sized(50)
	wantSmall := Profile{Keyspaces: 50, Shards: 116, Tablets: 299, Tables: 14445, Cells: 8, MaxShards: 72, Seed: 1}
	if small != wantSmall {
		t.Fatalf("JD().Sized(50) = %+v, want %+v", small, wantSmall)
	}
}

func TestValidate(t *testing.T) {
	ok := Profile{Keyspaces: 2, Shards: 3, Tablets: 3, Tables: 2, Cells: 1, MaxShards: 2}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	bad := []Profile{
		{},
		{Keyspaces: 2, Shards: 1, Tablets: 3, Tables: 2, Cells: 1, MaxShards: 2},
		{Keyspaces: 2, Shards: 5, Tablets: 5, Tables: 2, Cells: 1, MaxShards: 2},
		{Keyspaces: 2, Shards: 3, Tablets: 2, Tables: 2, Cells: 1, MaxShards: 2},
		{Keyspaces: 2, Shards: 3, Tablets: 3, Tables: 1, Cells: 1, MaxShards: 2},
		{Keyspaces: 2, Shards: 3, Tablets: 3, Tables: 2, Cells: 0, MaxShards: 2},
		{Keyspaces: 2, Shards: 3, Tablets: 3, Tables: 2, Cells: 1, MaxShards: 0},
	}
	for _, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
}

// checkLayout checks the totals and shard names that the layout alone
// determines: cheap even for the 10x profile.
func checkLayout(t *testing.T, p Profile) {
	t.Helper()
	shards, tables, largest := 0, 0, 0
	for i := range p.Keyspaces {
		n := p.ShardCount(i)
		shards += n
		tables += p.TableCount(i)
		largest = max(largest, n)
		if p.TableCount(i) < 1 {
			t.Fatalf("keyspace %d has %d tables", i, p.TableCount(i))
		}
	}
	if shards != p.Shards || tables != p.Tables {
		t.Fatalf("layout totals: %d shards, %d tables; want %d, %d", shards, tables, p.Shards, p.Tables)
	}
	if p.Shards-p.Keyspaces >= p.MaxShards-1 && largest != p.MaxShards {
		t.Fatalf("largest keyspace has %d shards, want %d", largest, p.MaxShards)
	}
	tablets := 0
	for g := range p.Shards {
		_, n := p.shardTablets(g)
		tablets += n
	}
	if tablets != p.Tablets {
		t.Fatalf("layout totals: %d tablets, want %d", tablets, p.Tablets)
	}
}

// checkTopo checks the generated shard and tablet records of p: totals, key
// ranges covering the keyspace, one primary per shard matching the shard
// record, unique aliases.
func checkTopo(t *testing.T, p Profile) {
	t.Helper()
	primaries := map[string]string{} // keyspace/shard -> primary alias
	shards := 0
	for i := range p.Keyspaces {
		recs := p.KeyspaceShards(i)
		shards += len(recs)
		var ranges []*topodatapb.KeyRange
		for _, r := range recs {
			name, kr, err := topo.ValidateShardName(r.Name)
			if err != nil || name != r.Name {
				t.Fatalf("shard %s/%s: ValidateShardName = %q, %v", r.Keyspace, r.Name, name, err)
			}
			if !proto.Equal(kr, r.Shard.KeyRange) {
				t.Fatalf("shard %s/%s: key range %v, Vitess says %v", r.Keyspace, r.Name, r.Shard.KeyRange, kr)
			}
			ranges = append(ranges, r.Shard.KeyRange)
			primaries[r.Keyspace+"/"+r.Name] = topoproto.TabletAliasString(r.Shard.PrimaryAlias)
		}
		// The shards tile the whole keyrange in order.
		for j := range ranges {
			if j == 0 && len(ranges[j].Start) != 0 || j == len(ranges)-1 && len(ranges[j].End) != 0 {
				t.Fatalf("keyspace %d: shards do not start and end at the keyrange ends: %v", i, p.ShardNames(i))
			}
			if j > 0 && !key.KeyRangeContiguous(ranges[j-1], ranges[j]) {
				t.Fatalf("keyspace %d: shards %d and %d are not contiguous: %v", i, j-1, j, p.ShardNames(i))
			}
		}
		if _, srv := p.SrvKeyspace(i); len(srv.Partitions) != 3 || len(srv.Partitions[0].ShardReferences) != len(recs) {
			t.Fatalf("keyspace %d: SrvKeyspace %v", i, srv)
		}
	}
	if shards != p.Shards {
		t.Fatalf("%d shard records, want %d", shards, p.Shards)
	}

	aliases := map[string]bool{}
	seenPrimary := map[string]bool{}
	types := map[topodatapb.TabletType]int{}
	for _, cell := range p.CellNames() {
		for _, tab := range p.CellTablets(cell) {
			a := topoproto.TabletAliasString(tab.Alias)
			if aliases[a] {
				t.Fatalf("duplicate tablet alias %s", a)
			}
			aliases[a] = true
			if tab.Alias.Cell != cell {
				t.Fatalf("CellTablets(%s) returned %s", cell, a)
			}
			types[tab.Type]++
			ksShard := tab.Keyspace + "/" + tab.Shard
			want, ok := primaries[ksShard]
			if !ok {
				t.Fatalf("tablet %s in unknown shard %s", a, ksShard)
			}
			if tab.Type == topodatapb.TabletType_PRIMARY {
				if a != want {
					t.Fatalf("tablet %s is primary of %s, the shard record says %s", a, ksShard, want)
				}
				seenPrimary[ksShard] = true
			}
		}
	}
	if len(aliases) != p.Tablets {
		t.Fatalf("%d tablets, want %d", len(aliases), p.Tablets)
	}
	if len(seenPrimary) != p.Shards || types[topodatapb.TabletType_PRIMARY] != p.Shards {
		t.Fatalf("%d primaries in %d shards, want one per shard (%d)", types[topodatapb.TabletType_PRIMARY], len(seenPrimary), p.Shards)
	}
	if p.CellTablets(fmt.Sprint("zone", p.Cells+1)) != nil || p.CellTablets("nowhere") != nil {
		t.Fatal("CellTablets of an unknown cell is not nil")
	}
	t.Logf("%d tablets: %v", len(aliases), types)
}

// features counts the variety sprinkled into a vschema.
type features struct {
	sharded, tables, vindexTables, sequences, autoInc, lookups, references, routingRules int
}

// checkVSchema checks srv against p's totals and builds it with Vitess's
// vindexes package, failing on any error.
func checkVSchema(t *testing.T, p Profile, srv *vschemapb.SrvVSchema) features {
	t.Helper()
	var f features
	if len(srv.Keyspaces) != p.Keyspaces {
		t.Fatalf("%d keyspaces, want %d", len(srv.Keyspaces), p.Keyspaces)
	}
	for name, ks := range srv.Keyspaces {
		if err := topo.ValidateKeyspaceName(name); err != nil {
			t.Fatalf("keyspace name %q: %v", name, err)
		}
		if ks.Sharded {
			f.sharded++
		}
		f.tables += len(ks.Tables)
		for _, tab := range ks.Tables {
			if len(tab.ColumnVindexes) > 0 {
				f.vindexTables++
			}
			if tab.Type == "sequence" {
				f.sequences++
			}
			if tab.Type == "reference" {
				f.references++
			}
			if tab.AutoIncrement != nil {
				f.autoInc++
			}
		}
		for _, v := range ks.Vindexes {
			if strings.Contains(v.Type, "lookup") {
				f.lookups++
			}
		}
	}
	f.routingRules = len(srv.RoutingRules.GetRules())
	if f.tables != p.Tables {
		t.Fatalf("%d tables, want %d", f.tables, p.Tables)
	}

	parser := sqlparser.NewTestParser()
	vs := vindexes.BuildVSchema(srv, parser)
	for name, ks := range vs.Keyspaces {
		if ks.Error != nil {
			t.Fatalf("vindexes.BuildVSchema: keyspace %s: %v", name, ks.Error)
		}
		if got, want := len(ks.Tables), len(srv.Keyspaces[name].Tables); got != want {
			t.Fatalf("vindexes.BuildVSchema: keyspace %s has %d tables, want %d", name, got, want)
		}
	}
	for from, rr := range vs.RoutingRules {
		if rr.Error != nil {
			t.Fatalf("vindexes.BuildVSchema: routing rule %s: %v", from, rr.Error)
		}
	}
	if len(vs.RoutingRules) != f.routingRules {
		t.Fatalf("vindexes.BuildVSchema: %d routing rules, want %d", len(vs.RoutingRules), f.routingRules)
	}
	for name, ks := range srv.Keyspaces {
		if _, err := vindexes.BuildKeyspace(ks, parser); err != nil {
			t.Fatalf("vindexes.BuildKeyspace(%s): %v", name, err)
		}
	}
	return f
}

// TestSmallProfiles generates small and extreme profiles in full and checks
// everything about them.
func TestSmallProfiles(t *testing.T) {
	tests := []Profile{
		JD().Sized(1),
		JD().Sized(10),
		JD().Sized(50),
		JD().Sized(200),
		{Keyspaces: 5, Shards: 5, Tablets: 5, Tables: 5, Cells: 1, MaxShards: 72, Seed: 3},               // all unsharded, minimal
		{Keyspaces: 5, Shards: 360, Tablets: 1000, Tables: 50, Cells: 3, MaxShards: 72, Seed: 4},         // all at MaxShards
		{Keyspaces: 30, Shards: 100, Tablets: 400, Tables: 3000, Cells: 2, MaxShards: 256, Seed: 5},      // wide shards
		{Keyspaces: 40, Shards: 300, Tablets: 301, Tables: 12000, Cells: 8, MaxShards: 16, Seed: 6},      // template overflow
		{Keyspaces: 3, Shards: 3 * 300, Tablets: 900, Tables: 3, Cells: 8, MaxShards: 300, Seed: 7},      // 4-hex-digit shard names
		{Keyspaces: 100, Shards: 232, Tablets: 600, Tables: 100 * 289, Cells: 8, MaxShards: 72, Seed: 8}, // JD-like density
	}
	for _, p := range tests {
		t.Run(fmt.Sprintf("%d-%d-%d-%d-%d-%d", p.Keyspaces, p.Shards, p.Tablets, p.Tables, p.Cells, p.MaxShards), func(t *testing.T) {
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			checkLayout(t, p)
			checkTopo(t, p)
			f := checkVSchema(t, p, p.SrvVSchema())
			t.Logf("%+v", f)
		})
	}
}

func TestJD(t *testing.T) {
	p := JD()
	checkLayout(t, p)
	checkTopo(t, p)

	start := time.Now()
	srv := p.SrvVSchema()
	gen := time.Since(start)
	start = time.Now()
	data, err := srv.MarshalVT() // as topo.Server.UpdateSrvVSchema does
	if err != nil {
		t.Fatal(err)
	}
	marshal := time.Since(start)

	f := checkVSchema(t, p, srv)
	if f.sequences == 0 || f.autoInc != f.sequences || f.lookups == 0 || f.references == 0 || f.routingRules == 0 {
		t.Fatalf("missing variety: %+v", f)
	}
	t.Logf("JD SrvVSchema: %d bytes (%.2f MiB); generated in %v, marshalled in %v", len(data), mib(len(data)), gen.Round(time.Millisecond), marshal.Round(time.Millisecond))
	t.Logf("%d keyspaces (%d sharded), %d tables (%d with vindexes), %d sequences, %d lookup vindexes, %d reference tables, %d routing rules",
		len(srv.Keyspaces), f.sharded, f.tables, f.vindexTables, f.sequences, f.lookups, f.references, f.routingRules)

	// What the file would be if every table carried a hash vindex on "id",
	// the assumption behind DESIGN.md's 17.6 MiB.
	for _, ks := range srv.Keyspaces {
		for _, tab := range ks.Tables {
			if len(tab.ColumnVindexes) == 0 {
				tab.ColumnVindexes = []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}
			}
		}
	}
	allVindex := proto.Size(srv)
	t.Logf("with a hash vindex on every table it would be %d bytes (%.2f MiB)", allVindex, mib(allVindex))

	// Skew of the table counts.
	counts := make([]int, p.Keyspaces)
	for i := range counts {
		counts[i] = p.TableCount(i)
	}
	sort.Ints(counts)
	over1000 := len(counts) - sort.SearchInts(counts, 1000)
	under100 := sort.SearchInts(counts, 100)
	t.Logf("tables per keyspace: min %d, median %d, p90 %d, max %d; %d keyspaces with >= 1000, %d with < 100",
		counts[0], counts[len(counts)/2], counts[len(counts)*9/10], counts[len(counts)-1], over1000, under100)
	if counts[len(counts)-1] < 2000 || under100 < p.Keyspaces/4 {
		t.Fatalf("table counts are not skewed enough")
	}
	if mb := mib(len(data)); mb < 12 || mb > 20 {
		t.Fatalf("JD SrvVSchema is %.2f MiB, far from the expected 14-18", mb)
	}
}

func mib(n int) float64 { return float64(n) / (1 << 20) }

func TestDeterminism(t *testing.T) {
	p := JD().Sized(300)
	a, err := deterministic.Marshal(p.SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	// A fresh layout, not the memoized one.
	if l1, l2 := p.computeLayout(), p.computeLayout(); !reflect.DeepEqual(l1, l2) {
		t.Fatal("two layouts of one profile differ")
	}
	layouts.Delete(p)
	b, err := deterministic.Marshal(p.SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("same profile, different marshalled SrvVSchema")
	}
	for _, cell := range p.CellNames() {
		if !slices.EqualFunc(p.CellTablets(cell), p.CellTablets(cell), func(x, y *topodatapb.Tablet) bool { return proto.Equal(x, y) }) {
			t.Fatalf("CellTablets(%s) differs between calls", cell)
		}
	}

	q := p
	q.Seed++
	c, err := deterministic.Marshal(q.SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Fatal("different seeds, same SrvVSchema")
	}

	// The full JD profile too: byte-identical across two generations.
	if testing.Short() || raceEnabled {
		t.Log("-short or -race: not regenerating the full JD profile")
		return
	}
	jd := JD()
	x, err := deterministic.Marshal(jd.SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	y, err := deterministic.Marshal(jd.SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatal("JD SrvVSchema differs between generations")
	}
}

// TestScale10 checks the 10x profile's totals from its layout, and, unless
// -short or -race, generates every keyspace's vschema one at a time (5.5 M
// tables; the whole SrvVSchema at once needs a few GiB).
func TestScale10(t *testing.T) {
	p := JD().Scale(10)
	checkLayout(t, p)
	if testing.Short() || raceEnabled {
		t.Skip("-short or -race: not generating 5.5 M tables")
	}
	start := time.Now()
	tables, size := 0, 0
	for i := range p.Keyspaces {
		name, ks := p.Keyspace(i)
		tables += len(ks.Tables)
		size += proto.Size(&vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{name: ks}})
	}
	if tables != p.Tables {
		t.Fatalf("%d tables, want %d", tables, p.Tables)
	}
	t.Logf("10x: %d keyspaces, %d tables, SrvVSchema about %d bytes (%.1f MiB), generated keyspace by keyspace in %v",
		p.Keyspaces, tables, size, mib(size), time.Since(start).Round(time.Millisecond))
}

func BenchmarkJDSrvVSchema(b *testing.B) {
	p := JD()
	p.SrvVSchema() // layout
	var size int
	for b.Loop() {
		data, err := p.SrvVSchema().MarshalVT()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "bytes")
}

func BenchmarkJDKeyspace(b *testing.B) {
	p := JD()
	p.Keyspace(0) // layout
	for i := 0; b.Loop(); i++ {
		p.Keyspace(i % p.Keyspaces)
	}
}

// TestConcurrentUse generates one fresh profile from several goroutines at
// once (the layout is computed and memoized concurrently); with -race it
// checks the memoization, and all goroutines must see the same output.
func TestConcurrentUse(t *testing.T) {
	p := JD().Sized(40)
	p.Seed = 424242 // a profile no other test has laid out
	const n = 4
	out := make([][]byte, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			data, err := deterministic.Marshal(p.SrvVSchema())
			if err != nil {
				t.Error(err)
			}
			out[g] = data
			p.CellTablets(p.CellName(g % p.Cells))
		})
	}
	wg.Wait()
	for g := 1; g < n; g++ {
		if !bytes.Equal(out[0], out[g]) {
			t.Fatalf("goroutine %d generated a different SrvVSchema", g)
		}
	}
}
