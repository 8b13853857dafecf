package harness

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a Prometheus endpoint: metric families by name.
type Metrics map[string]*dto.MetricFamily

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// Scrape reads the Prometheus endpoint at url (text format).
func Scrape(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return m, nil
}

// ScrapeHandler reads the metrics h serves at /metrics, without a network:
// for a server in the test's process (a toposerver's DebugHandler).
func ScrapeHandler(h http.Handler) (Metrics, error) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("scrape handler: status %d", rec.Code)
	}
	m, err := ParseMetrics(rec.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape handler: %w", err)
	}
	return m, nil
}

// ParseMetrics parses Prometheus text.
func ParseMetrics(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Metrics(mfs), nil
}

// Lookup adds up metric name over its label sets that have every label of
// match (name, value pairs: "grpc_method", "Range"): the values of
// counters, gauges and untyped metrics, the sample counts of histograms and
// summaries. ok is false if no label set matches: a metric renamed, or not
// exported, is not read as 0.
func (m Metrics) Lookup(name string, match ...string) (sum float64, ok bool) {
	for _, x := range m[name].GetMetric() {
		if !hasLabels(x, match) {
			continue
		}
		ok = true
		sum += value(x)
	}
	return sum, ok
}

// Sum is Lookup's sum, 0 for a metric not exported (yet): for figures that
// start at nothing, such as a counter before its first event.
func (m Metrics) Sum(name string, match ...string) float64 {
	sum, _ := m.Lookup(name, match...)
	return sum
}

// ByLabel returns metric name summed per value of label, over the label
// sets that have every label of match.
func (m Metrics) ByLabel(name, label string, match ...string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range m[name].GetMetric() {
		if !hasLabels(x, match) {
			continue
		}
		key := ""
		for _, l := range x.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		out[key] += value(x)
	}
	return out
}

// value is one series' value: a counter's, gauge's or untyped metric's, a
// histogram's or summary's sample count.
func value(x *dto.Metric) float64 {
	switch {
	case x.Counter != nil:
		return x.Counter.GetValue()
	case x.Gauge != nil:
		return x.Gauge.GetValue()
	case x.Untyped != nil:
		return x.Untyped.GetValue()
	case x.Histogram != nil:
		return float64(x.Histogram.GetSampleCount())
	case x.Summary != nil:
		return float64(x.Summary.GetSampleCount())
	}
	return 0
}

func hasLabels(m *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == match[i] && l.GetValue() == match[i+1] {
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

// Histogram is a Prometheus histogram summed over label sets: cumulative
// counts per upper bound, in increasing order (+Inf last).
type Histogram struct {
	Bounds []float64
	Counts []float64
}

// Histogram returns histogram name summed over the label sets that have
// every label of match (empty if it is not exported).
func (m Metrics) Histogram(name string, match ...string) Histogram {
	var h Histogram
	for _, x := range m[name].GetMetric() {
		if x.Histogram == nil || !hasLabels(x, match) {
			continue
		}
		if h.Bounds == nil {
			for _, b := range x.Histogram.GetBucket() {
				h.Bounds = append(h.Bounds, b.GetUpperBound())
			}
			h.Bounds = append(h.Bounds, math.Inf(1))
			h.Counts = make([]float64, len(h.Bounds))
		}
		for i, b := range x.Histogram.GetBucket() {
			if i < len(h.Counts)-1 {
				h.Counts[i] += float64(b.GetCumulativeCount())
			}
		}
		h.Counts[len(h.Counts)-1] += float64(x.Histogram.GetSampleCount())
	}
	return h
}

// Add sums h and o, histograms of the same buckets (either may be empty).
func (h Histogram) Add(o Histogram) Histogram {
	if len(h.Counts) == 0 {
		return o
	}
	out := Histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts)}
	if len(o.Counts) == len(h.Counts) {
		for i := range out.Counts {
			out.Counts[i] += o.Counts[i]
		}
	}
	return out
}

// Count is the number of observations.
func (h Histogram) Count() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// Since is what was observed after earlier, a scrape of the same
// histogram.
func (h Histogram) Since(earlier Histogram) Histogram {
	out := Histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts)}
	if len(earlier.Counts) == len(h.Counts) {
		for i := range out.Counts {
			out.Counts[i] -= earlier.Counts[i]
		}
	}
	return out
}

// Quantile estimates quantile q (0 to 1) as Prometheus's
// histogram_quantile does: linearly within the bucket it falls in; in the
// +Inf bucket, the highest finite bound. 0 when nothing was observed.
func (h Histogram) Quantile(q float64) float64 {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := q * total
	for i, c := range h.Counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.Bounds[i], 1) {
			if i == 0 {
				return 0
			}
			return h.Bounds[i-1]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.Bounds[i-1], h.Counts[i-1]
		}
		if c == below {
			return h.Bounds[i]
		}
		return lo + (h.Bounds[i]-lo)*(rank-below)/(c-below)
	}
	return h.Bounds[len(h.Bounds)-1]
}
