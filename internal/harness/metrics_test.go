package harness

import (
	"math"
	"strings"
	"testing"
)

// TestHistogramQuantile: quantiles of the observations between two
// scrapes, interpolated within a bucket as histogram_quantile does.
func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	before := Histogram{Bounds: []float64{1, 2, 4, inf}, Counts: []float64{5, 5, 5, 5}}
	// Since before: 10 observations in (0,1], 10 in (2,4], none above.
	after := Histogram{Bounds: before.Bounds, Counts: []float64{15, 15, 25, 25}}
	h := after.Since(before)
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want float64
	}{
		{"median, end of the first bucket", h, 0.5, 1},
		{"a quarter, within the first", h, 0.25, 0.5},
		{"p99, within (2,4]", h, 0.99, 2 + 2*9.8/10},
		{"nothing observed", Histogram{}, 0.99, 0},
		{"past the last finite bound", Histogram{Bounds: []float64{1, inf}, Counts: []float64{0, 3}}, 0.5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
	if got := h.Count(); got != 20 {
		t.Errorf("Count = %v, want 20", got)
	}
}

// TestMetricsLookup: sums over label sets matching a filter; a metric not
// exported is missing, not 0.
func TestMetricsLookup(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(`# TYPE reqs_total counter
reqs_total{method="get",code="ok"} 3
reqs_total{method="get",code="err"} 1
reqs_total{method="put",code="ok"} 5
# TYPE lat histogram
lat_bucket{le="1"} 2
lat_bucket{le="+Inf"} 4
lat_sum 7
lat_count 4
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		match  []string
		want   float64
		wantOK bool
	}{
		{"reqs_total", nil, 9, true},
		{"reqs_total", []string{"method", "get"}, 4, true},
		{"reqs_total", []string{"method", "get", "code", "ok"}, 3, true},
		{"reqs_total", []string{"method", "delete"}, 0, false},
		{"lat", nil, 4, true},
		{"renamed_total", nil, 0, false},
	} {
		got, ok := m.Lookup(tt.name, tt.match...)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Lookup(%s, %q) = %v, %v; want %v, %v", tt.name, tt.match, got, ok, tt.want, tt.wantOK)
		}
	}
	if got := m.ByLabel("reqs_total", "method", "code", "ok"); got["get"] != 3 || got["put"] != 5 {
		t.Errorf("ByLabel = %v", got)
	}
}
