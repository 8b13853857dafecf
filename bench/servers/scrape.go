package servers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a Prometheus endpoint: metric families by name.
type Metrics map[string]*dto.MetricFamily

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// Scrape reads the Prometheus endpoint at url.
func Scrape(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
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
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return Metrics(mfs), nil
}

// Sum adds up metric name over the label sets that have every label of
// match (label=value pairs): counters, gauges, untyped values. A metric
// not exported reads 0.
func (m Metrics) Sum(name string, match ...string) float64 {
	mf := m[name]
	if mf == nil {
		return 0
	}
	var sum float64
	for _, x := range mf.GetMetric() {
		if !hasLabels(x, match) {
			continue
		}
		switch {
		case x.Counter != nil:
			sum += x.Counter.GetValue()
		case x.Gauge != nil:
			sum += x.Gauge.GetValue()
		case x.Untyped != nil:
			sum += x.Untyped.GetValue()
		}
	}
	return sum
}

// ByLabel returns metric name summed per value of label, over the label
// sets that have every label of match.
func (m Metrics) ByLabel(name, label string, match ...string) map[string]float64 {
	out := map[string]float64{}
	mf := m[name]
	if mf == nil {
		return out
	}
	for _, x := range mf.GetMetric() {
		if !hasLabels(x, match) {
			continue
		}
		key := ""
		for _, l := range x.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		var v float64
		switch {
		case x.Counter != nil:
			v = x.Counter.GetValue()
		case x.Gauge != nil:
			v = x.Gauge.GetValue()
		case x.Untyped != nil:
			v = x.Untyped.GetValue()
		}
		out[key] += v
	}
	return out
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
