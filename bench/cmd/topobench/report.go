package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/topod-io/topod/internal/harness"
)

// report is everything one run measured.
type report struct {
	Started        time.Time      `json:"started"`
	GoMaxProcs     int            `json:"gomaxprocs"`
	Cell           string         `json:"cell"`
	StockKeyspaces int            `json:"stock_keyspaces"`
	StockNote      string         `json:"stock_keyspaces_note"`
	Watch          []*watchResult `json:"watch"`
	Storm          []*stormResult `json:"storm"`
	Keyspaces      []*ksResult    `json:"keyspaces,omitempty"`
	KeyspacesNotes []string       `json:"-"` // folded into Notes
	Notes          []string       `json:"notes"`
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText prints the report as plain-text tables, one column per
// scenario.
func (r *report) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Watch) > 0 {
		fmt.Fprintf(tw, "WATCH: watchers of /<root>/%s/SrvVSchema, each on a connection of its own; %d one-keyspace changes\n", r.Cell, r.Watch[0].Rounds)
		head := []string{""}
		for _, x := range r.Watch {
			head = append(head, sideLabel(x.Side, x.Replicas)+fmt.Sprintf(" @%d ks", x.Keyspaces))
		}
		row(tw, head...)
		rows := []struct {
			name string
			f    func(*watchResult) string
		}{
			{"watchers", func(x *watchResult) string { return fmt.Sprint(x.Watchers) }},
			{"SrvVSchema size", func(x *watchResult) string { return fmtBytes(float64(x.SrvVSchemaBytes)) }},
			{"plugin blob cache", func(x *watchResult) string { return or(x.BlobCache, "-") }},
			{"open all watchers (connect, Watch, initial value)", func(x *watchResult) string { return fmtDur(x.Setup) }},
			{"etcd watchers (etcd_debugging_mvcc_watcher_total)", func(x *watchResult) string { return fmt.Sprint(x.EtcdWatchers) }},
			{"etcd watch streams (..._watch_stream_total)", func(x *watchResult) string { return fmt.Sprint(x.EtcdWatchStreams) }},
			{"etcd bytes sent, opening the watchers", func(x *watchResult) string { return fmtBytes(x.EtcdSentSetup) }},
			{"etcd bytes sent per change", func(x *watchResult) string { return fmtBytes(x.EtcdSentPerChange) }},
			{"writer's Update (median)", func(x *watchResult) string { return fmtDur(x.Write) }},
			{"delivery p50 (from Update start)", func(x *watchResult) string { return fmtDur(x.DeliveryP50) }},
			{"delivery p99", func(x *watchResult) string { return fmtDur(x.DeliveryP99) }},
			{"delivery p99, from the Update's return", func(x *watchResult) string { return fmtDur(x.AfterWriteP99) }},
			{"all watchers saw it (worst change)", func(x *watchResult) string { return fmtDur(x.AllSaw) }},
			{"missed / wrong-size deliveries", func(x *watchResult) string { return fmt.Sprintf("%d / %d", x.Missed, x.WrongSize) }},
			{"topod CPU, opening the watchers", func(x *watchResult) string { return topodOnly(x.Side, fmtCPU(x.TopodCPUSetup)) }},
			{"topod CPU per change", func(x *watchResult) string { return topodOnly(x.Side, fmtCPU(x.TopodCPUPerChange)) }},
			{"topod RSS, all replicas (end / peak)", func(x *watchResult) string {
				return topodOnly(x.Side, fmtBytes(float64(x.TopodRSS))+" / "+fmtBytes(float64(x.TopodPeakRSS)))
			}},
			{"driver CPU per change (etcd + clients)", func(x *watchResult) string { return fmtCPU(x.DriverCPUPerChange) }},
		}
		for _, rw := range rows {
			cells := []string{rw.name}
			for _, x := range r.Watch {
				cells = append(cells, rw.f(x))
			}
			row(tw, cells...)
		}
		row(tw)
	}
	if len(r.Storm) > 0 {
		x0 := r.Storm[0]
		fmt.Fprintf(tw, "READ STORM (vitess#20465): %d clients each read %d shard records (%d keyspaces), %d at a time, after a SrvVSchema change\n",
			x0.Clients, x0.Shards, x0.Keyspaces, x0.Concurrency)
		head := []string{""}
		for _, x := range r.Storm {
			head = append(head, sideLabel(x.Side, x.Replicas))
		}
		row(tw, head...)
		rows := []struct {
			name string
			f    func(*stormResult) string
		}{
			{"shard reads made", func(x *stormResult) string { return fmt.Sprint(x.Reads) }},
			{"etcd Range requests (gRPC KV/Range)", func(x *stormResult) string { return fmt.Sprint(x.EtcdRangeRPCs) }},
			{"etcd KV requests, all methods", func(x *stormResult) string { return fmt.Sprint(x.EtcdKVRPCs) }},
			{"etcd ranges executed (etcd_mvcc_range_total)", func(x *stormResult) string { return fmt.Sprint(x.EtcdMVCCRanges) }},
			{"etcd bytes sent", func(x *stormResult) string { return fmtBytes(x.EtcdSent) }},
			{"time to finish (change start to last read)", func(x *stormResult) string { return fmtDur(x.Wall) }},
			{"client finished p50 / p99", func(x *stormResult) string { return fmtDur(x.ClientP50) + " / " + fmtDur(x.ClientP99) }},
			{"read errors", func(x *stormResult) string { return fmt.Sprint(x.ReadErrors) }},
			{"topod CPU during the storm", func(x *stormResult) string { return topodOnly(x.Side, fmtCPU(x.TopodCPU)) }},
			{"topod RSS, all replicas (end / peak)", func(x *stormResult) string {
				return topodOnly(x.Side, fmtBytes(float64(x.TopodRSS))+" / "+fmtBytes(float64(x.TopodPeakRSS)))
			}},
		}
		for _, rw := range rows {
			cells := []string{rw.name}
			for _, x := range r.Storm {
				cells = append(cells, rw.f(x))
			}
			row(tw, cells...)
		}
		row(tw)
	}
	if len(r.Keyspaces) > 0 {
		r.writeKeyspaces(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "- "+n)
	}
	for _, x := range r.Watch {
		for _, e := range x.Errors {
			fmt.Fprintf(w, "! watch %s @%d ks: %s\n", sideLabel(x.Side, x.Replicas), x.Keyspaces, e)
		}
	}
	for _, x := range r.Storm {
		for _, e := range x.Errors {
			fmt.Fprintf(w, "! storm %s: %s\n", sideLabel(x.Side, x.Replicas), e)
		}
	}
	for _, x := range r.Keyspaces {
		for _, e := range x.Errors {
			fmt.Fprintf(w, "! keyspaces %s: %s\n", ksLabel(x), e)
		}
	}
	return nil
}

