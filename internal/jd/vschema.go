package jd

import (
	"strconv"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
)

// Table names are word pairs, prefix_suffix: 40 x 25 = 1,000 of them. A
// keyspace with more tables repeats them with a numeric suffix
// ("order_detail_1"), as schemas split into numbered tables do. No word
// contains "_", a digit, "seq" or "lkp", so generated names never collide
// with each other or with the "_seq" and "_email_lkp" names derived from
// them.
var (
	prefixes = []string{
		"user", "order", "item", "sku", "product", "payment", "refund", "invoice",
		"coupon", "promo", "cart", "shop", "vendor", "stock", "warehouse", "shipment",
		"delivery", "address", "account", "balance", "ledger", "review", "comment", "price",
		"category", "brand", "member", "points", "message", "task", "contract", "settlement",
		"bill", "audit", "config", "device", "session", "supplier", "purchase", "region",
	}
	suffixes = []string{
		"info", "detail", "record", "log", "history", "snapshot", "relation", "mapping",
		"status", "line", "summary", "extend", "setting", "stat", "daily", "queue",
		"job", "flow", "index", "attr", "rule", "event", "change", "archive", "backup",
	}
	words = func() []string {
		w := make([]string, 0, len(prefixes)*len(suffixes))
		for _, p := range prefixes {
			for _, s := range suffixes {
				w = append(w, p+"_"+s)
			}
		}
		return w
	}()
	// nameMultipliers are the numbers coprime to len(words), so that
	// slot -> (m*slot + off) mod len(words) is a permutation.
	nameMultipliers = func() []int {
		var ms []int
		for m := 1; m < len(words); m++ {
			if gcd(m, len(words)) == 1 {
				ms = append(ms, m)
			}
		}
		return ms
	}()
)

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// tableName returns the name of table slot s of a keyspace, ignoring the
// special slots (sequences, lookup tables).
func (ks *ksLayout) tableName(s int) string {
	n := len(words)
	w := words[(ks.nameMul*(s%n)+ks.nameOff)%n]
	if rep := s / n; rep > 0 {
		return w + "_" + strconv.Itoa(rep)
	}
	return w
}

// Vindex names used by the generated vschemas.
const (
	hashVindex   = "hash"
	emailXXHash  = "email_xxhash"
	lookupColumn = "email"
)

// Keyspace returns the name and vschema of keyspace i (0 <= i < Keyspaces).
// Each call returns a new proto, which the caller may modify.
func (p Profile) Keyspace(i int) (name string, ks *vschemapb.Keyspace) {
	p.checkKeyspace(i)
	l := p.layout()
	kl := &l.ks[i]
	name = l.ksNames[i]
	ks = &vschemapb.Keyspace{Tables: make(map[string]*vschemapb.Table, kl.tables)}

	if kl.shards == 1 {
		for s := range kl.tables {
			if s < kl.seqCount {
				// This keyspace holds the sequences of keyspace seqKeyspace.
				owner := &l.ks[kl.seqKeyspace]
				ks.Tables[owner.tableName(s)+"_seq"] = &vschemapb.Table{Type: "sequence"}
				continue
			}
			ks.Tables[kl.tableName(s)] = &vschemapb.Table{}
		}
		return name, ks
	}

	ks.Sharded = true
	ks.Vindexes = map[string]*vschemapb.Vindex{hashVindex: {Type: "hash"}}
	var owner, lookupVindex, lookupTable string
	if kl.lookup != "" {
		owner = kl.tableName(0)
		lookupVindex = owner + "_" + lookupColumn
		lookupTable = owner + "_" + lookupColumn + "_lkp"
		ks.Vindexes[lookupVindex] = &vschemapb.Vindex{
			Type: kl.lookup,
			Params: map[string]string{
				"table": name + "." + lookupTable,
				"from":  lookupColumn,
				"to":    "keyspace_id",
			},
			Owner: owner,
		}
		ks.Vindexes[emailXXHash] = &vschemapb.Vindex{Type: "unicode_loose_xxhash"}
	}
	for s := range kl.tables {
		switch {
		case kl.lookup != "" && s == kl.tables-1:
			ks.Tables[lookupTable] = &vschemapb.Table{
				ColumnVindexes: []*vschemapb.ColumnVindex{{Column: lookupColumn, Name: emailXXHash}},
			}
			continue
		case s == kl.refSlot:
			src := &l.ks[kl.refSource]
			ks.Tables[kl.tableName(s)] = &vschemapb.Table{
				Type:   "reference",
				Source: l.ksNames[kl.refSource] + "." + src.tableName(src.tables-1),
			}
			continue
		}
		tname := kl.tableName(s)
		t := &vschemapb.Table{
			ColumnVindexes: []*vschemapb.ColumnVindex{{Column: kl.shardingCol, Name: hashVindex}},
		}
		if s < kl.seqCount {
			t.AutoIncrement = &vschemapb.AutoIncrement{
				Column:   "id",
				Sequence: l.ksNames[kl.seqKeyspace] + "." + tname + "_seq",
			}
		}
		if lookupVindex != "" && s == 0 {
			t.ColumnVindexes = append(t.ColumnVindexes, &vschemapb.ColumnVindex{Column: lookupColumn, Name: lookupVindex})
		}
		ks.Tables[tname] = t
	}
	return name, ks
}

// RoutingRules returns the profile's routing rules: for each keyspace chosen
// as the target of a MoveTables-style move, its first table routed from the
// source keyspace (and its @replica and @rdonly forms) to the target.
func (p Profile) RoutingRules() *vschemapb.RoutingRules {
	l := p.layout()
	rr := &vschemapb.RoutingRules{}
	for i := range l.ks {
		kl := &l.ks[i]
		if kl.ruleSource < 0 {
			continue
		}
		t := kl.tableName(0)
		from := l.ksNames[kl.ruleSource] + "." + t
		to := []string{l.ksNames[i] + "." + t}
		for _, suffix := range []string{"", "@replica", "@rdonly"} {
			rr.Rules = append(rr.Rules, &vschemapb.RoutingRule{FromTable: from + suffix, ToTables: to})
		}
	}
	return rr
}

// SrvVSchema returns the serving vschema of the whole profile, as Vitess
// keeps it in each cell's SrvVSchema file: every keyspace's vschema plus the
// routing rules, with empty shard routing and mirror rules as
// topo.Server.RebuildSrvVSchema writes them when there are none.
func (p Profile) SrvVSchema() *vschemapb.SrvVSchema {
	srv := &vschemapb.SrvVSchema{
		Keyspaces:         make(map[string]*vschemapb.Keyspace, p.Keyspaces),
		RoutingRules:      p.RoutingRules(),
		ShardRoutingRules: &vschemapb.ShardRoutingRules{},
		MirrorRules:       &vschemapb.MirrorRules{},
	}
	for i := range p.Keyspaces {
		name, ks := p.Keyspace(i)
		srv.Keyspaces[name] = ks
	}
	return srv
}
