package toposerver_test

import (
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestReadsFromMirror: reads are served from memory once the mirror has
// reached the revision the client asks for, from the backend when it asks
// for more, and always from the backend when it asks for a linearizable
// read.
func TestReadsFromMirror(t *testing.T) {
	ctx := t.Context()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := harness.StartTopod(t, b, toposerver.Options{})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := topodv1.NewTopoClient(cc)
	resp, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/v/a/Shard", Contents: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	backendGets := func() float64 { return metricValue(t, srv, "topod_backend_requests_total", "type", "get") }

	for _, tc := range []struct {
		name        string
		req         *topodv1.GetRequest
		fromBackend bool
	}{
		{"reached revision", &topodv1.GetRequest{Path: "/v/a/Shard", MinRevision: resp.Version}, false},
		{"no revision", &topodv1.GetRequest{Path: "/v/a/Shard"}, false},
		{"revision not reached", &topodv1.GetRequest{Path: "/v/a/Shard", MinRevision: resp.Version + 1000}, true},
		{"linearizable", &topodv1.GetRequest{Path: "/v/a/Shard", Linearizable: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := backendGets()
			got, err := client.Get(ctx, tc.req)
			if err != nil || string(got.Contents) != "x" {
				t.Fatalf("Get = %v, %v", got, err)
			}
			if went := backendGets() != before; went != tc.fromBackend {
				t.Errorf("read the backend: %v, want %v", went, tc.fromBackend)
			}
		})
	}
	before := metricValue(t, srv, "topod_backend_requests_total", "type", "list")
	if _, err := client.ListDir(ctx, &topodv1.ListDirRequest{Path: "/v", MinRevision: resp.Version}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.List(ctx, &topodv1.ListRequest{Prefix: "/v/a", MinRevision: resp.Version}); err != nil {
		t.Fatal(err)
	}
	if after := metricValue(t, srv, "topod_backend_requests_total", "type", "list"); after != before {
		t.Errorf("ListDir and List of a mirrored prefix reached the backend (%v -> %v)", before, after)
	}
}

// metricValue reads metric name of an in-process topod, summed over the
// label sets with the given labels; a series not exported fails the test.
func metricValue(t *testing.T, srv *harness.Topod, name string, labels ...string) float64 {
	t.Helper()
	m, err := srv.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.Lookup(name, labels...)
	if !ok {
		t.Fatalf("topod exports no series %s%q", name, labels)
	}
	return v
}

// TestMirrorOff: DisableMirror is the one way to turn the mirror off; empty
// MirrorPrefixes, nil or not, mirror everything ("/").
func TestMirrorOff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     toposerver.Options
		mirrored bool
	}{
		{"zero options", toposerver.Options{}, true},
		{"nil prefixes", toposerver.Options{MirrorPrefixes: nil}, true},
		{"empty prefixes", toposerver.Options{MirrorPrefixes: []string{}}, true},
		{"prefix /v/", toposerver.Options{MirrorPrefixes: []string{"/v/"}}, true},
		{"other prefix", toposerver.Options{MirrorPrefixes: []string{"/other/"}}, false},
		{"disabled", toposerver.Options{DisableMirror: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), tc.opts)
			cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := topodv1.NewTopoClient(cc)
			resp, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/v/a", Contents: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			gets := func() float64 { return metricValue(t, srv, "topod_backend_requests_total", "type", "get") }
			before := gets()
			if _, err := client.Get(ctx, &topodv1.GetRequest{Path: "/v/a", MinRevision: resp.Version}); err != nil {
				t.Fatal(err)
			}
			if fromMemory := gets() == before; fromMemory != tc.mirrored {
				t.Errorf("Get served from a mirror: %v, want %v", fromMemory, tc.mirrored)
			}
		})
	}
}
