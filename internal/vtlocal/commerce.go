package vtlocal

import (
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
)

// The sharded keyspace the demo and the end-to-end test run on real
// tablets: commerce, shards -80 and 80-, a primary and a replica each, and
// one table sharded by a hash of its key.
const (
	CommerceKeyspace = "commerce"
	// CommerceSchema creates the keyspace's table.
	CommerceSchema = "create table customer (customer_id bigint not null, email varchar(128), primary key (customer_id))"
)

// CommerceVSchema is the keyspace's vschema: customer rows are placed by a
// hash of customer_id.
func CommerceVSchema() *vschemapb.Keyspace {
	return &vschemapb.Keyspace{
		Sharded:  true,
		Vindexes: map[string]*vschemapb.Vindex{"hash": {Type: "hash"}},
		Tables: map[string]*vschemapb.Table{
			"customer": {ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "customer_id", Name: "hash"}}},
		},
	}
}

// CommerceShard is one shard of commerce: the tablet PlannedReparentShard
// makes primary and its replica.
type CommerceShard struct {
	Primary, Replica Tablet
}

// CommerceShards returns commerce's shards in cell, tablets numbered as in
// Vitess's local examples (uids 100 and 101 in -80, 200 and 201 in 80-),
// with the ports port(uid) gives.
func CommerceShards(cell string, port func(uid uint32) (http, grpc, mysql int)) []CommerceShard {
	tablet := func(uid uint32, shard string) Tablet {
		t := Tablet{Cell: cell, UID: uid, Keyspace: CommerceKeyspace, Shard: shard}
		t.Port, t.GRPCPort, t.MySQLPort = port(uid)
		return t
	}
	return []CommerceShard{
		{Primary: tablet(100, "-80"), Replica: tablet(101, "-80")},
		{Primary: tablet(200, "80-"), Replica: tablet(201, "80-")},
	}
}
