package topoplugin_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// watchAll starts n watches of file spread over conns connections to addr
// and returns their change channels.
func watchAll(t *testing.T, ctx context.Context, addr, root, file string, n, conns int) []<-chan *topo.WatchData {
	t.Helper()
	var cs []*topoplugin.Conn
	for range conns {
		cs = append(cs, newConn(t, addr, root))
	}
	out := make([]<-chan *topo.WatchData, n)
	for i := range n {
		_, changes, err := cs[i%conns].Watch(ctx, file)
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		out[i] = changes
	}
	return out
}

// waitAll waits until every watcher has seen want; others are fine on the
// way (skipping is allowed), errors are not.
func waitAll(t *testing.T, watchers []<-chan *topo.WatchData, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(watchers))
	for i, ch := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.After(timeout)
			for {
				select {
				case wd, ok := <-ch:
					if !ok {
						errs <- fmt.Errorf("watcher %d: closed", i)
						return
					}
					if wd.Err != nil {
						errs <- fmt.Errorf("watcher %d: %v", i, wd.Err)
						return
					}
					if string(wd.Contents) == want {
						return
					}
				case <-deadline:
					errs <- fmt.Errorf("watcher %d: did not see %q in %v", i, want, timeout)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return time.Since(start)
}

// TestFanOut500Watchers: 500 concurrent watchers of one file all converge
// on the last of a burst of 1,000 updates, and topod holds one etcd watch
// for all of them.
func TestFanOut500Watchers(t *testing.T) {
	ctx := t.Context()
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	writer := newConn(t, srv.Addr, "/vitess/cell1")
	if _, err := writer.Create(ctx, "SrvVSchema", []byte("0")); err != nil {
		t.Fatal(err)
	}
	watchers := watchAll(t, ctx, srv.Addr, "/vitess/cell1", "SrvVSchema", 500, 50)
	for i := 1; i <= 1000; i++ {
		if _, err := writer.Update(ctx, "SrvVSchema", []byte(strconv.Itoa(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	took := waitAll(t, watchers, "1000", time.Minute)
	t.Logf("500 watchers converged %v after the last of 1,000 updates", took)
	if got := metric(t, srv, "topod_upstream_watches"); got != 1 {
		t.Errorf("topod holds %v upstream watches for 500 watchers, want 1", got)
	}
}

// TestStalledWatcher: a client that opens a watch and never reads does not
// delay the others, and topod keeps only the latest value for it instead of
// queueing every update.
func TestStalledWatcher(t *testing.T) {
	ctx := t.Context()
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	writer := newConn(t, srv.Addr, "/vitess/cell1")
	value := make([]byte, 16<<10)
	if _, err := writer.Create(ctx, "SrvKeyspace", value); err != nil {
		t.Fatal(err)
	}
	// The stalled client: a raw stream nobody reads.
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stalled, err := topodv1.NewTopoClient(cc).WatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	create := &topodv1.WatchCreate{WatchId: 1, Path: "/vitess/cell1/SrvKeyspace"}
	if err := stalled.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: create}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1000; i++ {
		copy(value, strconv.Itoa(i)+";")
		if _, err := writer.Update(ctx, "SrvKeyspace", value, nil); err != nil {
			t.Fatal(err)
		}
	}
	// 1,000 updates of 16 KiB would be 16 MiB queued for the stalled client;
	// flow control lets a few through, the rest are replaced by newer values
	// (it is the only watcher so far: every coalesced event is its own).
	coalesced := metric(t, srv, "topod_coalesced_events_total")
	t.Logf("%v of 1,000 updates coalesced for the stalled watcher", coalesced)
	if coalesced < 900 {
		t.Errorf("only %v events coalesced: the stalled watcher is being queued", coalesced)
	}

	// Other watchers are not held up by it.
	watchers := watchAll(t, ctx, srv.Addr, "/vitess/cell1", "SrvKeyspace", 20, 5)
	copy(value, "last;")
	if _, err := writer.Update(ctx, "SrvKeyspace", value, nil); err != nil {
		t.Fatal(err)
	}
	took := waitAll(t, watchers, string(value), 10*time.Second)
	t.Logf("20 other watchers saw the next update in %v", took)
}

// TestReplicaKilledUnder100Watchers: with two topod replicas, killing one
// under 100 watchers: every watcher converges through the other.
func TestReplicaKilledUnder100Watchers(t *testing.T) {
	ctx := t.Context()
	a, b := twoReplicas(t)
	writer := newConn(t, b.Addr, "/vitess/cell1")
	if _, err := writer.Create(ctx, "SrvVSchema", []byte("before")); err != nil {
		t.Fatal(err)
	}
	eventually(t, newConn(t, a.Addr, "/vitess/cell1"), "SrvVSchema", "before") // a has it too
	watchers := watchAll(t, ctx, a.Addr+","+b.Addr, "/vitess/cell1", "SrvVSchema", 100, 20)
	onA := a.Topo.ActiveStreams()
	a.Kill()
	if _, err := writer.Update(ctx, "SrvVSchema", []byte("after"), nil); err != nil {
		t.Fatal(err)
	}
	took := waitAll(t, watchers, "after", time.Minute)
	t.Logf("%d of 100 watch streams were on the killed replica; all converged in %v", onA, took)
	if onA == 0 {
		t.Error("no watcher was on the killed replica: the test proved nothing")
	}
}

// TestCompactionWhileDisconnected: a watcher whose topod is down while the
// file changes and etcd compacts its history converges on the latest value
// once topod is back.
func TestCompactionWhileDisconnected(t *testing.T) {
	ctx := t.Context()
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	c := newConn(t, srv.Addr, "/vitess/cell1")
	if _, err := c.Create(ctx, "SrvVSchema", []byte("v0")); err != nil {
		t.Fatal(err)
	}
	watchers := watchAll(t, ctx, srv.Addr, "/vitess/cell1", "SrvVSchema", 10, 2)
	srv.Kill()

	direct := harness.OpenEtcd(t, cluster.Endpoints())
	var rev int64
	for i := 1; i <= 50; i++ {
		r, err := direct.Update(ctx, "/vitess/cell1/SrvVSchema", []byte(fmt.Sprintf("v%d", i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	if err := cluster.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	harness.StartTopodOn(t, srv.Addr, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	waitAll(t, watchers, "v50", time.Minute)
}

// metric reads metric name of an in-process topod, summed over the label
// sets with the given labels; the test fails if none is exported.
func metric(t *testing.T, srv *harness.Topod, name string, labels ...string) float64 {
	t.Helper()
	m, err := srv.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.Lookup(name, labels...)
	if !ok {
		t.Fatalf("topod exports no %s%q: a renamed metric is not read as 0", name, labels)
	}
	return v
}

// TestRecursiveWatchersResume: recursive watchers of 50 files on two
// replicas, one of which is killed while three files change. The watchers
// that move to the other replica resume from the revision they had reached:
// they get exactly the three changes (no file seen twice, none deleted
// wrongly), and the replica does not send them the 47 unchanged files
// again.
func TestRecursiveWatchersResume(t *testing.T) {
	ctx := t.Context()
	a, b := twoReplicas(t)
	writer := newConn(t, b.Addr, "/vitess/cell1")
	tablet := func(i int) string { return fmt.Sprintf("tablets/t%d/Tablet", i) }
	for i := range 50 {
		if _, err := writer.Create(ctx, tablet(i), []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, newConn(t, a.Addr, "/vitess/cell1"), tablet(49), "v1") // a has them all too
	// One connection per watcher, each on a replica picked at random: the
	// chance that none is on a is 2^-20.
	const n = 20
	watchers := make([]<-chan *topo.WatchDataRecursive, n)
	for i := range n {
		initial, changes, err := newConn(t, a.Addr+","+b.Addr, "/vitess/cell1").WatchRecursive(ctx, "tablets")
		if err != nil {
			t.Fatal(err)
		}
		if len(initial) != 50 {
			t.Fatalf("watcher %d: %d files, want 50", i, len(initial))
		}
		watchers[i] = changes
	}
	unchangedBefore := metric(t, b, "topod_watch_resume_unchanged_files_total")
	onA := a.Topo.ActiveStreams()
	a.Kill()
	if _, err := writer.Update(ctx, tablet(0), []byte("v2"), nil); err != nil {
		t.Fatal(err)
	}
	if err := writer.Delete(ctx, tablet(1), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Create(ctx, tablet(50), []byte("v1")); err != nil {
		t.Fatal(err)
	}

	full := func(i int) string { return "/vitess/cell1/" + tablet(i) }
	want := map[string]string{full(0): "v2", full(1): "deleted", full(50): "v1"}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, ch := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[string]bool{}
			deadline := time.After(time.Minute)
			for len(seen) < len(want) {
				select {
				case wd := <-ch:
					got := string(wd.Contents)
					if topo.IsErrType(wd.Err, topo.NoNode) {
						got = "deleted"
					} else if wd.Err != nil {
						errs <- fmt.Errorf("watcher %d: %v", i, wd.Err)
						return
					}
					if want[wd.Path] != got || seen[wd.Path] {
						errs <- fmt.Errorf("watcher %d: unexpected change %s = %q", i, wd.Path, got)
						return
					}
					seen[wd.Path] = true
				case <-deadline:
					errs <- fmt.Errorf("watcher %d: saw only %v of the 3 changes", i, seen)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	resumed := metric(t, b, "topod_watch_resume_unchanged_files_total") - unchangedBefore
	t.Logf("%d of %d watch streams were on the killed replica; the other skipped %.0f unchanged files resuming them", onA, n, resumed)
	if onA == 0 {
		t.Fatal("no watcher was on the killed replica: the test proved nothing")
	}
	if resumed < float64(47*onA) {
		t.Errorf("resuming %d streams skipped %.0f unchanged files, want at least %d", onA, resumed, 47*onA)
	}
}