// ksLabel is the column head of a keyspaces scenario.
func ksLabel(x *ksResult) string {
	if x.Shape == shapeTablets {
		return sideLabel(x.Side, x.Replicas) + fmt.Sprintf(", %d tablets", x.Clients)
	}
	return sideLabel(x.Side, x.Replicas) + fmt.Sprintf(", %d vtgates", x.Clients)
}

// writeKeyspaces prints the keyspaces phase's table.
func (r *report) writeKeyspaces(tw io.Writer) {
	x0 := r.Keyspaces[0]
	fmt.Fprintf(tw, "KEYSPACES: %d keyspaces in %s; vtgates watch every SrvKeyspace + the SrvVSchema, each on a topo.Server of its own; tablets their keyspace's SrvKeyspace, primaries their shard; one change, then a burst of %d updates\n",
		x0.Keyspaces, r.Cell, x0.Burst.Updates)
	head := []string{""}
	for _, x := range r.Keyspaces {
		head = append(head, ksLabel(x))
	}
	row(tw, head...)
	vtgates := func(x *ksResult, s string) string {
		if x.Shape != shapeVtgates {
			return "-"
		}
		return s
	}
	delivery := func(d ksDelivery) string {
		return fmtDur(d.P50) + " / " + fmtDur(d.P99) + " / " + fmtDur(d.Max)
	}
	rss := func(open, stalled, end, peak int64) string {
		s := fmtBytes(float64(open))
		if stalled > 0 {
			s += " / " + fmtBytes(float64(stalled))
		} else {
			s += " / -"
		}
		return s + " / " + fmtBytes(float64(end)) + " (" + fmtBytes(float64(peak)) + ")"
	}
	rows := []struct {
		name string
		f    func(*ksResult) string
	}{
		{"clients (topo.Servers: a global + a cell connection each)", func(x *ksResult) string {
			if x.Shape == shapeTablets {
				return fmt.Sprintf("%d tablets (%d, %d tablets each)", x.Clients, x.Servers, x.TabletsPerServer)
			}
			return fmt.Sprintf("%d vtgates (%d)", x.Clients, x.Servers)
		}},
		{"watches (SrvKeyspace + SrvVSchema or Shard)", func(x *ksResult) string {
			return fmt.Sprintf("%d (%d + %d)", x.Watches, x.SrvKeyspaceWatches, x.OtherWatches)
		}},
		{"open all watches (connect, watch, initial values)", func(x *ksResult) string { return fmtDur(x.Open) }},
		{"etcd watchers (etcd_debugging_mvcc_watcher_total)", func(x *ksResult) string { return fmt.Sprint(x.EtcdWatchers) }},
		{"etcd watch streams (..._watch_stream_total)", func(x *ksResult) string { return fmt.Sprint(x.EtcdWatchStreams) }},
		{"stalled clients (never read): clients / watches", func(x *ksResult) string {
			return vtgates(x, fmt.Sprintf("%d / %d", x.Stalled, x.StalledWatches))
		}},
		{"etcd RSS: open / +stalled / end (peak)", func(x *ksResult) string {
			return rss(x.EtcdRSSOpen, x.EtcdRSSStalled, x.EtcdRSSEnd, x.EtcdPeakRSS)
		}},
		{"topod RSS, all replicas: open / +stalled / end (peak)", func(x *ksResult) string {
			return topodOnly(x.Side, rss(x.TopodRSSOpen, x.TopodRSSStalled, x.TopodRSSEnd, x.TopodPeakRSS))
		}},
		{"one change: rounds / deliveries", func(x *ksResult) string { return fmt.Sprintf("%d / %d", x.One.Rounds, x.One.Deliveries) }},
		{"one change: p50 / p99 / max", func(x *ksResult) string { return delivery(x.One) }},
		{"one change inside topod: etcd watch hop p50 / p99; fan-out p50 / p99", func(x *ksResult) string {
			if x.OneInside == nil {
				return "-"
			}
			i := x.OneInside
			return fmt.Sprintf("%s / %s; %s / %s", fmtDur(i.HopP50), fmtDur(i.HopP99), fmtDur(i.SendP50), fmtDur(i.SendP99))
		}},
		{"one change with the stalled clients: p50 / p99 / max", func(x *ksResult) string {
			if x.OneStalled == nil {
				return "-"
			}
			return delivery(*x.OneStalled)
		}},
		{"burst: updates / deliveries", func(x *ksResult) string { return fmt.Sprintf("%d / %d", x.Burst.Updates, x.Burst.Deliveries) }},
		{"burst: time to write it (one writer, sequential)", func(x *ksResult) string { return fmtDur(x.Burst.Write) }},
		{"burst: delivery p50 / p99 / max", func(x *ksResult) string { return delivery(x.Burst) }},
		{"etcd CPU for the burst", func(x *ksResult) string { return fmtCPU(x.EtcdCPUBurst) }},
		{"topod CPU for the burst", func(x *ksResult) string { return topodOnly(x.Side, fmtCPU(x.TopodCPUBurst)) }},
		{"missed / duplicated deliveries", func(x *ksResult) string { return fmt.Sprintf("%d / %d", x.Missed, x.Duplicated) }},
		{"driver CPU: opening / burst (clients + writer)", func(x *ksResult) string {
			return fmtCPU(x.DriverCPUOpen) + " / " + fmtCPU(x.DriverCPUBurst)
		}},
	}
	for _, rw := range rows {
		cells := []string{rw.name}
		for _, x := range r.Keyspaces {
			cells = append(cells, rw.f(x))
		}
		row(tw, cells...)
	}
	row(tw)
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t")+"\t")
}

func sideLabel(side string, replicas int) string {
	switch side {
	case "topod":
		return fmt.Sprintf("topod x%d", replicas)
	case "topod-streams":
		return fmt.Sprintf("topod x%d, streams", replicas)
	case "topod-nocache":
		return fmt.Sprintf("topod x%d, no cache", replicas)
	case "etcd2-on-topod":
		return fmt.Sprintf("stock etcd2 on topod x%d", replicas)
	}
	return side + " (stock)"
}

func topodOnly(side, s string) string {
	if !strings.HasPrefix(side, "topod") && side != "etcd2-on-topod" {
		return "-"
	}
	return s
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fmtBytes prints a byte count with a binary unit.
func fmtBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

// fmtCPU prints a CPU time, which /proc counts in clock ticks.
func fmtCPU(d time.Duration) string {
	if d < harness.ClockTick {
		return "< " + fmtDur(harness.ClockTick)
	}
	return fmtDur(d)
}

// fmtDur prints a duration with three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}
