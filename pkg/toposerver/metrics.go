package toposerver

import (
	"context"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// metrics are topod's Prometheus metrics, on a registry of the server's own.
type metrics struct {
	registry        *prometheus.Registry
	upstreamWatches prometheus.Gauge
	streams         *prometheus.GaugeVec
	watches         prometheus.Gauge
	writeLag        prometheus.Counter
	eventsIn        prometheus.Counter
	eventsOut       prometheus.Counter
	bytesOut        prometheus.Counter
	coalesced       prometheus.Counter
	relists         prometheus.Counter
	watchOpens      *prometheus.CounterVec
	resumeUnchanged prometheus.Counter
	cache           *prometheus.CounterVec
	backend         *prometheus.CounterVec
	refused         *prometheus.CounterVec
	denied          *prometheus.CounterVec
	// grpc counts every RPC, unary and streaming, by method and status
	// code, with handling-time histograms (go-grpc-middleware).
	grpc *grpcprom.ServerMetrics
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		upstreamWatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "topod_upstream_watches", Help: "Watches topod holds on its backend.",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "topod_downstream_streams", Help: "Open client streams, by kind.",
		}, []string{"kind"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "topod_watches", Help: "Open client watches, on WatchStream streams.",
		}),
		writeLag: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_write_mirror_lag_total", Help: "Writes that returned before topod's mirror reflected them (it lagged by more than the write's wait): the writer's next read goes to the backend.",
		}),
		eventsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_events_in_total", Help: "Events received from the backend's watches.",
		}),
		eventsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_events_out_total", Help: "File events sent to watching clients.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_bytes_out_total", Help: "Bytes of file contents sent to watching clients.",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_coalesced_events_total", Help: "Changes that found their file already pending for a watcher: the watcher skips to the newer value.",
		}),
		relists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_mirror_relists_total", Help: "Full re-lists of a mirrored prefix after its upstream watch broke.",
		}),
		watchOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "topod_watch_opens_total", Help: "Watches opened, by start: full (the whole state sent) or resume (a reconnecting client sent the revision it had reached).",
		}, []string{"start"}),
		resumeUnchanged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "topod_watch_resume_unchanged_files_total", Help: "Files not sent again to resuming watchers because they had not changed since the revision the watcher had reached.",
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "topod_mirror_reads_total", Help: "Reads of mirrored prefixes, by operation and result (hit: served from memory; miss: the mirror had not reached the revision asked for, or was not ready, and the backend answered).",
		}, []string{"op", "result"}),
		backend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "topod_backend_requests_total", Help: "Requests topod made to its backend, by type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "topod_limit_refusals_total", Help: "Requests refused for going over a resource limit, by limit (watches_per_stream, watches, stream_backlog, lock_ttl, after_revision, list_bytes, put_blobs, blob_bytes, get_blobs, missing_blobs).",
		}, []string{"limit"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "topod_authz_denied_total", Help: "Requests the authorization policy (--authz-policy) refused, by gRPC method and the principals the client matched (none: no principal).",
		}, []string{"method", "principal"}),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(prometheus.ExponentialBuckets(0.0001, 4, 10)))),
	}
	// Every known label value starts at 0, so that each series exists (and
	// rate() sees its first increment) before it is first counted.
	for _, t := range []string{"get", "get_revision", "list", "create", "update", "delete", "txn", "watch", "current_revision",
		"grant", "renew", "revoke", "lease_time_to_live", "list_leases"} {
		m.backend.WithLabelValues(t)
	}
	for _, kind := range []string{"watch_stream", "lock", "campaign", "watch_leader"} {
		m.streams.WithLabelValues(kind)
	}
	for _, start := range []string{"full", "resume"} {
		m.watchOpens.WithLabelValues(start)
	}
	for _, op := range []string{"get", "list", "list_dir"} {
		m.cache.WithLabelValues(op, "hit")
		m.cache.WithLabelValues(op, "miss")
	}
	for _, limit := range []string{"watches_per_stream", "watches", "stream_backlog", "lock_ttl", "after_revision",
		"put_blobs", "get_blobs", "missing_blobs", "blob_bytes", "list_bytes"} {
		m.refused.WithLabelValues(limit)
	}
	m.registry.MustRegister(m.upstreamWatches, m.streams, m.watches, m.writeLag, m.eventsIn, m.eventsOut, m.bytesOut,
		m.coalesced, m.relists, m.watchOpens, m.resumeUnchanged, m.cache, m.backend, m.refused, m.denied, m.grpc,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// observePolicy exports how often the authorization policy was applied and
// refused on reload, read when scraped.
func (m *metrics) observePolicy(src *authz.Source) {
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "topod_authz_policy_loads_total", Help: "Authorization policies applied: at start and on each change of the --authz-policy file that parsed.",
		}, func() float64 { return float64(src.Loads.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "topod_authz_policy_reload_errors_total", Help: "Rereads of the --authz-policy file that were refused (unreadable or invalid): the previous policy stays in force.",
		}, func() float64 { return float64(src.Errors.Load()) }),
	)
}

