// Package faults is topod's fault suite: a workload of Vitess clients
// (through the plugin, each on its own connection, spread over topod
// replicas) and of etcd clients (go.etcd.io/etcd/client/v3 on the same
// replicas' etcd API) runs against a real cluster — three etcd members and
// three topod replicas, each its own process, blobs in MinIO — while one
// fault at a time is injected: processes killed and stopped, network
// partitions through etcd's proxy, compaction, the blob store restarted,
// bolt killed under writes. Every operation is recorded, and the history is
// checked afterwards: the KV operations of both APIs, as one history, for
// linearizability with porcupine, the serializable reads for their session
// guarantees, the plugin's watches for order, uniqueness, atomicity and
// convergence, the etcd watches for every guarantee of etcd's robustness
// suite against etcd's own events, the locks for safety by their fencing
// tokens. RELIABILITY.md says what it covers and what it does not.
//
// The suite is tests only (`make test-faults`); nothing imports it.
package faults
