package monitoring

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

// update rewrites the generated files (the dashboard's JSON, the
// PrometheusRule example) from their sources here and in rules/:
// go test ./deploy/monitoring/ -run 'TestDashboardIsGenerated|TestPrometheusRuleIsGenerated' -update
var update = flag.Bool("update", false, "rewrite the generated files from their sources")

const dashboardFile = "dashboards/topod.json"

// The selectors every panel filters by: the dashboard's variables.
const (
	topod    = `job=~"$job", instance=~"$instance"`
	vschemad = `job=~"$vschemad_job"`
	// topod's two APIs, by gRPC service.
	apis = `grpc_service=~"topod\\.v1\\.Topo|etcdserverpb\\..+"`
	// The codes that are topod's failures, not the topology's answers.
	serverCodes = `grpc_code=~"Unknown|Internal|Unavailable|DeadlineExceeded|DataLoss"`
	blobMethods = `grpc_service="topod.v1.Topo", grpc_method=~"GetBlob|GetBlobs|PutBlobs|MissingBlobs"`
	rate        = `[$__rate_interval]`
)

type target struct{ expr, legend string }

type panel struct {
	title, description string
	unit               string // Grafana unit: reqps, s, percentunit, bytes, short, ...
	targets            []target
	text               string // a text panel's Markdown (no targets)
}

type row struct {
	title  string
	panels []panel
}

func q(expr, legend string) target { return target{expr, legend} }

