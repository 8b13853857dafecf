package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/topod-io/topod/internal/harness"
)

// etcdServer is a one-member etcd, embedded in the driver process or (for
// the keyspaces phase) a process of the etcd binary, at etcd's default
// limits (notably the 1.5 MiB request limit), serving its Prometheus
// metrics on a port of its own (internal/harness).
type etcdServer struct {
	embedded   *harness.Etcd      // nil when etcd runs in a process of its own
	proc       *harness.EtcdProcs // nil when etcd is embedded
	endpoint   string             // host:port of the client URL
	metricsURL string
}

// startEtcd starts the embedded etcd with its data under dir. Its errors
// are logged to stderr: they would be lost in the benchmark's output
// otherwise, and a healthy run has none.
func startEtcd(ctx context.Context, dir string) (*etcdServer, error) {
	e, err := harness.NewEtcd(ctx, dir, 1, harness.WithLog(stderr))
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	return &etcdServer{embedded: e, endpoint: strings.TrimPrefix(e.Endpoint(0), "http://"), metricsURL: e.MetricsURL(0)}, nil
}

// startEtcdProcess starts a one-member etcd in a process of its own (the
// etcd binary, at the version the embedded one is) with its data under
// dir, so that its CPU and RSS are its own.
func startEtcdProcess(ctx context.Context, dir string) (*etcdServer, error) {
	bin, err := harness.EtcdBinary(ctx)
	if err != nil {
		return nil, err
	}
	c, err := harness.StartEtcdProcs(ctx, harness.EtcdProcsConfig{Name: "keyspaces", Binary: bin, Dir: dir, Members: 1})
	if err != nil {
		return nil, err
	}
	return &etcdServer{proc: c, endpoint: c.Endpoints()[0], metricsURL: c.MetricsURLs()[0]}, nil
}

// Close stops etcd.
func (s *etcdServer) Close() {
	if s.proc != nil {
		s.proc.Close()
		return
	}
	s.embedded.Close()
}

// stats returns the CPU and memory of etcd's own process; an error if etcd
// is embedded in the driver.
func (s *etcdServer) stats() (harness.ProcStats, error) {
	if s.proc == nil {
		return harness.ProcStats{}, errors.New("etcd is embedded in the driver: no stats of its own")
	}
	return s.proc.Stats()
}

// deletePrefix removes every key under prefix, so that a topod started
// later (which mirrors the whole keyspace) does not carry another side's
// data.
func (s *etcdServer) deletePrefix(ctx context.Context, prefix string) error {
	if s.proc != nil {
		return s.proc.DeletePrefix(ctx, prefix)
	}
	return s.embedded.DeletePrefix(ctx, prefix)
}

// etcdMetrics is one scrape of the etcd metrics the benchmark reports.
// etcd registers its metrics in the process-wide Prometheus registry; only
// etcd's server-side series are read here, which the driver's clients do not
// touch.
type etcdMetrics struct {
	Watchers     float64 // etcd_debugging_mvcc_watcher_total (gauge)
	WatchStreams float64 // etcd_debugging_mvcc_watch_stream_total (gauge)
	SentBytes    float64 // etcd_network_client_grpc_sent_bytes_total
	RangeRPCs    float64 // grpc_server_handled_total{grpc_service="etcdserverpb.KV",grpc_method="Range"}
	TxnRPCs      float64 // ... grpc_method="Txn"
	KVRPCs       float64 // ... every etcdserverpb.KV method (Range, Put, DeleteRange, Txn, Compact)
	MVCCRanges   float64 // etcd_mvcc_range_total: ranges executed, including those inside txns
}

// sub returns the counters of m minus those of o; gauges are kept as in m.
func (m etcdMetrics) sub(o etcdMetrics) etcdMetrics {
	return etcdMetrics{
		Watchers:     m.Watchers,
		WatchStreams: m.WatchStreams,
		SentBytes:    m.SentBytes - o.SentBytes,
		RangeRPCs:    m.RangeRPCs - o.RangeRPCs,
		TxnRPCs:      m.TxnRPCs - o.TxnRPCs,
		KVRPCs:       m.KVRPCs - o.KVRPCs,
		MVCCRanges:   m.MVCCRanges - o.MVCCRanges,
	}
}

// scrape reads etcd's metrics endpoint.
func (s *etcdServer) scrape(ctx context.Context) (etcdMetrics, error) {
	m, err := harness.Scrape(ctx, s.metricsURL)
	if err != nil {
		return etcdMetrics{}, err
	}
	return etcdMetrics{
		Watchers:     m.Sum("etcd_debugging_mvcc_watcher_total"),
		WatchStreams: m.Sum("etcd_debugging_mvcc_watch_stream_total"),
		SentBytes:    m.Sum("etcd_network_client_grpc_sent_bytes_total"),
		RangeRPCs:    m.Sum("grpc_server_handled_total", "grpc_service", "etcdserverpb.KV", "grpc_method", "Range"),
		TxnRPCs:      m.Sum("grpc_server_handled_total", "grpc_service", "etcdserverpb.KV", "grpc_method", "Txn"),
		KVRPCs:       m.Sum("grpc_server_handled_total", "grpc_service", "etcdserverpb.KV"),
		MVCCRanges:   m.Sum("etcd_mvcc_range_total"),
	}, nil
}

// waitWatchers waits until etcd reports at most want watchers (those of a
// previous phase take a moment to be cancelled after their clients close).
func (s *etcdServer) waitWatchers(ctx context.Context, want float64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := s.scrape(ctx)
		if err != nil {
			return err
		}
		if m.Watchers <= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd still has %v watchers after %v, want at most %v", m.Watchers, timeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
