package vschemaapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are vschemad's Prometheus metrics, on a registry of their own
// (with the Go runtime's and the process's), served by Handler
// (deploy/monitoring has the dashboard and the alerts that read them).
type Metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	writes      *prometheus.CounterVec
	auditErrors prometheus.Counter
}

// NewMetrics returns the metrics of one handler.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vschemad_http_requests_total",
			Help: "Requests of the API under /api/, by method, route (the pattern matched, e.g. /api/v1/keyspaces/{ks}/vschema) and HTTP status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vschemad_http_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms to 262 s
		}, []string{"method", "route"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vschemad_writes_total",
			Help: "Write requests by action (apply, delete, rollback, import, rules, rebuild) and result: written (2xx), dry_run (2xx, nothing written), refused (4xx: invalid, unauthenticated, forbidden, version mismatch, contention; nothing written) or failed (5xx: the topology, a cell or the audit log; see the audit log for what was written).",
		}, []string{"action", "result"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vschemad_audit_log_errors_total",
			Help: "Appends to the audit log that failed: a write's intent (the write is then refused) or its outcome (answered 500).",
		}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.writes, m.auditErrors,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return mux
}

// observe counts a request of the API answered with status.
func (m *Metrics) observe(r *http.Request, status int, took time.Duration) {
	method, route := r.Method, r.Pattern
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions:
	default:
		method = "other" // a client's own method names would be series without bound
	}
	if _, rest, ok := strings.Cut(route, " "); ok {
		route = rest // "PUT /api/v1/..." -> "/api/v1/..."
	}
	if route == "" {
		route = "other"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(took.Seconds())
	action := writeAction(method, route)
	if action == "" {
		return
	}
	result := "written"
	switch {
	case status >= 500:
		result = "failed"
	case status >= 300:
		result = "refused"
	default:
		if dry, _ := strconv.ParseBool(r.URL.Query().Get("dry_run")); dry {
			result = "dry_run"
		}
	}
	m.writes.WithLabelValues(action, result).Inc()
}

// writeAction names the write a route and method make, or "" for a read.
func writeAction(method, route string) string {
	switch {
	case method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions:
		return ""
	case route == "/api/v1/keyspaces/{ks}/vschema" && method == http.MethodPut:
		return "apply"
	case route == "/api/v1/keyspaces/{ks}/vschema" && method == http.MethodDelete:
		return "delete"
	case route == "/api/v1/keyspaces/{ks}/vschema/rollback":
		return "rollback"
	case route == "/api/v1/vschemas":
		return "import"
	case route == "/api/v1/cells/{cell}/srvvschema/rebuild":
		return "rebuild"
	case strings.HasSuffix(route, "-rules"):
		return "rules"
	}
	return ""
}
