package etcdapi_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestMetrics: topod's /metrics has the etcd endpoint's figures, and they
// move with what clients do.
func TestMetrics(t *testing.T) {
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := cli.Watch(ctx, "/m/", clientv3.WithPrefix())
	if _, err := cli.Put(ctx, "/m/a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "/m/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "/m/a", clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	<-watch // the put's event: the watch is open

	m := metrics(t, srv)
	for _, tc := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"topod_etcd_watch_streams", nil, 1},
		{"topod_etcd_watches", nil, 1},
		{"topod_etcd_watch_window_events", nil, 1},
		{"topod_etcd_watch_window_bytes", nil, 1},
		{"topod_etcd_watch_window_oldest_revision", nil, 1},
		{"topod_etcd_watch_window_evicted_total", nil, 0},
		{"topod_etcd_watches_compacted_total", nil, 0},
		{"topod_etcd_watch_read_retries_total", nil, 0},
		{"topod_etcd_watch_send_delay_seconds", nil, 1},   // the put's event to the open watch
		{"topod_etcd_write_visible_wait_seconds", nil, 1}, // the put
		{"topod_etcd_range_reads_total", []string{"consistency", "linearizable", "source", "mirror"}, 1},
		{"topod_etcd_range_reads_total", []string{"consistency", "serializable", "source", "mirror"}, 1},
		{"topod_consistent_read_revision_requests_total", nil, 1},
		{"topod_consistent_reads_total", nil, 1},
		{"grpc_server_handled_total", []string{"grpc_service", "etcdserverpb.KV", "grpc_method", "Put", "grpc_code", "OK"}, 1},
		{"grpc_server_handled_total", []string{"grpc_service", "etcdserverpb.KV", "grpc_method", "Range", "grpc_code", "OK"}, 2},
	} {
		got, ok := m.Lookup(tc.name, tc.labels...)
		if !ok {
			t.Errorf("%s{%s}: not in /metrics", tc.name, strings.Join(tc.labels, ","))
			continue
		}
		if got < tc.min {
			t.Errorf("%s{%s} = %v, want at least %v", tc.name, strings.Join(tc.labels, ","), got, tc.min)
		}
	}
}

// TestLinearizableReadsAfterWritesOutsideMirrors: a write to a key outside
// the mirrored prefix ("/") moves the backend's revision past anything the
// mirror's own keys see; a linearizable read is still answered from memory
// (the backend's watch confirms the mirror's progress), on both backends.
func TestLinearizableReadsAfterWritesOutsideMirrors(t *testing.T) {
	for _, backend := range []string{"bolt", "etcd"} {
		t.Run(backend, func(t *testing.T) {
			var srv *harness.Topod
			if backend == "bolt" {
				srv = harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
			} else {
				srv = harness.StartTopod(t, harness.OpenEtcd(t, harness.StartEtcd(t, 1).Endpoints()), toposerver.Options{})
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Addr}, DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx := t.Context()
			if _, err := cli.Put(ctx, "/in/a", "1"); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := cli.Put(ctx, "outside", fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
				resp, err := cli.Get(ctx, "/in/a")
				if err != nil || len(resp.Kvs) != 1 {
					t.Fatalf("get /in/a: %v %v", resp, err)
				}
			}
			if got := metrics(t, srv).Sum("topod_etcd_range_reads_total", "consistency", "linearizable", "source", "backend"); got != 0 {
				t.Errorf("%v linearizable reads went to the backend, want every one from the mirror", got)
			}
		})
	}
}

// metrics reads an in-process topod's /metrics.
func metrics(t *testing.T, srv *harness.Topod) harness.Metrics {
	t.Helper()
	m, err := srv.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
