// Package harness starts the servers that tests and benchmarks run against,
// and reads what they report: etcd, topod and MinIO, each either in-process
// or as a child process, plus one way to scrape Prometheus text and one way
// to read a process's CPU time and memory.
//
// It is called a harness, not a cluster, because that is what it is for:
// only tests, bench/ and the fault suite import it; product code (pkg/,
// cmd/) never does.
//
// What it starts:
//
//   - StartEtcd: an etcd cluster of one or more members embedded in the test
//     process (go.etcd.io/etcd/server/v3/embed). Members can be stopped and
//     restarted on their ports and data. Cheap; the default for tests.
//   - StartEtcdProcs: an etcd cluster whose members are child processes of
//     the etcd binary (BuildEtcd), for what an embedded member cannot
//     suffer: SIGKILL, a leader killed, a peer listener cut (PeerProxies),
//     and CPU and memory figures of its own for benchmarks.
//   - StartTopod: a topod server in-process over a backend the test opens
//     (OpenBolt, OpenEtcd); StartTopodProc and StartTopodProcs: the built
//     topod binary (BuildTopod) as child processes, waited on until their
//     gRPC health check serves, stopped with SIGTERM.
//   - StartMinIO: the bin/minio server as a child process, with a bucket.
//
// What it reads: Scrape (and ScrapeHandler) parse a Prometheus endpoint
// into Metrics, whose Sum and Lookup add a metric up over the label sets
// matching a filter; ReadProcStats reads /proc through prometheus/procfs.
//
// Every child process is killed by the kernel if the test process dies
// (Pdeathsig), and its output goes to a log file whose tail is in the errors
// that report its failures.
package harness
