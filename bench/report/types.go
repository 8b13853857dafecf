// Package report holds the figures of the JD etcd load benchmark (issue
// 12) and writes them: report.json (every figure), report.md (the
// headline table, a table per topology and scenario, what was measured and
// how, with the Vitess source of each access pattern) and charts, SVG and
// PNG, drawn with gonum/plot.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Run is one benchmark run: the fleet, every topology under test and what
// each scenario did to it.
type Run struct {
	Started    time.Time  `json:"started"`
	Finished   time.Time  `json:"finished"`
	Seconds    float64    `json:"seconds"`
	Machine    Machine    `json:"machine"`
	Profile    Profile    `json:"profile"`
	Settings   []Setting  `json:"settings"`
	Topologies []Topology `json:"topologies"`
	Checks     []Check    `json:"checks"`
	Notes      []string   `json:"notes"`
	Sources    []Source   `json:"sources"`
}

// Machine is where the run ran, and how busy the machine was.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GoMaxProcs int    `json:"gomaxprocs"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	FileLimit  uint64 `json:"file_limit"`
	DriverPeak int64  `json:"driver_peak_rss_bytes"`
}

// Profile is the fleet.
type Profile struct {
	Name           string `json:"name"`
	Keyspaces      int    `json:"keyspaces"`
	Shards         int    `json:"shards"`
	Tablets        int    `json:"tablets"`
	Tables         int    `json:"tables"`
	Cells          int    `json:"cells"`
	VtgatesPerCell int    `json:"vtgates_per_cell"`
	Vtgates        int    `json:"vtgates"`
	VTOrcs         int    `json:"vtorcs"`
	SrvVSchemaFull int    `json:"srvvschema_bytes"`
}

// Setting is one knob of the run.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Check is one consistency check of the run's figures.
type Check struct {
	Topology string `json:"topology"`
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Detail   string `json:"detail"`
}

// Source is one access pattern and where Vitess has it.
type Source struct {
	Component string `json:"component"`
	Pattern   string `json:"pattern"`
	Vitess    string `json:"vitess"` // files, relative to vitess.io/vitess v0.24.4
	How       string `json:"how"`    // called directly, or re-created
}

// Topology is one topology under test.
type Topology struct {
	Name            string     `json:"name"`
	Kind            string     `json:"kind"` // etcd2 or topod
	EtcdClusters    int        `json:"etcd_clusters"`
	EtcdMembers     int        `json:"etcd_members"`
	TopodReplicas   int        `json:"topod_replicas"`
	SrvVSchemaBytes int        `json:"srvvschema_bytes"`
	Note            string     `json:"note,omitempty"`
	Conns           int64      `json:"client_connections"`
	Planned         []string   `json:"planned_scenarios,omitempty"` // the scenarios it was to run, in order
	Scenarios       []Scenario `json:"scenarios"`
	Series          []Sample   `json:"series"`
	Error           string     `json:"error,omitempty"`
}

// Scenario returns the scenario named name, or nil.
func (t *Topology) Scenario(name string) *Scenario {
	for i := range t.Scenarios {
		if t.Scenarios[i].Name == name {
			return &t.Scenarios[i]
		}
	}
	return nil
}

