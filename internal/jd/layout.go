package jd

import (
	"cmp"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
)

// tabletUIDBase is the uid of the first tablet; uids are global, so they are
// unique across cells too ("zone1-0000000101" is the first tablet).
const tabletUIDBase = 101

// ksLayout is what the generator decides about one keyspace up front. The
// vschema, shards and tablets are derived from it on demand.
type ksLayout struct {
	shards      int // shard count
	tables      int // table count
	firstShard  int // index of the keyspace's first shard among all shards
	nameMul     int // table slot s is named from word pair (nameMul*s+nameOff) mod len(words)
	nameOff     int
	shardingCol string // the hash vindex column of a sharded keyspace

	// Sequences. For a sharded keyspace: its tables [0, seqCount) have
	// auto_increment from sequence tables in keyspace seqKeyspace. For the
	// unsharded keyspace holding them: its tables [0, seqCount) are those
	// sequences, for keyspace seqKeyspace.
	seqKeyspace int // -1 if none
	seqCount    int

	lookup     string // lookup vindex type on table 0, backed by the last table; "" if none
	refSlot    int    // table slot that is a reference table; -1 if none
	refSource  int    // keyspace of the reference table's source
	ruleSource int    // keyspace a MoveTables-style routing rule moves table 0 from; -1 if none
}

type layout struct {
	ks      []ksLayout
	ksNames []string
}

var layouts sync.Map // Profile -> *layout

