package report

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart is one chart written: its base name (name.svg, name.png) and
// title.
type Chart struct {
	Name  string
	Title string
}

// series is one line of a chart.
type series struct {
	label  string
	xys    plotter.XYs
	dashed bool
}

// WriteCharts draws the run's charts into dir, each as SVG and PNG, and
// returns them.
func WriteCharts(r *Run, dir string) ([]Chart, error) {
	var charts []Chart
	add := func(name, title, xlabel, ylabel string, lines []series) error {
		if len(lines) == 0 {
			return nil
		}
		if err := draw1(filepath.Join(dir, name), title, xlabel, ylabel, lines); err != nil {
			return err
		}
		charts = append(charts, Chart{Name: name, Title: title})
		return nil
	}
	over := func(f func(Sample) float64, topod bool) []series {
		var out []series
		for _, t := range r.Topologies {
			if topod && t.TopodReplicas == 0 {
				continue
			}
			s := series{label: t.Name, dashed: topod}
			for _, x := range t.Series {
				s.xys = append(s.xys, plotter.XY{X: x.T, Y: f(x)})
			}
			if len(s.xys) > 0 {
				out = append(out, s)
			}
		}
		return out
	}
	withTopod := func(etcd, topod func(Sample) float64) []series {
		a := over(etcd, false)
		for i := range a {
			a[i].label = "etcd, " + a[i].label
		}
		b := over(topod, true)
		for i := range b {
			b[i].label = "topod, " + b[i].label
		}
		return append(a, b...)
	}
	const xl = "seconds since the topology's start"
	steps := []func() error{
		func() error {
			return add("etcd_requests", "etcd requests/s (all members)", xl, "requests/s", over(func(s Sample) float64 { return s.EtcdReqPerSec }, false))
		},
		func() error {
			return add("etcd_bytes", "etcd bytes/s received + sent (all members)", xl, "MiB/s", over(func(s Sample) float64 { return (s.EtcdRxPerSec + s.EtcdTxPerSec) / (1 << 20) }, false))
		},
		func() error {
			return add("etcd_watchers", "etcd watchers (etcd_debugging_mvcc_watcher_total)", xl, "watchers", over(func(s Sample) float64 { return s.Watchers }, false))
		},
		func() error {
			return add("cpu", "CPU: etcd (solid) and topod (dashed)", xl, "cores", withTopod(func(s Sample) float64 { return s.EtcdCPU }, func(s Sample) float64 { return s.TopodCPU }))
		},
		func() error {
			return add("rss", "RSS: etcd (solid) and topod (dashed)", xl, "MiB", withTopod(func(s Sample) float64 { return s.EtcdRSS / (1 << 20) }, func(s Sample) float64 { return s.TopodRSS / (1 << 20) }))
		},
	}
	for _, sc := range []string{"steady", "vschema-vtctld", "vschema-vschemad", "etcd-leader-change", "etcd-compaction", "etcd-leader-kill"} {
		steps = append(steps, func() error {
			var lines []series
			for _, t := range r.Topologies {
				s := t.Scenario(sc)
				if s == nil || s.Client.Change == nil || len(s.Client.Change.Samples) == 0 {
					continue
				}
				lines = append(lines, cdf(t.Name, s.Client.Change.Samples))
			}
			return add("delivery_"+sc, "delivery to the vtgates, "+sc+" (CDF)", "seconds from the change's write", "fraction of vtgates", lines)
		})
	}
	steps = append(steps, func() error {
		var lines []series
		for _, t := range r.Topologies {
			s := t.Scenario("vtgate-restart")
			if s == nil || s.Client.VtgateStart == nil || len(s.Client.VtgateStart.Samples) == 0 {
				continue
			}
			lines = append(lines, cdf(t.Name, s.Client.VtgateStart.Samples))
		}
		return add("vtgate_start", "vtgate start to serving every keyspace, rolling restart (CDF)", "seconds", "fraction of vtgates", lines)
	})
	for _, f := range steps {
		if err := f(); err != nil {
			return charts, err
		}
	}
	return charts, nil
}

func cdf(label string, sorted []float64) series {
	s := series{label: label}
	for i, v := range sorted {
		s.xys = append(s.xys, plotter.XY{X: v, Y: float64(i+1) / float64(len(sorted))})
	}
	return s
}

func draw1(base, title, xlabel, ylabel string, lines []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for i, s := range lines {
		l, err := plotter.NewLine(s.xys)
		if err != nil {
			return fmt.Errorf("report: chart %s: %w", base, err)
		}
		l.Color = plotutil.Color(i % 7)
		l.Width = vg.Points(1.2)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(s.label, l)
	}
	p.Legend.Left = false
	for _, ext := range []string{".svg", ".png"} {
		if err := p.Save(9*vg.Inch, 4.5*vg.Inch, base+ext); err != nil {
			return fmt.Errorf("report: chart %s%s: %w", base, ext, err)
		}
	}
	return nil
}
