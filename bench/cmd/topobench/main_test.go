package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logWriter sends the driver's progress lines to the test log, with the
// time since the test started.
type logWriter struct {
	mu    sync.Mutex
	t     *testing.T
	start time.Time
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Logf("%6.2fs %s", time.Since(w.start).Seconds(), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSmoke runs the whole driver on a tiny configuration — 20 watchers,
// a 5-keyspace side-by-side SrvVSchema and a 20-keyspace "JD" one, a storm
// of 5 clients over 10 shards, topod with and without its cache — and checks
// that what it measures adds up: stock etcd2 costs etcd one watcher per
// client and one Range per read, topod one watcher in all and (cached) no
// reads, and every watcher sees every change.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs topod")
	}
	stderr = &logWriter{t: t, start: time.Now()}
	t.Cleanup(func() { stderr = os.Stderr })
	if raceEnabled {
		topodBuildFlags = []string{"-race"}
	}
	cfg, err := parseFlags([]string{
		"--watchers=20", "--rounds=2", "--stock-keyspaces=5", "--jd-keyspaces=20", "--jd-plugin-watchers=0",
		"--storm-clients=5", "--storm-shards=10", "--storm-concurrency=4",
		"--compare-uncached", "--round-timeout=30s",
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run took %v", time.Since(start))
	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + text.String())
	if err := json.NewEncoder(&bytes.Buffer{}).Encode(rep); err != nil {
		t.Fatal(err)
	}

	wantWatch := []string{"etcd2", "topod", "topod-nocache", "topod-streams", "topod"}
	if len(rep.Watch) != len(wantWatch) {
		t.Fatalf("%d watch results, want %d", len(rep.Watch), len(wantWatch))
	}
	for i, w := range rep.Watch {
		if w.Side != wantWatch[i] {
			t.Errorf("watch result %d is %s, want %s", i, w.Side, wantWatch[i])
		}
		if w.Missed != 0 || w.WrongSize != 0 || len(w.Errors) != 0 {
			t.Errorf("%s: %d missed, %d wrong-size deliveries, errors %q", w.Side, w.Missed, w.WrongSize, w.Errors)
		}
		if w.DeliveryP50 <= 0 || w.DeliveryP99 < w.DeliveryP50 || w.AllSaw < w.DeliveryP99 {
			t.Errorf("%s: delivery p50 %v, p99 %v, all %v", w.Side, w.DeliveryP50, w.DeliveryP99, w.AllSaw)
		}
		switch w.Side {
		case "etcd2", "topod-nocache":
			if w.EtcdWatchers != 20 {
				t.Errorf("%s: etcd has %v watchers, want one per watcher (20)", w.Side, w.EtcdWatchers)
			}
		default:
			if w.EtcdWatchers != 1 {
				t.Errorf("%s: etcd has %v watchers, want 1 (one topod replica)", w.Side, w.EtcdWatchers)
			}
			if w.TopodRSS <= 0 || w.TopodCPUSetup < 0 {
				t.Errorf("%s: topod RSS %v, CPU %v", w.Side, w.TopodRSS, w.TopodCPUSetup)
			}
		}
	}
	if rep.Watch[0].EtcdSentPerChange < float64(20*rep.Watch[0].SrvVSchemaBytes) {
		t.Errorf("etcd2: etcd sent %v bytes per change, want at least 20 x %d", rep.Watch[0].EtcdSentPerChange, rep.Watch[0].SrvVSchemaBytes)
	}

	wantStorm := []string{"etcd2", "topod", "topod-nocache", "etcd2-on-topod"}
	if len(rep.Storm) != len(wantStorm) {
		t.Fatalf("%d storm results, want %d", len(rep.Storm), len(wantStorm))
	}
	for i, s := range rep.Storm {
		if s.Side != wantStorm[i] {
			t.Errorf("storm result %d is %s, want %s", i, s.Side, wantStorm[i])
		}
		if s.Reads != 50 || s.ReadErrors != 0 {
			t.Errorf("%s: %d reads, %d errors %q, want 50 and none", s.Side, s.Reads, s.ReadErrors, s.Errors)
		}
		switch s.Side {
		case "etcd2", "topod-nocache":
			if s.EtcdRangeRPCs != 50 {
				t.Errorf("%s: %v etcd Range requests, want 50", s.Side, s.EtcdRangeRPCs)
			}
		case "topod", "etcd2-on-topod":
			// Linearizable reads from topod's memory: one etcd Range per
			// batch of reads confirms its revision.
			if s.EtcdRangeRPCs >= 50 {
				t.Errorf("%s: %v etcd Range requests, want fewer than one per read (50)", s.Side, s.EtcdRangeRPCs)
			}
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--watchers=0"},
		{"--plugin-cache=big"},
		{"--phases=watch,nap"},
		{"--jd-clients=telepathy"},
		{"--storm-shards=100000"},
		{"--ks-vtgates=25,0"},
		{"--ks-vtgates=many"},
		{"--ks-burst=0"},
		{"--ks-tablets=-2"},
		{"extra"},
	} {
		stderr = &bytes.Buffer{} // the flag package's complaints
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	stderr = os.Stderr
	cfg, err := parseFlags([]string{"--topod-flag=--a=1", "--topod-flag=--b"})
	if err != nil || strings.Join(cfg.TopodFlags, " ") != "--a=1 --b" {
		t.Errorf("--topod-flag twice: %q, %v", cfg.TopodFlags, err)
	}
	cfg, err = parseFlags([]string{"--phases=keyspaces", "--ks-vtgates=25, 50"})
	if err != nil || !slices.Equal(cfg.KsVtgateCounts, []int{25, 50}) {
		t.Errorf("--ks-vtgates=25,50: %v, %v", cfg.KsVtgateCounts, err)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

// TestKeyspaces runs the keyspaces phase at a tiny scale — 20 keyspaces,
// 2 vtgate-like clients and a stalled one, 30 tablets, a burst of 5 — on
// stock etcd2 and topod, and checks that every watcher saw every update of
// its keyspaces exactly once, and that the watch counts add up: stock etcd2
// costs etcd one watcher per watch, topod one in all.
func TestKeyspaces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs topod and etcd")
	}
	stderr = &logWriter{t: t, start: time.Now()}
	t.Cleanup(func() { stderr = os.Stderr })
	if raceEnabled {
		topodBuildFlags = []string{"-race"}
	}
	cfg, err := parseFlags([]string{
		"--phases=keyspaces", "--ks-keyspaces=20", "--ks-vtgates=2", "--ks-stalled=1",
		"--ks-tablets=30", "--ks-tablets-per-conn=8", "--ks-burst=5", "--ks-one-rounds=3", "--round-timeout=30s",
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + text.String())
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	if len(rep.Watch) != 0 || len(rep.Storm) != 0 {
		t.Errorf("--phases=keyspaces ran %d watch and %d storm scenarios", len(rep.Watch), len(rep.Storm))
	}

	lay := newKsLayout(20, 30, 5)
	tabletsOf := map[int]int{}
	for _, tb := range lay.tablets {
		tabletsOf[tb.ks]++
	}
	burstTablets := 0
	for _, k := range lay.burst {
		burstTablets += tabletsOf[k]
	}
	want := []struct{ side, shape string }{
		{"etcd2", shapeVtgates}, {"topod", shapeVtgates}, {"etcd2-on-topod", shapeVtgates},
		{"etcd2", shapeTablets}, {"topod", shapeTablets}, {"etcd2-on-topod", shapeTablets},
	}
	if len(rep.Keyspaces) != len(want) {
		t.Fatalf("%d keyspaces results, want %d", len(rep.Keyspaces), len(want))
	}
	for i, x := range rep.Keyspaces {
		name := ksLabel(x)
		if x.Side != want[i].side || x.Shape != want[i].shape {
			t.Errorf("keyspaces result %d is %s %s, want %s %s", i, x.Side, x.Shape, want[i].side, want[i].shape)
		}
		if x.Missed != 0 || x.Duplicated != 0 || len(x.Errors) != 0 {
			t.Errorf("%s: %d missed, %d duplicated deliveries, errors %q", name, x.Missed, x.Duplicated, x.Errors)
		}
		var wantWatches, wantOne, wantBurst int
		if x.Shape == shapeVtgates {
			wantWatches, wantOne, wantBurst = 2*21, 3*2, 2*5
			if x.StalledWatches != 21 || x.OneStalled == nil || x.OneStalled.Deliveries != 3*2 {
				t.Errorf("%s: %d stalled watches, one change with them %+v; want 21 and 3 rounds of 2 deliveries", name, x.StalledWatches, x.OneStalled)
			}
		} else {
			wantWatches, wantOne, wantBurst = 30+x.OtherWatches, 3*tabletsOf[lay.one], burstTablets
			if x.OtherWatches == 0 || x.Servers != 4 {
				t.Errorf("%s: %d shard watches on %d topo.Servers, want some on 4", name, x.OtherWatches, x.Servers)
			}
		}
		if inside := x.OneInside; (x.Side == "etcd2-on-topod") != (inside != nil) || (inside != nil && (inside.Sends < wantOne || inside.SendP99 <= 0 || inside.HopP99 <= 0)) {
			t.Errorf("%s: inside topod %+v; want its fan-out and etcd hop for stock etcd2 on topod only, %d sends at least", name, inside, wantOne)
		}
		if x.Watches != wantWatches || x.One.Deliveries != wantOne || x.Burst.Deliveries != wantBurst || x.Burst.Updates != 5 {
			t.Errorf("%s: %d watches, %d + %d deliveries of %d updates; want %d watches, %d + %d deliveries of 5",
				name, x.Watches, x.One.Deliveries, x.Burst.Deliveries, x.Burst.Updates, wantWatches, wantOne, wantBurst)
		}
		if x.EtcdRSSOpen <= 0 || x.EtcdPeakRSS < x.EtcdRSSEnd {
			t.Errorf("%s: etcd RSS %d, peak %d", name, x.EtcdRSSOpen, x.EtcdPeakRSS)
		}
		switch x.Side {
		case "etcd2":
			if int(x.EtcdWatchers) != x.Watches {
				t.Errorf("%s: etcd has %v watchers, want one per watch (%d)", name, x.EtcdWatchers, x.Watches)
			}
		default:
			if x.EtcdWatchers != 1 {
				t.Errorf("%s: etcd has %v watchers, want 1 (one topod replica)", name, x.EtcdWatchers)
			}
			if x.TopodRSSOpen <= 0 || x.TopodPeakRSS <= 0 {
				t.Errorf("%s: topod RSS %d, peak %d", name, x.TopodRSSOpen, x.TopodPeakRSS)
			}
		}
	}
}
