// Package vschemastore is the vschema service behind vschemad: keyspace
// vschemas and routing rules read, validated with Vitess's own vindexes
// and sqlparser packages, diffed and written to the global topology, then
// applied to each cell's SrvVSchema by changing only the changed
// keyspace's piece (compare-and-set, retried). It works on any
// topo.Server (topod, etcd2); over topod it changes a SrvVSchema at the
// record level (RecordConn) through the codec in package vschema.
//
// It is kept apart from the codec so that the topology server, which only
// needs the codec, does not link Vitess's query planner.
package vschemastore
