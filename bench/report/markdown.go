package report

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Write writes report.json, report.md and the charts into dir.
func Write(r *Run, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := r.WriteJSON(filepath.Join(dir, "report.json")); err != nil {
		return err
	}
	charts, err := WriteCharts(r, dir)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	if err := WriteMarkdown(f, r, charts); err != nil {
		return err
	}
	return f.Close()
}

// Byte and number formats.
func bytesStr(b float64) string {
	neg := b < 0
	if neg {
		b = -b
	}
	s := ""
	switch {
	case b >= 1<<30:
		s = fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		s = fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		s = fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		s = fmt.Sprintf("%.0f B", b)
	}
	if neg {
		return "-" + s
	}
	return s
}

func num(v float64) string {
	switch {
	case v >= 100 || v == 0:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func dur(s float64) string {
	switch {
	case s >= 10:
		return fmt.Sprintf("%.1f s", s)
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.0f ms", s*1000)
	}
}

// ratio is stock / topod, as "12x" (or "-" when either is 0).
func ratio(stock, topod float64) string {
	if stock <= 0 || topod <= 0 {
		return "-"
	}
	r := stock / topod
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	default:
		return fmt.Sprintf("%.2fx", r)
	}
}

// headline rows: a figure of a scenario.
type metric struct {
	name string
	get  func(t *Topology, s *Scenario) (float64, string) // value (for the ratio), shown
}

var headline = []metric{
	{"etcd requests/s", func(_ *Topology, s *Scenario) (float64, string) {
		return s.Etcd.RequestsPerSec, num(s.Etcd.RequestsPerSec)
	}},
	{"etcd bytes/s (rx+tx)", func(_ *Topology, s *Scenario) (float64, string) {
		return s.Etcd.BytesPerSec, bytesStr(s.Etcd.BytesPerSec) + "/s"
	}},
	{"etcd watchers (peak)", func(_ *Topology, s *Scenario) (float64, string) { return s.Etcd.WatchersPeak, num(s.Etcd.WatchersPeak) }},
	{"etcd CPU", func(_ *Topology, s *Scenario) (float64, string) { return s.Etcd.CPUSeconds, dur(s.Etcd.CPUSeconds) }},
	{"etcd db growth", func(_ *Topology, s *Scenario) (float64, string) { return s.Etcd.DBGrowth, bytesStr(s.Etcd.DBGrowth) }},
	{"topod CPU", func(_ *Topology, s *Scenario) (float64, string) {
		if s.Topod == nil {
			return 0, "-"
		}
		return s.Topod.CPUSeconds, dur(s.Topod.CPUSeconds)
	}},
	{"client outcome", func(_ *Topology, s *Scenario) (float64, string) { return outcome(s) }},
	{"missed / read errors", func(_ *Topology, s *Scenario) (float64, string) {
		missed := 0
		for _, d := range []*Delivery{s.Client.Change, s.Client.TabletSeen} {
			if d != nil {
				missed += d.Missed
			}
		}
		return 0, fmt.Sprintf("%d / %d", missed, s.Client.ReadErrors)
	}},
}

// outcome is a scenario's client-side headline: the time until every
// watcher had its change, or the vtgates' start time.
func outcome(s *Scenario) (float64, string) {
	switch {
	case s.Client.Change != nil:
		d := s.Client.Change
		return d.Max, fmt.Sprintf("all %d saw it in %s (p50 %s)", d.Seen, dur(d.Max), dur(d.P50))
	case s.Client.VtgateStart != nil && s.Client.VtgateStart.N > 0:
		d := s.Client.VtgateStart
		return d.Max, fmt.Sprintf("%d vtgates serving in p50 %s, max %s", d.N, dur(d.P50), dur(d.Max))
	case s.Client.Write > 0:
		return s.Client.Write, "writes took " + dur(s.Client.Write)
	}
	return 0, "-"
}

// WriteMarkdown writes report.md.
func WriteMarkdown(w io.Writer, r *Run, charts []Chart) error {
	b := &strings.Builder{}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("# etcd load at JD scale: stock etcd2 vs topod\n\n")
	p("Profile **%s**: %d keyspaces, %d shards, %d tablets, %d tables, %d cells, %d vtgates (%d a cell), %d VTOrcs; the full SrvVSchema is %s.\n\n",
		r.Profile.Name, r.Profile.Keyspaces, r.Profile.Shards, r.Profile.Tablets, r.Profile.Tables, r.Profile.Cells, r.Profile.Vtgates, r.Profile.VtgatesPerCell, r.Profile.VTOrcs, bytesStr(float64(r.Profile.SrvVSchemaFull)))
	p("Run %s, %s in all, on %d CPUs (GOMAXPROCS %d). Load average (1/5/15 min) before: %s, after: %s. The machine was shared with other work during the run: the load average says how busy it was; every client, etcd member and topod replica ran on these cores.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), dur(r.Seconds), r.Machine.CPUs, r.Machine.GoMaxProcs, r.Machine.LoadBefore, r.Machine.LoadAfter)
	p("Topologies, one after the other, each on fresh servers:\n\n")
	for _, t := range r.Topologies {
		p("- **%s** (%s): %d etcd cluster(s), %d member(s) in all; %d topod replica(s); SrvVSchema %s; %d client connections opened.", t.Name, t.Kind, t.EtcdClusters, t.EtcdMembers, t.TopodReplicas, bytesStr(float64(t.SrvVSchemaBytes)), t.Conns)
		if t.Error != "" {
			p(" Error: %s", t.Error)
		}
		p("\n")
	}
	p("\n## Headline: stock etcd2 vs topod, per scenario\n\n")
	var stock *Topology
	var others []*Topology
	for i := range r.Topologies {
		if r.Topologies[i].Kind == "etcd2" && stock == nil {
			stock = &r.Topologies[i]
		} else {
			others = append(others, &r.Topologies[i])
		}
	}
	cols := []string{"scenario", "figure"}
	all := others
	if stock != nil {
		cols = append(cols, stock.Name)
		all = append([]*Topology{stock}, others...)
	}
	for _, t := range others {
		cols = append(cols, t.Name)
		if stock != nil {
			cols = append(cols, "stock / "+t.Name)
		}
	}
	p("| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for _, sc := range scenarioNames(r) {
		for mi, m := range headline {
			name := ""
			if mi == 0 {
				name = "**" + sc + "**"
			}
			row := []string{name, m.name}
			var sv float64
			if stock != nil {
				s := stock.Scenario(sc)
				if s == nil {
					row = append(row, "-")
				} else {
					var shown string
					sv, shown = m.get(stock, s)
					row = append(row, shown)
				}
			}
			for _, t := range others {
				s := t.Scenario(sc)
				if s == nil {
					row = append(row, "-")
					if stock != nil {
						row = append(row, "-")
					}
					continue
				}
				v, shown := m.get(t, s)
				row = append(row, shown)
				if stock != nil {
					if m.name == "topod CPU" || m.name == "missed / read errors" || m.name == "etcd db growth" && (v <= 0 || sv <= 0) {
						row = append(row, "")
					} else {
						row = append(row, ratio(sv, v))
					}
				}
			}
			p("| %s |\n", strings.Join(row, " | "))
		}
	}
	p("\nRatios are stock / topod: above 1, stock costs etcd that many times more (for the client outcome, stock took that many times longer).\n")

	p("\n## Checks\n\n| topology | check | ok | detail |\n|---|---|---|---|\n")
	for _, c := range r.Checks {
		ok := "yes"
		if !c.OK {
			ok = "**NO**"
		}
		p("| %s | %s | %s | %s |\n", c.Topology, c.Name, ok, strings.Join(strings.Fields(c.Detail), " "))
	}

	if len(charts) > 0 {
		p("\n## Charts\n\nEach topology ran on its own servers, one after the other; the time axis is seconds since that topology's start. SVG beside each PNG.\n\n")
		for _, c := range charts {
			p("### %s\n\n![%s](%s.png)\n\n([SVG](%s.svg))\n\n", c.Title, c.Title, c.Name, c.Name)
		}
	}

	p("## Per topology\n\n")
	for _, t := range all {
		p("### %s\n\n", t.Name)
		if t.Note != "" {
			p("%s\n\n", t.Note)
		}
		p("| scenario | seconds | etcd req/s | etcd requests by method | etcd rx / tx | watch streams opened | watchers / streams (peak) | etcd CPU | etcd RSS (peak) | etcd db (growth) | topod CPU / RSS (peak) | topod requests | client calls | errors (read / watch) | outcome |\n")
		p("|%s\n", strings.Repeat("---|", 15))
		for _, s := range t.Scenarios {
			tp, treq := "-", "-"
			if s.Topod != nil {
				tp = dur(s.Topod.CPUSeconds) + " / " + bytesStr(s.Topod.RSSPeak)
				treq = kv(s.Topod.Requests)
			}
			_, out := outcome(&s)
			if s.Error != "" {
				out += " — error: " + s.Error
			}
			if len(s.Notes) > 0 {
				out += " (" + strings.Join(s.Notes, "; ") + ")"
			}
			p("| %s | %.1f | %s | %s | %s / %s | %.0f | %s / %s | %s | %s | %s (%s) | %s | %s | %s | %d / %d | %s |\n",
				s.Name, s.Seconds, num(s.Etcd.RequestsPerSec), kv(s.Etcd.Requests), bytesStr(s.Etcd.RxBytes), bytesStr(s.Etcd.TxBytes), s.Etcd.WatchStreams,
				num(s.Etcd.WatchersPeak), num(s.Etcd.StreamsPeak), dur(s.Etcd.CPUSeconds), bytesStr(s.Etcd.RSSPeak), bytesStr(s.Etcd.DBSize), bytesStr(s.Etcd.DBGrowth),
				tp, treq, kvi(s.Client.Calls), s.Client.ReadErrors, s.Client.WatchErrors, out)
		}
		p("\n")
		for _, s := range t.Scenarios {
			for _, d := range []*Delivery{s.Client.Change, s.Client.TabletSeen} {
				if d != nil {
					p("- %s, %s: %d of %d watchers, p50 %s, p99 %s, max %s, missed %d\n", s.Name, d.What, d.Seen, d.Watchers, dur(d.P50), dur(d.P99), dur(d.Max), d.Missed)
				}
			}
			if d := s.Client.VtgateStart; d != nil && d.N > 0 {
				p("- %s, vtgate start to serving every keyspace (SrvKeyspaces, SrvVSchema, the cell's tablets): %d vtgates, p50 %s, p99 %s, max %s\n", s.Name, d.N, dur(d.P50), dur(d.P99), dur(d.Max))
			}
			if len(s.Client.FailedCalls)+len(s.Client.FailedSteps) > 0 {
				p("- %s, read errors: failed calls %s; failed steps %s\n", s.Name, kvi(s.Client.FailedCalls), kvi(s.Client.FailedSteps))
			}
		}
		p("\n")
	}

	p("## What the fleet does, and where Vitess does it\n\nFiles are in vitess.io/vitess v0.24.4.\n\n| component | access pattern | Vitess source | here |\n|---|---|---|---|\n")
	for _, s := range r.Sources {
		p("| %s | %s | %s | %s |\n", s.Component, s.Pattern, s.Vitess, s.How)
	}
	p("\n## How it was measured\n\n")
	for _, n := range r.Notes {
		p("- %s\n", n)
	}
	p("\n## Settings\n\n| setting | value |\n|---|---|\n")
	for _, s := range r.Settings {
		p("| %s | %s |\n", s.Name, s.Value)
	}
	p("\nEvery figure is in report.json.\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func scenarioNames(r *Run) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range r.Topologies {
		for _, s := range t.Scenarios {
			if !seen[s.Name] {
				seen[s.Name] = true
				out = append(out, s.Name)
			}
		}
	}
	return out
}

func kv(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v >= 0.5 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.0f", k, math.Round(m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func kvi(m map[string]int64) string {
	f := make(map[string]float64, len(m))
	for k, v := range m {
		f[k] = float64(v)
	}
	return kv(f)
}
