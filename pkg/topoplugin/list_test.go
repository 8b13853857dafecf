package topoplugin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// serveHooked serves b with opts, calling hook before topod answers each
// List page after the first (a request with a page token), and returns
// its address.
func serveHooked(t *testing.T, b kv.Backend, opts toposerver.Options, hook func(tok *topodv1.ListPageToken)) string {
	t.Helper()
	blobs, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Blobs = blobs
	srv := toposerver.New(b, opts)
	g := grpc.NewServer(append(srv.GRPCServerOptions(), grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if r, ok := req.(*topodv1.ListRequest); ok && len(r.PageToken) > 0 {
				var tok topodv1.ListPageToken
				if err := proto.Unmarshal(r.PageToken, &tok); err != nil {
					t.Errorf("page token: %v", err)
				}
				hook(&tok)
			}
			return handler(ctx, req)
		}))...)
	srv.Register(g)
	lis, err := freeport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(func() { srv.Close(); g.Stop() })
	return lis.Addr().String()
}

// pluginBackends runs fn on bolt and on a real etcd, with a function that
// makes the backend forget the history before the listing's revision of
// the file after a page token's last.
func pluginBackends(t *testing.T, fn func(t *testing.T, b kv.Backend, forget func(t *testing.T, tok *topodv1.ListPageToken))) {
	t.Run("bolt", func(t *testing.T) {
		b := harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db"))
		fn(t, b, func(t *testing.T, tok *topodv1.ListPageToken) {
			// bolt keeps 20 versions of a key: rewrite the next page's
			// first file 25 times.
			i, err := strconv.Atoi(strings.TrimPrefix(tok.After, tok.Prefix))
			if err != nil {
				t.Errorf("page token after %s", tok.After)
				return
			}
			for range 25 {
				if _, err := b.Update(t.Context(), fmt.Sprintf("%s%03d", tok.Prefix, i+1), []byte("rewritten"), 0); err != nil {
					t.Error(err)
				}
			}
		})
	})
	t.Run("etcd", func(t *testing.T) {
		cluster := harness.StartEtcd(t, 1)
		b := harness.OpenEtcd(t, cluster.Endpoints())
		fn(t, b, func(t *testing.T, tok *topodv1.ListPageToken) {
			rev, err := b.Update(t.Context(), "/elsewhere", []byte("moves the revision on"), 0)
			if err == nil {
				err = cluster.Compact(t.Context(), rev)
			}
			if err != nil {
				t.Error(err)
			}
		})
	})
}

// writeFiles writes n files f000... under the connection's root and
// returns their contents by full path.
func writeFiles(t *testing.T, c *topoplugin.Conn, root string, n int, gen string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		contents := fmt.Sprintf("%s %s %s", name, gen, strings.Repeat("x", 80))
		if _, err := c.Update(t.Context(), name, []byte(contents), nil); err != nil {
			t.Fatal(err)
		}
		files[root+"/"+name] = contents
	}
	return files
}

// TestListFollowsPages: the plugin's List of more than one page answers
// every file once, as the store was at the first page, though every file
// is rewritten, one deleted and one created between any two pages.
func TestListFollowsPages(t *testing.T) {
	pluginBackends(t, func(t *testing.T, b kv.Backend, _ func(*testing.T, *topodv1.ListPageToken)) {
		const root = "/vitess/global"
		var pages atomic.Int64
		var writer *topoplugin.Conn
		addr := serveHooked(t, b, toposerver.Options{MaxListPageBytes: 500}, func(tok *topodv1.ListPageToken) {
			n := pages.Add(1)
			for i := range 40 {
				if _, err := writer.Update(t.Context(), fmt.Sprintf("f%03d", i), fmt.Appendf(nil, "rewritten before page %d", n+1), nil); err != nil {
					t.Error(err)
				}
			}
			if _, err := writer.Create(t.Context(), fmt.Sprintf("f%03d-new", n), []byte("new")); err != nil {
				t.Error(err)
			}
			if err := writer.Delete(t.Context(), fmt.Sprintf("f%03d", 40-n), nil); err != nil {
				t.Error(err)
			}
		})
		var err error
		if writer, err = topoplugin.NewConn(addr, root); err != nil {
			t.Fatal(err)
		}
		defer writer.Close()
		want := writeFiles(t, writer, root, 40, "first")
		c, err := topoplugin.NewConn(addr, root)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := c.List(t.Context(), "f")
		if err != nil {
			t.Fatal(err)
		}
		if pages.Load() < 5 {
			t.Errorf("%d pages after the first, want 5 or more", pages.Load())
		}
		if len(got) != len(want) {
			t.Errorf("List: %d files, want %d", len(got), len(want))
		}
		for i, e := range got {
			if want[string(e.Key)] != string(e.Value) {
				t.Errorf("file %d: %s = %q, want %q", i, e.Key, e.Value, want[string(e.Key)])
			}
			if i > 0 && string(e.Key) <= string(got[i-1].Key) {
				t.Errorf("%s listed after %s", e.Key, got[i-1].Key)
			}
		}
	})
}

// TestListStartsOver: when topod no longer holds the listing's revision
// at a later page (etcd compacted it, bolt rewrote a file past its
// history), the plugin lists again from the first page: once, and the
// answer is whole; every time, and after 4 attempts it fails saying so.
func TestListStartsOver(t *testing.T) {
	pluginBackends(t, func(t *testing.T, b kv.Backend, forget func(*testing.T, *topodv1.ListPageToken)) {
		const root = "/vitess/global"
		var forgets atomic.Int64
		var times atomic.Int64 // how many listings lose their revision
		addr := serveHooked(t, b, toposerver.Options{MaxListPageBytes: 500}, func(tok *topodv1.ListPageToken) {
			if forgets.Load() < times.Load() {
				forgets.Add(1)
				forget(t, tok)
			}
		})
		c, err := topoplugin.NewConn(addr, root)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		writeFiles(t, c, root, 40, "first")

		times.Store(1)
		got, err := c.List(t.Context(), "f")
		if err != nil || len(got) != 40 {
			t.Fatalf("List with its revision lost once: %d files, %v; want 40", len(got), err)
		}
		if forgets.Load() != 1 {
			t.Fatalf("the revision was lost %d times, want 1", forgets.Load())
		}

		forgets.Store(0)
		times.Store(1 << 30)
		// A deadline, so that a plugin starting over without end fails.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err = c.List(ctx, "f")
		if err == nil || !strings.Contains(err.Error(), "list again from the first page") || !strings.Contains(err.Error(), "4 times") {
			t.Errorf("List with its revision lost every time: %v; want the error, after 4 attempts", err)
		}
		if forgets.Load() != 4 {
			t.Errorf("the revision was lost %d times, want 4 (the first attempt and 3 more)", forgets.Load())
		}
	})
}

// TestConformancePagedBolt runs Vitess's topo conformance suite through
// the plugin against topod on bolt answering Lists a file a page.
func TestConformancePagedBolt(t *testing.T) {
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{MaxListPageBytes: 1})
	harness.VitessSuite(t, "topod", srv.Addr)
}

// TestConformancePagedEtcd: the same against topod on a real etcd.
func TestConformancePagedEtcd(t *testing.T) {
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{MaxListPageBytes: 1})
	harness.VitessSuite(t, "topod", srv.Addr)
}
