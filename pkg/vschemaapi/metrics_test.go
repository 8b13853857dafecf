package vschemaapi_test

import (
	"net/http"
	"testing"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
)

// TestMetrics: the handler's metrics, on /metrics, count an apply, a dry run,
// a refused apply (an unknown vindex type), an unauthenticated write, a
// read and a request of an unknown method (counted as "other") are counted
// by route, code and write result.
func TestMetrics(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce")
	tokens := vschemaapi.WriteTokens(t, "tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	srv := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{Tokens: tokens})
	url := srv.URL + "/api/v1/keyspaces/commerce/vschema"
	auth := []string{"Authorization", "Bearer s3cret"}
	calls := []struct {
		method, url, body string
		hdr               []string
		want              int
	}{
		{"PUT", url, `{"tables": {"t": {}}}`, auth, http.StatusOK},
		{"PUT", url + "?dry_run=true", `{"tables": {"u": {}}}`, auth, http.StatusOK},
		{"PUT", url, `{"sharded": true, "vindexes": {"v": {"type": "no_such_vindex"}}, "tables": {"t": {"column_vindexes": [{"column": "id", "name": "v"}]}}}`, auth, http.StatusBadRequest},
		{"PUT", url, `{"tables": {"t": {}}}`, nil, http.StatusUnauthorized},
		{"GET", url, "", auth, http.StatusOK},
		{"BREW", url, "", auth, http.StatusNotFound},
	}
	for _, c := range calls {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		if code, out, _ := vschematest.Call(t, nil, c.method, c.url, body, c.hdr...); code != c.want {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.url, code, out, c.want)
		}
	}
	m, err := harness.Scrape(t.Context(), srv.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	route := "/api/v1/keyspaces/{ks}/vschema"
	for _, w := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"vschemad_writes_total", []string{"action", "apply", "result", "written"}, 1},
		{"vschemad_writes_total", []string{"action", "apply", "result", "dry_run"}, 1},
		{"vschemad_writes_total", []string{"action", "apply", "result", "refused"}, 2},
		{"vschemad_http_requests_total", []string{"method", "PUT", "route", route, "code", "200"}, 2},
		{"vschemad_http_requests_total", []string{"method", "PUT", "route", route, "code", "400"}, 1},
		{"vschemad_http_requests_total", []string{"method", "PUT", "route", route, "code", "401"}, 1},
		{"vschemad_http_requests_total", []string{"method", "GET", "route", route, "code", "200"}, 1},
		{"vschemad_http_requests_total", []string{"method", "other", "route", "/api/", "code", "404"}, 1},
		{"vschemad_audit_log_errors_total", nil, 0},
	} {
		if got := m.Sum(w.name, w.match...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.match, got, w.want)
		}
	}
	if n := m.Histogram("vschemad_http_request_duration_seconds", "method", "PUT", "route", route).Count(); n != 4 {
		t.Errorf("vschemad_http_request_duration_seconds{PUT} count %v, want 4", n)
	}
	if m["vschemad_audit_log_errors_total"] == nil || m["go_goroutines"] == nil || m["process_cpu_seconds_total"] == nil {
		t.Errorf("missing the audit errors counter, or the Go and process collectors")
	}
}
