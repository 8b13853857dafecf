package fleet

import (
	"context"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/topod-io/topod/bench/report"
	"github.com/topod-io/topod/internal/harness"
)

// Servers are the servers of one topology, read together.
type Servers struct {
	Etcd  []*harness.EtcdProcs
	Topod []*harness.TopodProcs

	mu   sync.Mutex
	last map[string]harness.Metrics // each endpoint's last answer
}

// scrape reads endpoint u. One that does not answer (a member killed,
// moved or restarting) counts with its last answer, so that the sums of
// counters over members never go back; fresh is false then, and its gauges
// (watchers, RSS, ...) are not to be counted: it holds nothing now. ok is
// false if it never answered.
func (s *Servers) scrape(ctx context.Context, u string) (m harness.Metrics, fresh, ok bool) {
	m, err := scrape(ctx, u)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		m, ok = s.last[u]
		return m, false, ok
	}
	if s.last == nil {
		s.last = map[string]harness.Metrics{}
	}
	s.last[u] = m
	return m, true, true
}

// snap is one reading of every server of a topology: counters are
// cumulative, summed over members and replicas.
type snap struct {
	t            time.Time
	etcdReq      map[string]float64
	watchStarted float64
	rx, tx       float64
	watchers     float64
	streams      float64
	cpu, rss, db float64
	topodReq     map[string]float64
	topodStreams float64
	topodBackend map[string]float64
	topodCPU     float64
	topodRSS     float64
}

// streamMethods are etcd's streaming gRPC methods: their requests are the
// messages clients send on them, not the streams.
var streamMethods = map[string]bool{"Watch": true, "LeaseKeepAlive": true, "Snapshot": true}

// read scrapes every server (Servers.scrape: one that does not answer
// counts with its last answer).
func (s *Servers) read(ctx context.Context) snap {
	out := snap{t: time.Now(), etcdReq: map[string]float64{}, topodReq: map[string]float64{}, topodBackend: map[string]float64{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range s.Etcd {
		for _, u := range e.MetricsURLs() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, fresh, ok := s.scrape(ctx, u)
				if !ok {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for method, v := range m.ByLabel("grpc_server_handled_total", "grpc_method", "grpc_type", "unary") {
					out.etcdReq[method] += v
				}
				for method, v := range m.ByLabel("grpc_server_msg_received_total", "grpc_method") {
					if streamMethods[method] {
						out.etcdReq[method] += v
					}
				}
				out.watchStarted += m.Sum("grpc_server_started_total", "grpc_method", "Watch")
				out.rx += m.Sum("etcd_network_client_grpc_received_bytes_total")
				out.tx += m.Sum("etcd_network_client_grpc_sent_bytes_total")
				out.cpu += m.Sum("process_cpu_seconds_total")
				if fresh {
					out.watchers += m.Sum("etcd_debugging_mvcc_watcher_total")
					out.streams += m.Sum("etcd_debugging_mvcc_watch_stream_total")
					out.rss += m.Sum("process_resident_memory_bytes")
					out.db += m.Sum("etcd_mvcc_db_total_size_in_bytes")
				}
			}()
		}
	}
	for _, t := range s.Topod {
		for _, u := range t.MetricsURLs() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, fresh, ok := s.scrape(ctx, u)
				if !ok {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for method, v := range m.ByLabel("grpc_server_handled_total", "grpc_method") {
					if strings.HasPrefix(method, "Check") { // health checks
						continue
					}
					out.topodReq[method] += v
				}
				out.topodStreams += m.Sum("grpc_server_started_total", "grpc_type", "server_stream") + m.Sum("grpc_server_started_total", "grpc_type", "bidi_stream")
				for k, v := range m.ByLabel("topod_backend_requests_total", "type") {
					out.topodBackend[k] += v
				}
				out.topodCPU += m.Sum("process_cpu_seconds_total")
				if fresh {
					out.topodRSS += m.Sum("process_resident_memory_bytes")
				}
			}()
		}
	}
	wg.Wait()
	return out
}

// scrape reads one endpoint, trying three times (a busy machine can
// keep a member from answering within the timeout).
func scrape(ctx context.Context, url string) (harness.Metrics, error) {
	var err error
	for range 3 {
		var m harness.Metrics
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err = harness.Scrape(sctx, url)
		cancel()
		if err == nil || ctx.Err() != nil {
			return m, err
		}
	}
	return nil, err
}