// Scenario is what one scenario did, on one topology.
type Scenario struct {
	Name    string   `json:"name"`
	StartS  float64  `json:"start_s"` // seconds since the topology's start
	Seconds float64  `json:"seconds"`
	Etcd    Etcd     `json:"etcd"`
	Topod   *Topod   `json:"topod,omitempty"`
	Client  Client   `json:"client"`
	Notes   []string `json:"notes,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Etcd is etcd's side of a scenario, summed over every member of every
// cluster of the topology: counters as differences over the scenario,
// gauges at their peak (from the samples and the end).
type Etcd struct {
	Requests       map[string]float64 `json:"requests"` // by gRPC method: unary calls handled; Watch: watch requests (create/cancel) received; LeaseKeepAlive: keep-alives received
	RequestsTotal  float64            `json:"requests_total"`
	RequestsPerSec float64            `json:"requests_per_s"`
	RxBytes        float64            `json:"rx_bytes"`
	TxBytes        float64            `json:"tx_bytes"`
	BytesPerSec    float64            `json:"bytes_per_s"` // rx + tx
	WatchStreams   float64            `json:"watch_streams_opened"`
	WatchersPeak   float64            `json:"watchers_peak"`
	StreamsPeak    float64            `json:"watch_streams_peak"`
	CPUSeconds     float64            `json:"cpu_s"`
	RSSPeak        float64            `json:"rss_peak_bytes"`
	DBSize         float64            `json:"db_size_bytes"`
	DBGrowth       float64            `json:"db_growth_bytes"`
}

// Topod is topod's side of a scenario, summed over its replicas.
type Topod struct {
	Requests      map[string]float64 `json:"requests"` // gRPC calls handled by method (streams: when they end)
	RequestsTotal float64            `json:"requests_total"`
	StreamsOpened float64            `json:"streams_opened"`
	Backend       map[string]float64 `json:"backend_requests"` // topod_backend_requests_total by type
	CPUSeconds    float64            `json:"cpu_s"`
	RSSPeak       float64            `json:"rss_peak_bytes"`
}

// Client is the clients' side of a scenario.
type Client struct {
	Calls       map[string]int64 `json:"calls"`                  // topo.Conn calls by kind, from just before the servers' first read to just after their last
	CallsInner  map[string]int64 `json:"calls_inner,omitempty"`  // ... from just after their first read to just before their last
	ReadErrors  int64            `json:"read_errors"`            // failed calls plus failed steps: a step's failure usually is a call's too
	FailedCalls map[string]int64 `json:"failed_calls,omitempty"` // failed topo.Conn calls by "kind: error class" (timeout, deadline exceeded, a gRPC code, ...)
	FailedSteps map[string]int64 `json:"failed_steps,omitempty"` // failed steps of the clients' start sequences and refreshes, by "client: step: error class"
	WatchErrors int64            `json:"watch_errors"`
	Change      *Delivery        `json:"change,omitempty"`        // the scenario's change, to the vtgates (or the primaries)
	TabletSeen  *Delivery        `json:"tablet_change,omitempty"` // ... to the tablets that watch it
	VtgateStart *Dist            `json:"vtgate_start,omitempty"`
	Write       float64          `json:"write_s,omitempty"` // the scenario's writes, start to end
}

// Delivery is how one change reached its watchers: per watcher, the time
// from the start of the change's write until the watcher had it.
type Delivery struct {
	What     string    `json:"what"`
	Watchers int       `json:"watchers"`
	Seen     int       `json:"seen"`
	Missed   int       `json:"missed"`
	P50      float64   `json:"p50_s"`
	P99      float64   `json:"p99_s"`
	Max      float64   `json:"max_s"` // every watcher had it
	Samples  []float64 `json:"samples_s,omitempty"`
}

// Dist is a distribution of durations, in seconds.
type Dist struct {
	N       int       `json:"n"`
	P50     float64   `json:"p50_s"`
	P99     float64   `json:"p99_s"`
	Max     float64   `json:"max_s"`
	Samples []float64 `json:"samples_s,omitempty"`
}

// Sample is the servers' state at one moment: rates over the interval
// before it.
type Sample struct {
	T              float64 `json:"t_s"`
	EtcdReqPerSec  float64 `json:"etcd_requests_per_s"`
	EtcdRxPerSec   float64 `json:"etcd_rx_bytes_per_s"`
	EtcdTxPerSec   float64 `json:"etcd_tx_bytes_per_s"`
	Watchers       float64 `json:"etcd_watchers"`
	WatchStreams   float64 `json:"etcd_watch_streams"`
	EtcdCPU        float64 `json:"etcd_cpu_cores"`
	EtcdRSS        float64 `json:"etcd_rss_bytes"`
	EtcdDB         float64 `json:"etcd_db_bytes"`
	TopodCPU       float64 `json:"topod_cpu_cores,omitempty"`
	TopodRSS       float64 `json:"topod_rss_bytes,omitempty"`
	TopodReqPerSec float64 `json:"topod_requests_per_s,omitempty"`
	Scenario       string  `json:"scenario,omitempty"`
}

// WriteJSON writes r to path.
func (r *Run) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// ReadJSON reads a report.json.
func ReadJSON(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &r, nil
}