// rows are the dashboard's rows, one per area.
var rows = []row{
	{"Requests: topod.v1 and the etcd endpoint", []panel{
		{title: "Requests by method", unit: "reqps",
			description: "Every RPC answered, unary and streaming (a stream counts when it ends), both APIs.",
			targets:     []target{q(`sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{`+topod+`, `+apis+`}`+rate+`))`, "{{grpc_method}} ({{grpc_service}})")}},
		{title: "Non-OK answers by method and code", unit: "reqps",
			description: "NotFound, AlreadyExists, FailedPrecondition (a version mismatch) and Canceled are the topology's normal answers; Unavailable, DeadlineExceeded, Internal, Unknown and DataLoss are topod failing; PermissionDenied is the authorization policy; ResourceExhausted a limit.",
			targets:     []target{q(`sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{`+topod+`, `+apis+`, grpc_code!="OK"}`+rate+`)) > 0`, "{{grpc_method}} {{grpc_code}}")}},
		{title: "Server-error ratio by method", unit: "percentunit",
			description: "The share of requests answered Unavailable, DeadlineExceeded, Internal, Unknown or DataLoss (alert: TopodHighErrorRate, over 5%).",
			targets: []target{q(`sum by (grpc_method) (rate(grpc_server_handled_total{`+topod+`, `+apis+`, `+serverCodes+`}`+rate+`))
/ sum by (grpc_method) (rate(grpc_server_handled_total{`+topod+`, `+apis+`}`+rate+`)) > 0`, "{{grpc_method}}")}},
		{title: "Latency p99, unary, by method", unit: "s",
			description: "From the request's arrival to its answer (alert: TopodHighLatency, over 1 s). Buckets from 100 µs to 26 s.",
			targets:     []target{q(`histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{`+topod+`, grpc_type="unary", `+apis+`}`+rate+`)))`, "{{grpc_method}}")}},
		{title: "Latency p50, unary, by method", unit: "s",
			targets: []target{q(`histogram_quantile(0.5, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{`+topod+`, grpc_type="unary", `+apis+`}`+rate+`)))`, "{{grpc_method}}")}},
	}},
	{"Mirror", []panel{
		{title: "Mirrors not serving", unit: "short",
			description: "Mirrors not ready, or not confirmed current by the backend within --mirror-max-staleness (cut off from etcd): their reads go to the backend (alert: TopodMirrorNotServing).",
			targets:     []target{q(`sum by (instance) (topod_mirror_not_serving{`+topod+`})`, "{{instance}}")}},
		{title: "Upstream watch restarts", unit: "short",
			description: "Full re-lists of a mirrored prefix after topod's watch on the backend broke (alert: TopodUpstreamWatchRestarts); and the backend watches held.",
			targets: []target{
				q(`sum by (instance) (increase(topod_mirror_relists_total{`+topod+`}`+rate+`))`, "re-lists {{instance}}"),
				q(`sum by (instance) (topod_upstream_watches{`+topod+`})`, "upstream watches {{instance}}"),
			}},
		{title: "Mirror lag: a write's wait for the mirror", unit: "s",
			description: "How long a write through the etcd endpoint waited, after etcd's answer, for the backend's watch to bring it into the mirror: the mirror's lag behind etcd, in time.",
			targets: []target{
				q(`histogram_quantile(0.99, sum by (le) (rate(topod_etcd_write_visible_wait_seconds_bucket{`+topod+`}`+rate+`)))`, "p99"),
				q(`histogram_quantile(0.5, sum by (le) (rate(topod_etcd_write_visible_wait_seconds_bucket{`+topod+`}`+rate+`)))`, "p50"),
			}},
		{title: "Writes returning before the mirror has them", unit: "ops",
			description: "The writer's next read then goes to the backend (alert: TopodWritesOutrunMirror).",
			targets:     []target{q(`sum by (instance) (rate(topod_write_mirror_lag_total{`+topod+`}`+rate+`))`, "{{instance}}")}},
		{title: "Mirror reads by operation and result", unit: "ops",
			description: "hit: served from memory; miss: the mirror had not reached the revision asked for, or was not serving, and the backend answered.",
			targets:     []target{q(`sum by (op, result) (rate(topod_mirror_reads_total{`+topod+`}`+rate+`))`, "{{op}} {{result}}")}},
		{title: "Mirror memory", unit: "bytes",
			targets: []target{q(`sum by (instance) (topod_mirror_bytes{`+topod+`})`, "{{instance}}")}},
		{title: "Mirror evictions: values not held", unit: "short",
			description: "Files whose values are over --mirror-max-bytes: reads of them go to the backend (alert: TopodMirrorValuesEvicted).",
			targets:     []target{q(`sum by (instance) (topod_mirror_evicted_values{`+topod+`})`, "{{instance}}")}},
		{title: "Events", unit: "ops",
			description: "Events in from the backend's watches; file events out to watching clients; changes coalesced for a watcher that had one pending.",
			targets: []target{
				q(`sum (rate(topod_events_in_total{`+topod+`}`+rate+`))`, "in"),
				q(`sum (rate(topod_events_out_total{`+topod+`}`+rate+`))`, "out"),
				q(`sum (rate(topod_coalesced_events_total{`+topod+`}`+rate+`))`, "coalesced"),
			}},
	}},
	{"Watches and streams", []panel{
		{title: "Open watches", unit: "short",
			description: "topod.v1 watches (WatchStream), etcd-endpoint watches, and the watches served from the mirrors (alert: TopodWatchesNearLimit).",
			targets: []target{
				q(`sum (topod_watches{`+topod+`})`, "topod.v1"),
				q(`sum (topod_etcd_watches{`+topod+`})`, "etcd endpoint"),
				q(`sum (topod_mirror_subscriptions{`+topod+`})`, "mirror subscriptions"),
			}},
		{title: "Open streams by kind", unit: "short",
			targets: []target{
				q(`sum by (kind) (topod_downstream_streams{`+topod+`})`, "{{kind}}"),
				q(`sum (topod_etcd_watch_streams{`+topod+`})`, "etcd watch streams"),
			}},
		{title: "Watch opens", unit: "ops",
			description: "full: the whole state sent; resume: a reconnecting client sent the revision it had reached (files unchanged since are not sent again).",
			targets: []target{
				q(`sum by (start) (rate(topod_watch_opens_total{`+topod+`}`+rate+`))`, "{{start}}"),
				q(`sum (rate(topod_watch_resume_unchanged_files_total{`+topod+`}`+rate+`))`, "files not resent"),
			}},
		{title: "Bytes sent to watchers", unit: "Bps",
			targets: []target{q(`sum by (instance) (rate(topod_bytes_out_total{`+topod+`}`+rate+`))`, "{{instance}}")}},
		{title: "etcd watch window", unit: "short",
			description: "Events held for etcd-endpoint watches to start from, and those dropped to stay in bounds; watches canceled as compacted (alert: TopodEtcdWatchesCompacted).",
			targets: []target{
				q(`sum (topod_etcd_watch_window_events{`+topod+`})`, "events held"),
				q(`sum (increase(topod_etcd_watch_window_evicted_total{`+topod+`}`+rate+`))`, "events evicted"),
				q(`sum (increase(topod_etcd_watches_compacted_total{`+topod+`}`+rate+`))`, "watches compacted"),
			}},
		{title: "etcd watch send delay p99", unit: "s",
			description: "From an event's arrival in the watch window to its send: topod's own part of an etcd watch's delivery.",
			targets:     []target{q(`histogram_quantile(0.99, sum by (le) (rate(topod_etcd_watch_send_delay_seconds_bucket{`+topod+`}`+rate+`)))`, "p99")}},
	}},
	{"Blobs", []panel{
		{title: "Blob cache hit ratio", unit: "percentunit",
			description: "Lookups of the blob cache that found the blob (alert: TopodBlobCacheThrashing, under 50% while evicting).",
			targets: []target{q(`sum (rate(topod_blob_cache_hits_total{`+topod+`}`+rate+`))
/ (sum (rate(topod_blob_cache_hits_total{`+topod+`}`+rate+`)) + sum (rate(topod_blob_cache_misses_total{`+topod+`}`+rate+`)))`, "hit ratio")}},
		{title: "Blob cache lookups and evictions", unit: "ops",
			targets: []target{
				q(`sum (rate(topod_blob_cache_hits_total{`+topod+`}`+rate+`))`, "hits"),
				q(`sum (rate(topod_blob_cache_misses_total{`+topod+`}`+rate+`))`, "misses (read from the blob store)"),
				q(`sum (rate(topod_blob_cache_evictions_total{`+topod+`}`+rate+`))`, "evictions"),
			}},
		{title: "Blob cache size", unit: "bytes",
			description: "Bounded by --blob-cache-bytes.",
			targets:     []target{q(`sum by (instance) (topod_blob_cache_bytes{`+topod+`})`, "{{instance}}")}},
		{title: "Blob requests", unit: "reqps",
			targets: []target{q(`sum by (grpc_method) (rate(grpc_server_handled_total{`+topod+`, `+blobMethods+`}`+rate+`))`, "{{grpc_method}}")}},
		{title: "Blob fetch errors", unit: "reqps",
			description: "Blob requests answered with a server-side error: the blob store (S3, MinIO) failing under topod (alert: TopodBlobStoreErrors); and etcd-endpoint watches waiting on values they cannot read (TopodEtcdWatchReadRetries).",
			targets: []target{
				q(`sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{`+topod+`, `+blobMethods+`, `+serverCodes+`}`+rate+`)) > 0`, "{{grpc_method}} {{grpc_code}}"),
				q(`sum (rate(topod_etcd_watch_read_retries_total{`+topod+`}`+rate+`))`, "etcd watch read retries"),
			}},
		{title: "Blob garbage collection",
			text: "Blob garbage collection (`topod serve --gc-interval`, `topod gc`) exports no metrics yet: each run is logged by topod (its marks, the blobs deleted and kept). See deploy/monitoring/README.md."},
	}},
	{"Locks and elections", []panel{
		{title: "Lock streams open (held or waiting)", unit: "short",
			description: "A lock stream lives from the lock's request to its release (alert: TopodLocksPilingUp, over 50 for 15 minutes). Campaign and WatchLeader streams: elections.",
			targets:     []target{q(`sum by (kind) (topod_downstream_streams{`+topod+`, kind=~"lock|campaign|watch_leader"})`, "{{kind}}")}},
		{title: "Lock requests by code", unit: "reqps",
			description: "Lock streams ended, by code.",
			targets:     []target{q(`sum by (grpc_code) (rate(grpc_server_handled_total{`+topod+`, grpc_service="topod.v1.Topo", grpc_method="Lock"}`+rate+`)) > 0`, "{{grpc_code}}")}},
		{title: "Lock wait + hold", unit: "s",
			description: "A lock stream's lifetime: the wait for the lock and its hold together (buckets end at 26 s: longer holds read as 26 s).",
			targets: []target{
				q(`histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{`+topod+`, grpc_service="topod.v1.Topo", grpc_method="Lock"}`+rate+`)))`, "p99"),
				q(`histogram_quantile(0.5, sum by (le) (rate(grpc_server_handling_seconds_bucket{`+topod+`, grpc_service="topod.v1.Topo", grpc_method="Lock"}`+rate+`)))`, "p50"),
			}},
		{title: "Lock TTL refusals", unit: "ops",
			description: "Locks asked with a TTL over --max-lock-ttl.",
			targets:     []target{q(`sum (rate(topod_limit_refusals_total{`+topod+`, limit="lock_ttl"}`+rate+`))`, "refused")}},
	}},
	{"Limits and authorization", []panel{
		{title: "Limit refusals by limit", unit: "ops",
			description: "Requests refused for going over a resource limit (alert: TopodLimitRefusals).",
			targets:     []target{q(`sum by (limit) (rate(topod_limit_refusals_total{`+topod+`}`+rate+`))`, "{{limit}}")}},
		{title: "Authorization denials", unit: "ops",
			description: "Requests the authorization policy (--authz-policy) refused, by principal and method (alert: TopodAuthzDenials).",
			targets:     []target{q(`sum by (principal, method) (rate(topod_authz_denied_total{`+topod+`}`+rate+`))`, "{{principal}} {{method}}")}},
		{title: "Authorization policy loads", unit: "short",
			description: "Policies applied, and changes of the policy file refused (alert: TopodAuthzPolicyReloadFailing).",
			targets: []target{
				q(`sum (increase(topod_authz_policy_loads_total{`+topod+`}`+rate+`))`, "loaded"),
				q(`sum (increase(topod_authz_policy_reload_errors_total{`+topod+`}`+rate+`))`, "refused"),
			}},
	}},
	{"Backend", []panel{
		{title: "Backend requests by type", unit: "ops",
			targets: []target{q(`sum by (type) (rate(topod_backend_requests_total{`+topod+`}`+rate+`))`, "{{type}}")}},
		{title: "Linearizable reads", unit: "ops",
			description: "Linearizable reads from memory, and the backend revision requests made for them (one per batch).",
			targets: []target{
				q(`sum (rate(topod_consistent_reads_total{`+topod+`}`+rate+`))`, "reads"),
				q(`sum (rate(topod_consistent_read_revision_requests_total{`+topod+`}`+rate+`))`, "revision requests"),
			}},
		{title: "etcd endpoint ranges", unit: "ops",
			targets: []target{q(`sum by (consistency, source) (rate(topod_etcd_range_reads_total{`+topod+`}`+rate+`))`, "{{consistency}} from {{source}}")}},
	}},
	{"vschemad", []panel{
		{title: "Requests by route and code", unit: "reqps",
			targets: []target{q(`sum by (method, route, code) (rate(vschemad_http_requests_total{`+vschemad+`}`+rate+`))`, "{{method}} {{route}} {{code}}")}},
		{title: "Writes by action and result", unit: "short",
			description: "written, dry_run, refused (4xx: nothing written) or failed (5xx: see the audit log) (alerts: VschemadWritesFailing, VschemadRefusedWritesSpike).",
			targets:     []target{q(`sum by (action, result) (increase(vschemad_writes_total{`+vschemad+`}`+rate+`)) > 0`, "{{action}} {{result}}")}},
		{title: "Applies and refusals, last hour", unit: "short",
			targets: []target{q(`sum by (result) (increase(vschemad_writes_total{`+vschemad+`, action="apply"}[1h]))`, "{{result}}")}},
		{title: "Request duration p99 by route", unit: "s",
			description: "A write waits for every cell's SrvVSchema (alert: VschemadSlowWrites).",
			targets:     []target{q(`histogram_quantile(0.99, sum by (method, route, le) (rate(vschemad_http_request_duration_seconds_bucket{`+vschemad+`}`+rate+`)))`, "{{method}} {{route}}")}},
		{title: "Unauthenticated requests and audit log errors", unit: "short",
			description: "401s (alert: VschemadUnauthenticatedRequests) and failed audit log appends, which refuse writes (alert: VschemadAuditLogErrors).",
			targets: []target{
				q(`sum (increase(vschemad_http_requests_total{`+vschemad+`, code="401"}`+rate+`))`, "401"),
				q(`sum (increase(vschemad_audit_log_errors_total{`+vschemad+`}`+rate+`))`, "audit log errors"),
			}},
	}},
	{"Processes", []panel{
		{title: "CPU", unit: "percentunit",
			targets: []target{q(`sum by (job, instance) (rate(process_cpu_seconds_total{job=~"$job|$vschemad_job"}`+rate+`))`, "{{job}} {{instance}}")}},
		{title: "Resident memory", unit: "bytes",
			targets: []target{q(`sum by (job, instance) (process_resident_memory_bytes{job=~"$job|$vschemad_job"})`, "{{job}} {{instance}}")}},
		{title: "Goroutines", unit: "short",
			targets: []target{q(`sum by (job, instance) (go_goroutines{job=~"$job|$vschemad_job"})`, "{{job}} {{instance}}")}},
		{title: "Go heap in use", unit: "bytes",
			targets: []target{q(`sum by (job, instance) (go_memstats_heap_inuse_bytes{job=~"$job|$vschemad_job"})`, "{{job}} {{instance}}")}},
	}},
}