func total(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func diff(a, b map[string]float64) map[string]float64 {
	out := maps.Clone(b)
	for k, v := range a {
		out[k] -= v
	}
	for k, v := range out {
		if v < 0 { // a member restarted between the two reads
			out[k] = 0
		}
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

// sampler reads the servers every interval, for the charts and the
// scenarios' peaks.
type sampler struct {
	srv      *Servers
	start    time.Time
	mu       sync.Mutex
	last     snap
	samples  []report.Sample
	scenario string
}

func (s *sampler) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.take(ctx)
		}
	}
}

func (s *sampler) take(ctx context.Context) snap {
	cur := s.srv.read(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last
	s.last = cur
	if prev.t.IsZero() {
		return cur
	}
	dt := cur.t.Sub(prev.t).Seconds()
	if dt <= 0 {
		return cur
	}
	rate := func(a, b float64) float64 { return max(0, b-a) / dt }
	smp := report.Sample{
		T:             cur.t.Sub(s.start).Seconds(),
		EtcdReqPerSec: max(0, total(cur.etcdReq)-total(prev.etcdReq)) / dt,
		EtcdRxPerSec:  rate(prev.rx, cur.rx),
		EtcdTxPerSec:  rate(prev.tx, cur.tx),
		Watchers:      cur.watchers,
		WatchStreams:  cur.streams,
		EtcdCPU:       rate(prev.cpu, cur.cpu),
		EtcdRSS:       cur.rss,
		EtcdDB:        cur.db,
		Scenario:      s.scenario,
	}
	if len(s.srv.Topod) > 0 {
		smp.TopodCPU = rate(prev.topodCPU, cur.topodCPU)
		smp.TopodRSS = cur.topodRSS
		smp.TopodReqPerSec = max(0, total(cur.topodReq)-total(prev.topodReq)) / dt
	}
	s.samples = append(s.samples, smp)
	return cur
}

func (s *sampler) setScenario(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scenario = name
}

// peaks returns the gauges' peaks over the samples from t0 on.
func (s *sampler) peaks(t0 float64) (watchers, streams, etcdRSS, topodRSS float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		if x.T < t0 {
			continue
		}
		watchers = max(watchers, x.Watchers)
		streams = max(streams, x.WatchStreams)
		etcdRSS = max(etcdRSS, x.EtcdRSS)
		topodRSS = max(topodRSS, x.TopodRSS)
	}
	return
}

// figures turns two reads around a scenario into its server figures.
func (s *sampler) figures(a, b snap, t0 float64, withTopod bool) (report.Etcd, *report.Topod) {
	secs := b.t.Sub(a.t).Seconds()
	req := diff(a.etcdReq, b.etcdReq)
	w, st, rss, trss := s.peaks(t0)
	e := report.Etcd{
		Requests:      req,
		RequestsTotal: total(req),
		RxBytes:       max(0, b.rx-a.rx),
		TxBytes:       max(0, b.tx-a.tx),
		WatchStreams:  max(0, b.watchStarted-a.watchStarted),
		WatchersPeak:  max(w, a.watchers, b.watchers),
		StreamsPeak:   max(st, a.streams, b.streams),
		CPUSeconds:    max(0, b.cpu-a.cpu),
		RSSPeak:       max(rss, b.rss),
		DBSize:        b.db,
		DBGrowth:      b.db - a.db,
	}
	if secs > 0 {
		e.RequestsPerSec = e.RequestsTotal / secs
		e.BytesPerSec = (e.RxBytes + e.TxBytes) / secs
	}
	if !withTopod {
		return e, nil
	}
	treq := diff(a.topodReq, b.topodReq)
	return e, &report.Topod{
		Requests:      treq,
		RequestsTotal: total(treq),
		StreamsOpened: max(0, b.topodStreams-a.topodStreams),
		Backend:       diff(a.topodBackend, b.topodBackend),
		CPUSeconds:    max(0, b.topodCPU-a.topodCPU),
		RSSPeak:       max(trss, b.topodRSS),
	}
}

func (s *sampler) series() []report.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]report.Sample(nil), s.samples...)
}
