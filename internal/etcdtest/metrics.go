package etcdtest

import (
	"context"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricsURL returns the URL of member i's Prometheus metrics
// (http://127.0.0.1:port/metrics). The values are process-wide: see the
// package documentation.
func (c *Cluster) MetricsURL(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.members[i].metricsURL
	u.Path = "/metrics"
	return u.String()
}

// Metrics scrapes member i's metrics endpoint and returns the metric
// families by name.
func (c *Cluster) Metrics(ctx context.Context, i int) (map[string]*dto.MetricFamily, error) {
	url := c.MetricsURL(i)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcdtest: scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: parse %s: %w", url, err)
	}
	return mfs, nil
}

// MetricValue scrapes member i and returns the metric name summed over all
// its label sets: the value of a counter, gauge or untyped metric, the
// sample count of a histogram or summary. A metric not exported (yet) reads
// 0.
//
// For example etcd_debugging_mvcc_watcher_total (watchers open) or
// etcd_network_client_grpc_sent_bytes_total (bytes sent to clients).
func (c *Cluster) MetricValue(ctx context.Context, i int, name string) (float64, error) {
	mfs, err := c.Metrics(ctx, i)
	if err != nil {
		return 0, err
	}
	return Sum(mfs[name]), nil
}

// Sum adds up a metric family over its label sets (counters, gauges,
// untyped; sample counts for histograms and summaries). A nil family is 0.
func Sum(mf *dto.MetricFamily) float64 {
	if mf == nil {
		return 0
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.Summary.GetSampleCount())
		}
	}
	return sum
}
