package etcdapi

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the endpoint's own Prometheus metrics. Requests by method
// and code are counted with every other RPC by topod's gRPC interceptor
// (grpc_server_handled_total{grpc_service="etcdserverpb.KV"}, ...).
type metrics struct {
	streams          prometheus.Gauge
	watchers         prometheus.Gauge
	compactedWatches prometheus.Counter
	readRetries      prometheus.Counter
	sendDelay        prometheus.Histogram
	visibleWait      prometheus.Histogram
	reads            *prometheus.CounterVec
	collectors       []prometheus.Collector
}

func newMetrics(mirrors []Mirror) *metrics {
	m := &metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "topod_etcd_watch_streams", Help: "Open Watch streams of the etcd endpoint.",
		}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "topod_etcd_watches", Help: "Open watches of the etcd endpoint.",
		}),
		compactedWatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_etcd_watches_compacted_total", Help: "Watches of the etcd endpoint canceled as compacted: they started before the event window (--etcd-watch-window-*) or fell behind it, or the mirror listed again.",
		}),
		readRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_etcd_watch_read_retries_total", Help: "Times a watch of the etcd endpoint waited to send events whose values or previous values could not be read (the blob store or the backend unreachable); it sends them, in order, once they can be read.",
		}),
		sendDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "topod_etcd_watch_send_delay_seconds", Help: "Time from an event's arrival in the etcd endpoint's watch window (from the backend's watch) to its send to a watch that was open when it arrived: topod's own part of a watch's delivery.",
			Buckets: prometheus.ExponentialBuckets(0.000025, 2, 18),
		}),
		visibleWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "topod_etcd_write_visible_wait_seconds", Help: "Time a write through the etcd endpoint waited, after the backend's answer, for the mirrors holding its keys to apply it (the backend watch's delay) before it was answered.",
			Buckets: prometheus.ExponentialBuckets(0.000025, 2, 18),
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "topod_etcd_range_reads_total", Help: "Ranges of the etcd endpoint by consistency (linearizable, serializable) and source (mirror: from memory; backend: outside the mirrors, at a past revision, or the mirror could not answer).",
		}, []string{"consistency", "source"}),
	}
	window := func(f func(Stats) float64) func() float64 {
		return func() float64 {
			total := 0.0
			for _, mr := range mirrors {
				if mr.Journal != nil {
					total += f(mr.Journal.Stats())
				}
			}
			return total
		}
	}
	oldest := func() float64 {
		low := 0.0
		for _, mr := range mirrors {
			if mr.Journal != nil {
				if o := float64(mr.Journal.Stats().Oldest); low == 0 || o < low {
					low = o
				}
			}
		}
		return low
	}
	confirm := func(requests bool) func() float64 {
		return func() float64 {
			total := 0.0
			for _, mr := range mirrors {
				q, r := mr.Counts()
				if requests {
					total += float64(q)
				} else {
					total += float64(r)
				}
			}
			return total
		}
	}
	m.collectors = []prometheus.Collector{
		m.streams, m.watchers, m.compactedWatches, m.readRetries, m.sendDelay, m.visibleWait, m.reads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "topod_etcd_watch_window_events", Help: "Events held in the etcd endpoint's watch window."},
			window(func(s Stats) float64 { return float64(s.Events) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "topod_etcd_watch_window_bytes", Help: "Bytes of keys and values held in the etcd endpoint's watch window."},
			window(func(s Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topod_etcd_watch_window_evicted_total", Help: "Events dropped from the etcd endpoint's watch window to stay within its bounds."},
			window(func(s Stats) float64 { return float64(s.Evicted) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "topod_etcd_watch_window_oldest_revision", Help: "The oldest revision an etcd watch can start from; older ones are answered as compacted."},
			oldest),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topod_consistent_read_revision_requests_total", Help: "Requests for the backend's current revision made for linearizable reads from memory, one per batch of reads (both APIs)."},
			confirm(true)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topod_consistent_reads_total", Help: "Linearizable reads that asked for the backend's current revision (both APIs)."},
			confirm(false)),
	}
	return m
}

// Collectors returns the endpoint's metrics, for topod's registry.
func (s *Server) Collectors() []prometheus.Collector { return s.metrics.collectors }

func (m *metrics) read(serializable, mirror bool) {
	c, src := "linearizable", "backend"
	if serializable {
		c = "serializable"
	}
	if mirror {
		src = "mirror"
	}
	m.reads.WithLabelValues(c, src).Inc()
}
