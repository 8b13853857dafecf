package faults

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/topoplugin"
)

var (
	soakFor     = flag.Duration("faults.soak", 30*time.Minute, "how long the soak (long mode) runs")
	soakVTGates = flag.Int("faults.soak-vtgates", 5, "simulated vtgates in the soak, each watching every keyspace of its cell")
)

// soakInterval is the time between samples.
const soakInterval = 30 * time.Second

// sample is one reading of the replicas' figures.
type sample struct {
	at         time.Duration
	rss        []int64 // bytes, per replica
	goroutines []int64
	streams    []int64
}

// TestSoak (long mode): the JD topology (1,911 keyspaces, 4,438 shards,
// 11,416 tablets, the 13.5 MiB SrvVSchema) on three topod replicas over a
// three-member etcd; simulated vtgates each watching their cell's
// SrvVSchema and every keyspace's SrvKeyspace; tablet records updated
// every 100 ms, a keyspace's SrvKeyspace every second, the SrvVSchema
// rewritten every 30 s; for -faults.soak. The replicas' RSS, goroutines and
// open streams are sampled every 30 s and must stay flat (the last
// quarter's mean within 25% of the second quarter's), with no error.
func TestSoak(t *testing.T) {
	needSuite(t)
	if !*long {
		t.Skip("the soak runs in the long mode (make test-faults FAULTS_LONG=1)")
	}
	c := startCluster(t, clusterOptions{replicas: 3, metrics: true, inlineLimit: record.DefaultInlineLimit})
	ctx := context.Background()
	ts, err := topo.OpenServer(topoplugin.Name, c.addrs(), "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	p := jd.JD()
	start := time.Now()
	if err := jdtopo.CreateCells(ctx, ts, p, c.addrs(), "/vitess"); err != nil {
		t.Fatal(err)
	}
	if err := jdtopo.Write(ctx, ts, p); err != nil {
		t.Fatal(err)
	}
	t.Logf("JD topology written in %v", time.Since(start).Round(time.Second))
	cell := p.CellNames()[0]

	var errs atomic.Int64
	var events atomic.Int64
	fail := func(what string, err error) {
		if errs.Add(1) <= 10 {
			t.Errorf("%s: %v", what, err)
		}
	}
	soakCtx, stop := context.WithTimeout(ctx, *soakFor)
	defer stop()
	var wg sync.WaitGroup
	for g := range *soakVTGates {
		vts, err := topo.OpenServer(topoplugin.Name, c.addrs(), "/vitess/global")
		if err != nil {
			t.Fatal(err)
		}
		defer vts.Close()
		watch := func(what string, changes func() (bool, error)) {
			wg.Go(func() {
				for soakCtx.Err() == nil {
					more, err := changes()
					if err != nil && soakCtx.Err() == nil {
						fail(fmt.Sprintf("vtgate %d: %s", g, what), err)
					}
					if !more {
						return
					}
					events.Add(1)
				}
			})
		}
		_, vsch, err := vts.WatchSrvVSchema(soakCtx, cell)
		if err != nil {
			t.Fatal(err)
		}
		watch("SrvVSchema", func() (bool, error) {
			d, ok := <-vsch
			if !ok {
				return false, nil
			}
			return true, d.Err
		})
		for i := range p.Keyspaces {
			_, ch, err := vts.WatchSrvKeyspace(soakCtx, cell, p.KeyspaceName(i))
			if err != nil {
				t.Fatal(err)
			}
			watch("SrvKeyspace", func() (bool, error) {
				d, ok := <-ch
				if !ok {
					return false, nil
				}
				return true, d.Err
			})
		}
	}
	// Churn.
	tablets := p.CellTablets(cell)
	every := func(d time.Duration, what string, f func(context.Context, int) error) {
		wg.Go(func() {
			tick := time.NewTicker(d)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-soakCtx.Done():
					return
				case <-tick.C:
				}
				opCtx, cancel := context.WithTimeout(ctx, time.Minute)
				if err := f(opCtx, n); err != nil && soakCtx.Err() == nil {
					fail(what, err)
				}
				cancel()
			}
		})
	}
	every(100*time.Millisecond, "tablet churn", func(ctx context.Context, n int) error {
		tb := tablets[rand.IntN(len(tablets))]
		_, err := ts.UpdateTabletFields(ctx, tb.Alias, func(t *topodatapb.Tablet) error {
			t.Hostname = fmt.Sprintf("host-%d", n)
			return nil
		})
		return err
	})
	every(time.Second, "SrvKeyspace churn", func(ctx context.Context, n int) error {
		name, srv := p.SrvKeyspace(rand.IntN(p.Keyspaces))
		return ts.UpdateSrvKeyspace(ctx, cell, name, srv)
	})
	every(30*time.Second, "SrvVSchema churn", func(ctx context.Context, n int) error {
		return ts.RebuildSrvVSchema(ctx, []string{cell})
	})

	var samples []sample
	tick := time.NewTicker(soakInterval)
	begin := time.Now()
	for soakCtx.Err() == nil {
		select {
		case <-soakCtx.Done():
		case <-tick.C:
			s := c.sample(time.Since(begin))
			samples = append(samples, s)
			t.Logf("soak %v: RSS %v MiB, goroutines %v, streams %v, watch events %d, errors %d",
				s.at.Round(time.Second), mib(s.rss), s.goroutines, s.streams, events.Load(), errs.Load())
		}
	}
	tick.Stop()
	wg.Wait()
	if len(samples) < 8 {
		t.Fatalf("%d samples: run the soak longer (-faults.soak)", len(samples))
	}
	q := len(samples) / 4
	for r := range c.replicas {
		for _, fig := range []struct {
			name string
			get  func(sample) int64
		}{
			{"RSS (MiB)", func(s sample) int64 { return s.rss[r] >> 20 }},
			{"goroutines", func(s sample) int64 { return s.goroutines[r] }},
			{"open streams", func(s sample) int64 { return s.streams[r] }},
		} {
			early, late := mean(samples[q:2*q], fig.get), mean(samples[3*q:], fig.get)
			fmt.Printf("soak topod%d %-12s second quarter %.0f, last quarter %.0f\n", r, fig.name, early, late)
			if late > early*1.25+1 {
				t.Errorf("topod%d %s grew: %.0f in the second quarter, %.0f in the last", r, fig.name, early, late)
			}
		}
	}
	fmt.Printf("soak: %v, %d simulated vtgates (%d watches), %d watch events, %d errors\n",
		*soakFor, *soakVTGates, *soakVTGates*(p.Keyspaces+1), events.Load(), errs.Load())
}

func mean(ss []sample, get func(sample) int64) float64 {
	var sum int64
	for _, s := range ss {
		sum += get(s)
	}
	return float64(sum) / float64(len(ss))
}

func mib(b []int64) []int64 {
	out := make([]int64, len(b))
	for i, v := range b {
		out[i] = v >> 20
	}
	return out
}

// sample reads each replica's RSS from /proc and its goroutines and open
// streams from its /metrics.
func (c *cluster) sample(at time.Duration) sample {
	s := sample{at: at}
	for _, r := range c.replicas {
		s.rss = append(s.rss, rssOf(r.proc.Pid()))
		m := scrape(r.metricsAddr)
		s.goroutines = append(s.goroutines, int64(m["go_goroutines"]))
		s.streams = append(s.streams, int64(m["topod_downstream_streams"]))
	}
	return s
}

// rssOf is a process's resident memory, in bytes.
func rssOf(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// scrape sums each metric family of a Prometheus text endpoint over its
// labels.
func scrape(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}