// observeMirrors exports the mirrors' sizes, read when scraped.
func (m *metrics) observeMirrors(mirrors []*kvmirror.Mirror) {
	sum := func(f func(kvmirror.Stats) float64) func() float64 {
		return func() float64 {
			total := 0.0
			for _, mr := range mirrors {
				total += f(mr.Stats())
			}
			return total
		}
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "topod_mirror_bytes", Help: "Memory held by topod's mirrors (keys and values), summed over mirrored prefixes.",
		}, sum(func(s kvmirror.Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "topod_mirror_evicted_values", Help: "Files whose values topod's mirrors do not hold, being over --mirror-max-bytes: reads of them go to the backend. 0 when every value fits.",
		}, sum(func(s kvmirror.Stats) float64 { return float64(s.EvictedValues) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "topod_mirror_subscriptions", Help: "Watches served from topod's mirrors.",
		}, sum(func(s kvmirror.Stats) float64 { return float64(s.Subscriptions) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "topod_mirror_not_serving", Help: "Mirrors not serving reads: not ready, or not confirmed current by the backend within --mirror-max-staleness (cut off from etcd); their reads go to the backend.",
		}, sum(func(s kvmirror.Stats) float64 {
			if s.Serving {
				return 0
			}
			return 1
		})),
	)
}

// observeBlobCache exports the blob cache's figures, read when scraped.
func (m *metrics) observeBlobCache(c *cache.Cache) {
	stat := func(f func(cache.Stats) float64) func() float64 {
		return func() float64 { return f(c.Stats()) }
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "topod_blob_cache_bytes", Help: "Bytes held by topod's blob cache (--blob-cache-bytes bounds it)."},
			stat(func(s cache.Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "topod_blob_cache_entries", Help: "Blobs held by topod's blob cache."},
			stat(func(s cache.Stats) float64 { return float64(s.Entries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topod_blob_cache_hits_total", Help: "Lookups of topod's blob cache that found the blob."},
			stat(func(s cache.Stats) float64 { return float64(s.Hits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topod_blob_cache_misses_total", Help: "Lookups of topod's blob cache that did not: read from the blob store."},
			stat(func(s cache.Stats) float64 { return float64(s.Misses) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topod_blob_cache_evictions_total", Help: "Blobs evicted from topod's blob cache to stay within its bound."},
			stat(func(s cache.Stats) float64 { return float64(s.Evictions) })),
	)
}

// EventsIn, Coalesced and Relisted make metrics a kvmirror.Observer.
func (m *metrics) EventsIn(n int)  { m.eventsIn.Add(float64(n)) }
func (m *metrics) Coalesced(n int) { m.coalesced.Add(float64(n)) }
func (m *metrics) Relisted()       { m.relists.Inc() }

func (m *metrics) watchOpened(resume bool) {
	start := "full"
	if resume {
		start = "resume"
	}
	m.watchOpens.WithLabelValues(start).Inc()
}

func (m *metrics) cacheRead(op string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cache.WithLabelValues(op, result).Inc()
}

// countingBackend counts the requests made to a backend by type.
type countingBackend struct {
	kv.Backend
	m *metrics
}

func (b countingBackend) count(t string) { b.m.backend.WithLabelValues(t).Inc() }

func (b countingBackend) Get(ctx context.Context, key string) (kv.KV, error) {
	b.count("get")
	return b.Backend.Get(ctx, key)
}

func (b countingBackend) GetRevision(ctx context.Context, key string, rev int64) ([]byte, error) {
	b.count("get_revision")
	return b.Backend.GetRevision(ctx, key, rev)
}

func (b countingBackend) List(ctx context.Context, prefix string, keysOnly bool) ([]kv.KV, int64, error) {
	b.count("list")
	return b.Backend.List(ctx, prefix, keysOnly)
}

func (b countingBackend) Create(ctx context.Context, key string, value []byte, lease kv.LeaseID) (int64, error) {
	b.count("create")
	return b.Backend.Create(ctx, key, value, lease)
}

func (b countingBackend) Update(ctx context.Context, key string, value []byte, version int64) (int64, error) {
	b.count("update")
	return b.Backend.Update(ctx, key, value, version)
}

func (b countingBackend) Delete(ctx context.Context, key string, version int64) (int64, error) {
	b.count("delete")
	return b.Backend.Delete(ctx, key, version)
}

func (b countingBackend) Watch(ctx context.Context, key string, prefix bool, afterRev int64) (<-chan kv.WatchResponse, error) {
	b.count("watch")
	ch, err := b.Backend.Watch(ctx, key, prefix, afterRev)
	if err != nil {
		return nil, err
	}
	b.m.upstreamWatches.Inc()
	context.AfterFunc(ctx, b.m.upstreamWatches.Dec)
	return ch, nil
}

// progressWatcher is a backend whose watches confirm their progress
// (etcdkv): what bounds a mirror's staleness.
type progressWatcher interface {
	WatchProgress(ctx context.Context, key string, prefix bool, afterRev int64, interval time.Duration) (<-chan kv.WatchResponse, error)
}

// WatchProgress forwards the backend's WatchProgress, or is Watch.
func (b countingBackend) WatchProgress(ctx context.Context, key string, prefix bool, afterRev int64, interval time.Duration) (<-chan kv.WatchResponse, error) {
	pw, ok := b.Backend.(progressWatcher)
	if !ok {
		return b.Watch(ctx, key, prefix, afterRev)
	}
	b.count("watch")
	ch, err := pw.WatchProgress(ctx, key, prefix, afterRev, interval)
	if err != nil {
		return nil, err
	}
	b.m.upstreamWatches.Inc()
	context.AfterFunc(ctx, b.m.upstreamWatches.Dec)
	return ch, nil
}

func (b countingBackend) Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	b.count("grant")
	return b.Backend.Grant(ctx, ttl)
}
