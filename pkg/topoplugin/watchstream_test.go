package topoplugin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestThousandWatchesResumeOnOtherReplica: a connection's 1,000 watches
// share one stream; when the replica holding it is killed, the stream is
// opened on the other replica and every watch resumes from the revision it
// had reached: each watcher gets the next change exactly once, and nothing
// it had already seen.
func TestThousandWatchesResumeOnOtherReplica(t *testing.T) {
	ctx := t.Context()
	a, b := twoReplicas(t)
	const n = 1000
	file := func(i int) string { return fmt.Sprintf("keyspaces/ks%04d/SrvKeyspace", i) }
	writer := newConn(t, b.Addr, "/vitess/cell1")
	for i := range n {
		if _, err := writer.Create(ctx, file(i), []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, newConn(t, a.Addr, "/vitess/cell1"), file(n-1), "v1")

	c := newConn(t, a.Addr+","+b.Addr, "/vitess/cell1")
	chans := make([]<-chan *topo.WatchData, n)
	for i := range n {
		first, changes, err := c.Watch(ctx, file(i))
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		if string(first.Contents) != "v1" {
			t.Fatalf("watch %d: initial %q", i, first.Contents)
		}
		chans[i] = changes
	}
	onA, onB := metric(t, a, "topod_watches"), metric(t, b, "topod_watches")
	streamsA, streamsB := metric(t, a, "topod_downstream_streams"), metric(t, b, "topod_downstream_streams")
	t.Logf("watches on a: %v, on b: %v; streams on a: %v, on b: %v", onA, onB, streamsA, streamsB)
	if onA+onB != n || streamsA+streamsB != 1 {
		t.Fatalf("%v watches on %v streams, want %d on one", onA+onB, streamsA+streamsB, n)
	}
	dead, survivor := a, b
	if onB == n {
		dead, survivor = b, a
	}
	resumesBefore := metric(t, survivor, "topod_watch_opens_total")
	dead.Kill()

	w := newConn(t, survivor.Addr, "/vitess/cell1")
	for i := range n {
		if _, err := w.Update(ctx, file(i), []byte("v2"), nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.After(time.Minute)
			for {
				select {
				case wd := <-ch:
					switch {
					case wd == nil || wd.Err != nil:
						errs <- fmt.Errorf("watch %d: %v", i, wd)
						return
					case string(wd.Contents) != "v2":
						errs <- fmt.Errorf("watch %d: got %q again after the resume", i, wd.Contents)
						return
					}
					return
				case <-deadline:
					errs <- fmt.Errorf("watch %d: no v2 in a minute", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Exactly once: after a third write, the next delivery of every watch
	// is v3 (a second v2 would come before it).
	for i := range n {
		if _, err := w.Update(ctx, file(i), []byte("v3"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, ch := range chans {
		select {
		case wd := <-ch:
			if wd == nil || wd.Err != nil || string(wd.Contents) != "v3" {
				errs <- fmt.Errorf("watch %d: after v2, %+v, want v3", i, wd)
			}
		case <-time.After(time.Minute):
			errs <- fmt.Errorf("watch %d: no v3 in a minute", i)
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := metric(t, survivor, "topod_watch_opens_total") - resumesBefore; got != n {
		t.Errorf("the survivor opened %v watches, want the %d resumed", got, n)
	}
	if got := metric(t, survivor, "topod_downstream_streams"); got != 1 {
		t.Errorf("the survivor has %v streams, want the one carrying the resumed watches", got)
	}
}

// TestDeleteMovesReadRevision: a delete's revision is one the connection
// has seen, so its next read, on whichever replica, asks for a state that
// includes the delete and never returns the deleted file.
func TestDeleteMovesReadRevision(t *testing.T) {
	ctx := t.Context()
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	c := newConn(t, srv.Addr, "/vitess/cell1")
	v, err := c.Create(ctx, "f", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "f", v); err != nil {
		t.Fatal(err)
	}
	if seen, created := c.SeenRevision(), int64(v.(topoplugin.Version)); seen <= created {
		t.Fatalf("after Delete the connection has seen revision %d, want past the file's %d", seen, created)
	}
	if _, _, err := c.Get(ctx, "f"); !topo.IsErrType(err, topo.NoNode) {
		t.Fatalf("Get after Delete = %v, want NoNode", err)
	}
}

// TestStalledWatchStream: a client whose WatchStream carries 200 watches and
// which never reads it does not delay the watchers of other connections,
// and topod keeps at most one pending change per file for it (coalescing
// the rest) instead of queueing every update.
func TestStalledWatchStream(t *testing.T) {
	ctx := t.Context()
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	writer := newConn(t, srv.Addr, "/vitess/cell1")
	const files, rounds = 200, 20
	file := func(i int) string { return fmt.Sprintf("keyspaces/ks%03d/SrvKeyspace", i) }
	value := func(round int) []byte {
		v := make([]byte, 16<<10)
		copy(v, fmt.Sprintf("round %d;", round))
		return v
	}
	for i := range files {
		if _, err := writer.Create(ctx, file(i), value(0)); err != nil {
			t.Fatal(err)
		}
	}
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stalled, err := topodv1.NewTopoClient(cc).WatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range files {
		create := &topodv1.WatchCreate{WatchId: int64(i + 1), Path: "/vitess/cell1/" + file(i)}
		if err := stalled.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: create}}); err != nil {
			t.Fatal(err)
		}
	}
	live := watchAll(t, ctx, srv.Addr, "/vitess/cell1", file(files-1), 20, 5)
	for round := 1; round <= rounds; round++ {
		for i := range files {
			if _, err := writer.Update(ctx, file(i), value(round), nil); err != nil {
				t.Fatal(err)
			}
		}
		took := waitAll(t, live, string(value(round)), 10*time.Second)
		if round == rounds {
			t.Logf("round %d: 20 live watchers saw the last file's change %v after it was written", round, took)
		}
	}
	// 4,000 updates of 16 KiB would be 64 MiB queued for the stalled
	// client; flow control lets some through and the rest coalesce.
	coalesced := metric(t, srv, "topod_coalesced_events_total")
	t.Logf("%v of %d updates coalesced for the stalled stream", coalesced, files*rounds)
	if coalesced < files*rounds/2 {
		t.Errorf("only %v updates coalesced: the stalled stream is being queued", coalesced)
	}
}

// TestMetricsPublished: the plugin's figures are in the process's Vitess
// stats (what a vtgate shows in /debug/vars and /metrics), and topod's
// metrics count streaming RPCs by method and its blob cache.
func TestMetricsPublished(t *testing.T) {
	ctx := t.Context()
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	writer := newConn(t, srv.Addr, "/vitess/cell1")
	v1, _ := smallSrvVSchema(t)
	if _, err := writer.Update(ctx, "SrvVSchema", marshal(t, v1), nil); err != nil {
		t.Fatal(err)
	}
	fetches, watches := stat(t, "TopodBlobFetches"), stat(t, "TopodWatches")
	reader, err := topoplugin.NewConnWithCache(srv.Addr, "/vitess/cell1", cache.New(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, _, err := reader.Watch(watchCtx, "SrvVSchema"); err != nil {
		t.Fatal(err)
	}
	if got := stat(t, "TopodBlobFetches") - fetches; got == 0 {
		t.Error("TopodBlobFetches did not count the blobs a cold watcher fetched")
	}
	if got := stat(t, "TopodWatches") - watches; got != 1 {
		t.Errorf("TopodWatches went up by %d for one watch", got)
	}
	for _, series := range [][]string{
		{"grpc_server_started_total", "grpc_method", "WatchStream", "grpc_service", "topod.v1.Topo", "grpc_type", "bidi_stream"},
		{"grpc_server_handled_total", "grpc_code", "OK", "grpc_method", "Update", "grpc_service", "topod.v1.Topo", "grpc_type", "unary"},
	} {
		if metric(t, srv, series[0], series[1:]...) < 1 {
			t.Errorf("topod's %q is not counted", series)
		}
	}
	if metric(t, srv, "topod_blob_cache_bytes") == 0 {
		t.Error("topod_blob_cache_bytes is 0 after blobs were served")
	}
}