// layout returns p's layout, computing it on first use. It panics if p is
// invalid.
func (p Profile) layout() *layout {
	if l, ok := layouts.Load(p); ok {
		return l.(*layout)
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	l, _ := layouts.LoadOrStore(p, p.computeLayout())
	return l.(*layout)
}

// The tier template of sharded keyspaces, from the JD profile: 1 keyspace of
// MaxShards shards, 3 of 64, ... and the rest of the extra shards in
// 2-shard keyspaces. Counts scale with the profile's extra shards (shards
// beyond one per keyspace); JD has 2,527.
var tierTemplate = []struct{ shards, jdCount int }{
	{0, 1}, // MaxShards
	{64, 3},
	{32, 10},
	{16, 30},
	{8, 80},
	{4, 150},
}

const jdExtraShards = JDShards - JDKeyspaces

// shardCounts returns the shard count of each keyspace in rank order (the
// largest first, all 1s at the end); they sum to p.Shards.
func (p Profile) shardCounts() []int {
	counts := make([]int, 0, p.Keyspaces)
	extra := p.Shards - p.Keyspaces
	remaining := extra
	for t, tier := range tierTemplate {
		c := tier.shards
		if t == 0 {
			c = p.MaxShards
		} else if c >= p.MaxShards {
			continue
		}
		if c < 2 {
			continue
		}
		n := int((int64(tier.jdCount)*int64(extra) + jdExtraShards/2) / jdExtraShards) // rounded
		if t == 0 && n == 0 && remaining >= c-1 {
			n = 1 // keep a largest keyspace whenever the profile allows one
		}
		n = min(n, remaining/(c-1))
		for range n {
			counts = append(counts, c)
		}
		remaining -= n * (c - 1)
	}
	if len(counts)+remaining > p.Keyspaces {
		// More extra shards than the template can place: fill keyspaces
		// to MaxShards, largest first. Validate guarantees this fits.
		counts = counts[:0]
		for remaining = extra; remaining > 0; {
			c := min(p.MaxShards, remaining+1)
			counts = append(counts, c)
			remaining -= c - 1
		}
	}
	for range remaining {
		counts = append(counts, 2)
	}
	for len(counts) < p.Keyspaces {
		counts = append(counts, 1)
	}
	return counts
}

// tableCounts returns the table count of each keyspace: roughly log-normal
// weights (log2 of the weight is a sum of four uniforms with a standard
// deviation of 2.2, so about 1/4.6 to 4.6 times the median within one
// deviation), allocated to sum exactly to p.Tables, with at least
// min(3, Tables/Keyspaces) each. Integer arithmetic only, so the result is the
// same on every platform.
func (p Profile) tableCounts(rng *rand.Rand) []int {
	k := p.Keyspaces
	weights := make([]uint64, k)
	var total uint64
	for i := range weights {
		u := 0 // sum of 4 uniforms on [-1024, 1024]: standard deviation 1182
		for range 4 {
			u += rng.IntN(2049) - 1024
		}
		l := u*2200/1182 + 16*1024 // log2 of the weight, in 1/1024ths: 16 +- 2.2
		weights[i] = uint64(1024+l%1024) << (l / 1024)
		total += weights[i]
	}
	floor := min(3, p.Tables/k)
	spread := uint64(p.Tables - floor*k)
	counts := make([]int, k)
	rems := make([]uint64, k)
	given := 0
	for i, w := range weights {
		hi, lo := bits.Mul64(spread, w)
		q, r := bits.Div64(hi, lo, total) // hi < total since w <= total
		counts[i] = floor + int(q)
		rems[i] = r
		given += counts[i]
	}
	// Hand out what the rounding down left over, largest remainders first.
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(rems[b], rems[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, i := range order[:p.Tables-given] {
		counts[i]++
	}
	return counts
}

// shardingColumns are the hash vindex columns of sharded keyspaces; "id"
// half the time.
var shardingColumns = []string{"id", "id", "id", "id", "id", "user_id", "shop_id", "order_id", "vendor_id", "sku_id"}

func (p Profile) computeLayout() *layout {
	rng := rand.New(rand.NewPCG(uint64(p.Seed), 0x6a64))
	l := &layout{ks: make([]ksLayout, p.Keyspaces), ksNames: make([]string, p.Keyspaces)}

	width := max(4, len(fmt.Sprint(p.Keyspaces)))
	for i := range l.ksNames {
		l.ksNames[i] = fmt.Sprintf("ks%0*d", width, i+1)
	}

	// Shard tiers, assigned to keyspaces by a seeded permutation.
	counts := p.shardCounts()
	perm := rng.Perm(p.Keyspaces)
	for rank, i := range perm {
		l.ks[i].shards = counts[rank]
	}
	first := 0
	for i := range l.ks {
		l.ks[i].firstShard = first
		first += l.ks[i].shards
	}

	tables := p.tableCounts(rng)
	for i := range l.ks {
		ks := &l.ks[i]
		ks.tables = tables[i]
		ks.nameMul = nameMultipliers[rng.IntN(len(nameMultipliers))]
		ks.nameOff = rng.IntN(len(words))
		ks.seqKeyspace, ks.refSlot, ks.refSource, ks.ruleSource = -1, -1, -1, -1
	}

	// Unsharded keyspaces that can hold sequences or be the source of a
	// reference table or routing rule (more than 4 tables, so that their
	// last table is never a sequence), used in order.
	var donors []int
	for i, ks := range l.ks {
		if ks.shards == 1 && ks.tables > 4 {
			donors = append(donors, i)
		}
	}
	nextDonor, rules := 0, 0

	// Features of sharded keyspaces. Each keyspace draws all of its dice,
	// so that one feature's availability does not shift the others.
	for i := range l.ks {
		ks := &l.ks[i]
		if ks.shards == 1 {
			continue
		}
		wantSeq := rng.IntN(100) < 25
		wantLookup := rng.IntN(100) < 10
		lookupType := [2]string{"lookup_unique", "consistent_lookup_unique"}[rng.IntN(2)]
		wantRef := rng.IntN(100) < 10
		wantRule := rng.IntN(100) < 2
		ks.shardingCol = shardingColumns[rng.IntN(len(shardingColumns))]

		free := ks.tables // slots [0, free) are ordinary tables
		if wantLookup && free >= 2 {
			ks.lookup = lookupType
			free-- // the last slot is the lookup table
		}
		if wantRef && free >= 2 && len(donors) > 0 {
			ks.refSlot = free - 1
			ks.refSource = donors[rng.IntN(len(donors))]
			free--
		}
		if wantSeq && nextDonor < len(donors) {
			holder := donors[nextDonor]
			nextDonor++
			n := min(4, free)
			ks.seqKeyspace, ks.seqCount = holder, n
			l.ks[holder].seqKeyspace, l.ks[holder].seqCount = i, n
		}
		if wantRule && rules < len(donors) {
			// Distinct sources, taken from the other end of the donors,
			// keep the rules' from-tables distinct.
			ks.ruleSource = donors[len(donors)-1-rules]
			rules++
		}
	}
	return l
}
