package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/topod-io/topod/bench/servers"
	"github.com/topod-io/topod/internal/freeport"
)

// etcdServer is a one-member etcd, embedded in the driver process or (for
// the keyspaces phase) a servers.Etcd member in a process of its own, at
// etcd's default limits (notably the 1.5 MiB request limit), serving its
// Prometheus metrics on a port of its own.
type etcdServer struct {
	e          *embed.Etcd   // nil when etcd runs in a process of its own
	proc       *servers.Etcd // nil when etcd is embedded
	endpoint   string        // host:port of the client URL
	metricsURL string
	cli        *clientv3.Client // the driver's own client, for housekeeping
	closing    *atomic.Bool     // quiets the embedded etcd's logger on Close; nil for a process
}

// startEtcd starts the embedded etcd with its data under dir.
func startEtcd(ctx context.Context, dir string) (*etcdServer, error) {
	servers.FreeGRPCMetricNames()
	var err error
	for attempt := range 5 {
		var s *etcdServer
		s, err = startEtcdOnce(ctx, filepath.Join(dir, fmt.Sprintf("etcd%d", attempt)))
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, fmt.Errorf("start embedded etcd: %w", err)
}

func startEtcdOnce(ctx context.Context, dir string) (*etcdServer, error) {
	ports, err := freeport.Pick(3)
	if err != nil {
		return nil, err
	}
	// etcd logs only errors; they would be lost in the benchmark's output
	// otherwise, and a healthy run has none.
	closing := &atomic.Bool{}
	lg := servers.EtcdLogger(stderr, closing)
	cfg := etcdConfig(dir, ports, lg)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	if err := waitEtcdReady(ctx, e); err != nil {
		e.Close()
		return nil, err
	}
	s, err := newEtcdServer(cfg.ListenClientUrls[0], cfg.ListenMetricsUrls[0], lg, closing)
	if err != nil {
		e.Close()
		return nil, err
	}
	s.e = e
	return s, nil
}

// startEtcdProcess starts a one-member etcd in a process of its own
// (servers.StartEtcd: this binary re-executed, the same configuration as the
// embedded one) with its data under dir, so that its CPU and RSS are its
// own.
func startEtcdProcess(ctx context.Context, dir string) (*etcdServer, error) {
	c, err := servers.StartEtcd(ctx, "keyspaces", dir, 1, stderr, false)
	if err != nil {
		return nil, err
	}
	return &etcdServer{proc: c, endpoint: c.Endpoints()[0], metricsURL: c.MetricsURLs()[0], cli: c.Client()}, nil
}

// etcdConfig is the configuration of the embedded etcd: one member
// (bench/servers' configuration).
func etcdConfig(dir string, ports []int, lg *zap.Logger) *embed.Config {
	return servers.EtcdConfig("topobench", dir, [3]int(ports), "", fmt.Sprintf("topobench-%d", time.Now().UnixNano()), lg)
}

// waitEtcdReady waits until the embedded etcd e serves.
func waitEtcdReady(ctx context.Context, e *embed.Etcd) error {
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd failed while starting: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("etcd not ready after 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newEtcdServer returns the driver's handle on an etcd that serves clients
// at client and its metrics at metrics, with a client of its own.
func newEtcdServer(client, metrics url.URL, lg *zap.Logger, closing *atomic.Bool) (*etcdServer, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client.Host}, DialTimeout: 5 * time.Second, Logger: lg})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	metrics.Path = "/metrics"
	return &etcdServer{endpoint: client.Host, metricsURL: metrics.String(), cli: cli, closing: closing}, nil
}

// Close stops etcd.
func (s *etcdServer) Close() {
	if s.proc != nil {
		s.proc.Close() // closes cli too
		return
	}
	s.closing.Store(true)
	s.cli.Close()
	s.e.Close()
}

// stats returns the CPU and memory of etcd's own process; an error if etcd
// is embedded in the driver.
func (s *etcdServer) stats() (procStats, error) {
	if s.proc == nil {
		return procStats{}, errors.New("etcd is embedded in the driver: no stats of its own")
	}
	return s.proc.Stats()
}

// deletePrefix removes every key under prefix, so that a topod started
// later (which mirrors the whole keyspace) does not carry another side's
// data.
func (s *etcdServer) deletePrefix(ctx context.Context, prefix string) error {
	if _, err := s.cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd: delete %s*: %w", prefix, err)
	}
	return nil
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		return etcdMetrics{}, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return etcdMetrics{}, fmt.Errorf("scrape %s: %w", s.metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return etcdMetrics{}, fmt.Errorf("scrape %s: %s", s.metricsURL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return etcdMetrics{}, fmt.Errorf("parse %s: %w", s.metricsURL, err)
	}
	return etcdMetrics{
		Watchers:     sumMetric(mfs["etcd_debugging_mvcc_watcher_total"], nil),
		WatchStreams: sumMetric(mfs["etcd_debugging_mvcc_watch_stream_total"], nil),
		SentBytes:    sumMetric(mfs["etcd_network_client_grpc_sent_bytes_total"], nil),
		RangeRPCs:    sumMetric(mfs["grpc_server_handled_total"], map[string]string{"grpc_service": "etcdserverpb.KV", "grpc_method": "Range"}),
		TxnRPCs:      sumMetric(mfs["grpc_server_handled_total"], map[string]string{"grpc_service": "etcdserverpb.KV", "grpc_method": "Txn"}),
		KVRPCs:       sumMetric(mfs["grpc_server_handled_total"], map[string]string{"grpc_service": "etcdserverpb.KV"}),
		MVCCRanges:   sumMetric(mfs["etcd_mvcc_range_total"], nil),
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

// sumMetric adds up a metric family over the label sets that have every
// label of match (counters, gauges and untyped values). A nil family is 0.
func sumMetric(mf *dto.MetricFamily, match map[string]string) float64 {
	if mf == nil {
		return 0
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, match map[string]string) bool {
	for name, value := range match {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == name && l.GetValue() == value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(port))}
}
