package faults

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/topoplugin"
)

var (
	soakFlag    = flag.Duration("faults.soak", 0, "how long the soak runs (default 5m, 30m in the long mode)")
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
// rewritten every 30 s; for -faults.soak (5 minutes, 30 in the long
// mode). The replicas' RSS, goroutines and open streams are sampled every
// 30 s and must stay flat (the last quarter's mean within 25% of the
// second quarter's), with no error.
func TestSoak(t *testing.T) {
	needSuite(t)
	soakFor := *soakFlag
	if soakFor == 0 {
		soakFor = 5 * time.Minute
		if *long {
			soakFor = 30 * time.Minute
		}
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
	soakCtx, stop := context.WithTimeout(ctx, soakFor)
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
			s, err := c.sample(ctx, time.Since(begin))
			if err != nil {
				t.Fatalf("soak %v: %v", time.Since(begin).Round(time.Second), err)
			}
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
		soakFor, *soakVTGates, *soakVTGates*(p.Keyspaces+1), events.Load(), errs.Load())
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
// streams from its /metrics. A replica that cannot be read fails the soak:
// a dead one must not read as flat.
func (c *cluster) sample(ctx context.Context, at time.Duration) (sample, error) {
	s := sample{at: at}
	for i, r := range c.replicas {
		stat, err := r.Stats()
		if err != nil {
			return s, fmt.Errorf("topod%d: %w", i, err)
		}
		m, err := harness.Scrape(ctx, r.MetricsURL())
		if err != nil {
			return s, fmt.Errorf("topod%d: %w", i, err)
		}
		goroutines, ok1 := m.Lookup("go_goroutines")
		streams, ok2 := m.Lookup("topod_downstream_streams")
		if !ok1 || !ok2 {
			return s, fmt.Errorf("topod%d exports no go_goroutines or no topod_downstream_streams", i)
		}
		s.rss = append(s.rss, stat.RSS)
		s.goroutines = append(s.goroutines, int64(goroutines))
		s.streams = append(s.streams, int64(streams))
	}
	return s, nil
}