// variables are the dashboard's template variables: the data source and
// the jobs and instances to show.
func variables() []any {
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	query := func(name, label, q string, all bool) map[string]any {
		v := map[string]any{
			"name": name, "label": label, "type": "query", "datasource": ds,
			"query":      map[string]any{"query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
			"definition": q, "refresh": 2, "sort": 1, "multi": true, "includeAll": all,
			"current": map[string]any{},
		}
		if all {
			v["allValue"] = ".*"
		}
		return v
	}
	return []any{
		map[string]any{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
			"current": map[string]any{}, "refresh": 1, "hide": 0},
		query("job", "topod job", `label_values(topod_upstream_watches, job)`, false),
		query("instance", "topod instance", `label_values(topod_upstream_watches{job=~"$job"}, instance)`, true),
		query("vschemad_job", "vschemad job", `label_values(vschemad_audit_log_errors_total, job)`, false),
	}
}

// dashboard builds the Grafana dashboard (schema 39): a collapsed-free
// row per area, three panels across.
func dashboard() map[string]any {
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	var panels []any
	id, y := 1, 0
	for _, r := range rows {
		panels = append(panels, map[string]any{
			"type": "row", "id": id, "title": r.title, "collapsed": false, "panels": []any{},
			"gridPos": map[string]any{"h": 1, "w": 24, "x": 0, "y": y},
		})
		id++
		y++
		for i, p := range r.panels {
			pos := map[string]any{"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i/3)*8}
			if p.text != "" {
				panels = append(panels, map[string]any{
					"type": "text", "id": id, "title": p.title, "gridPos": pos,
					"options": map[string]any{"mode": "markdown", "content": p.text},
				})
				id++
				continue
			}
			var targets []any
			for j, tg := range p.targets {
				targets = append(targets, map[string]any{
					"refId": string(rune('A' + j)), "datasource": ds, "expr": tg.expr, "legendFormat": tg.legend, "range": true,
				})
			}
			panels = append(panels, map[string]any{
				"type": "timeseries", "id": id, "title": p.title, "description": p.description, "datasource": ds, "gridPos": pos,
				"targets": targets,
				"fieldConfig": map[string]any{
					"defaults":  map[string]any{"unit": p.unit, "min": 0, "custom": map[string]any{"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}},
					"overrides": []any{},
				},
				"options": map[string]any{
					"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
					"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
				},
			})
			id++
		}
		y += (len(r.panels) + 2) / 3 * 8
	}
	return map[string]any{
		"uid": "topod-overview", "title": "topod", "description": "topod and vschemad: requests, the mirror, watches and streams, blobs, locks, limits and authorization, the backend, vschemad's writes. Generated by deploy/monitoring/dashboard_gen_test.go.",
		"tags": []string{"topod", "vitess"}, "schemaVersion": 39, "version": 1, "editable": true, "graphTooltip": 1,
		"time": map[string]any{"from": "now-6h", "to": "now"}, "refresh": "30s", "timezone": "",
		"templating": map[string]any{"list": variables()},
		"annotations": map[string]any{"list": []any{map[string]any{
			"builtIn": 1, "datasource": map[string]any{"type": "grafana", "uid": "-- Grafana --"}, "enable": true, "hide": true,
			"iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
		}}},
		"panels": panels,
	}
}

// TestDashboardIsGenerated: dashboards/topod.json is what dashboard()
// builds (-update writes it).
func TestDashboardIsGenerated(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(dashboard()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll("dashboards", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dashboardFile, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Fatalf("%s is not what dashboard_gen_test.go generates: run go test ./deploy/monitoring/ -run TestDashboardIsGenerated -update", dashboardFile)
	}
}
