// Package faults is topod's fault suite: a workload of Vitess clients
// (through the plugin, each on its own connection, spread over topod
// replicas) runs against a real cluster — three etcd members and three
// topod replicas, each its own process, blobs in MinIO — while one fault at
// a time is injected: processes killed and stopped, network partitions
// through etcd's proxy, compaction, the blob store restarted, bolt killed
// under writes. Every operation is recorded, and the history is checked
// afterwards: the KV operations for linearizability with porcupine, the
// watches for order, uniqueness, atomicity and convergence, the locks for
// safety by their fencing tokens. RELIABILITY.md says what it covers and
// what it does not.
//
// The suite is tests only (`make test-faults`); nothing imports it.
package faults
