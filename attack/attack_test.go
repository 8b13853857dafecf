package attack

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// target is a topod under attack: its client, its server and, on etcd,
// the etcd cluster behind it.
type target struct {
	name   string
	srv    *harness.Topod
	client topodv1.TopoClient
	etcd   bool
}

// backends runs fn against a topod on bolt and on a real (embedded) etcd,
// each with opts.
func backends(t *testing.T, opts toposerver.Options, fn func(t *testing.T, tg *target)) {
	for _, name := range []string{"bolt", "etcd"} {
		t.Run(name, func(t *testing.T) {
			srv := harness.StartTopod(t, openBackend(t, name), opts)
			// Fixed 64 KiB windows: a client that does not read its stream
			// holds no more than that of what topod sends (gRPC's dynamic
			// windows would let it buffer far more, sparing topod).
			cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			fn(t, &target{name: name, srv: srv, client: topodv1.NewTopoClient(cc), etcd: name == "etcd"})
		})
	}
}

// openBackend opens a bolt file, or a one-member embedded etcd.
func openBackend(t *testing.T, name string) kv.Backend {
	if name == "bolt" {
		return harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db"))
	}
	return harness.OpenEtcd(t, harness.StartEtcd(t, 1).Endpoints())
}

// populate writes n files under /attack/, as many keyspaces' records.
func (tg *target) populate(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, err := tg.client.Create(t.Context(), &topodv1.CreateRequest{Path: fmt.Sprintf("/attack/ks%05d/Keyspace", i), Contents: []byte("keyspace record")}); err != nil {
			t.Fatal(err)
		}
	}
}

// metric sums topod's metric name over the label sets with every label of
// match (pairs).
func (tg *target) metric(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	web := httptest.NewServer(tg.srv.Topo.DebugHandler())
	defer web.Close()
	m, err := harness.Scrape(t.Context(), web.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return m.Sum(name, match...)
}

// etcdWatchers is the watcher count of the embedded etcd members of this
// process (etcd's own metric, in the default registry).
func etcdWatchers(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := harness.Metrics{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	if m["etcd_debugging_mvcc_watcher_total"] == nil {
		t.Fatal("etcd_debugging_mvcc_watcher_total: not exported by the embedded etcd")
	}
	return m.Sum("etcd_debugging_mvcc_watcher_total")
}

// heap is the live heap after a collection: topod's, the etcd's and the
// test's own, all in this process.
func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// createWatches asks stream for watches of p with ids from to to.
func createWatches(t *testing.T, stream grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse], from, to int64, p string, recursive bool, after int64) {
	t.Helper()
	for id := from; id <= to; id++ {
		if err := stream.Send(create(id, p, recursive, after)); err != nil {
			t.Fatal(err)
		}
	}
}

// watchStream opens a WatchStream the caller reads, or never reads.
func (tg *target) watchStream(t *testing.T, ctx context.Context) grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse] {
	t.Helper()
	stream, err := tg.client.WatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func create(id int64, path string, recursive bool, after int64) *topodv1.WatchStreamRequest {
	return &topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: &topodv1.WatchCreate{
		WatchId: id, Path: path, Recursive: recursive, AfterRevision: after,
	}}}
}
