package harness

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/toposerver"
)

// Topod is a topod server in the test's process, serving on a loopback
// address.
type Topod struct {
	Addr string
	Topo *toposerver.Server
	g    *grpc.Server
	done chan struct{}
}

// StartTopod serves backend on a free loopback port until the test ends.
// The backend stays the caller's to close. Without opts.Blobs, blobs go to
// a file store in a temporary directory. The port is outside the kernel's
// ephemeral range, so a test can stop the server and StartTopodOn its
// address again.
func StartTopod(tb testing.TB, backend kv.Backend, opts toposerver.Options) *Topod {
	tb.Helper()
	lis, err := freeport.Listen()
	if err != nil {
		tb.Fatalf("harness: topod: listen: %v", err)
	}
	return serveTopod(tb, lis, backend, opts)
}

// StartTopodOn serves backend on addr (e.g. the address of a server stopped
// earlier, to restart it).
func StartTopodOn(tb testing.TB, addr string, backend kv.Backend, opts toposerver.Options) *Topod {
	tb.Helper()
	var lis net.Listener
	// A port just released may take a moment to be reusable.
	err := wait.PollUntilContextTimeout(tb.Context(), 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		var err error
		lis, err = net.Listen("tcp", addr)
		return err == nil, nil
	})
	if err != nil {
		tb.Fatalf("harness: topod: listen %s: %v", addr, err)
	}
	return serveTopod(tb, lis, backend, opts)
}

// serveTopod serves backend on lis until the test ends.
func serveTopod(tb testing.TB, lis net.Listener, backend kv.Backend, opts toposerver.Options) *Topod {
	tb.Helper()
	if opts.Blobs == nil {
		blobs, err := fileblob.Open(tb.TempDir())
		if err != nil {
			tb.Fatalf("harness: topod: blob store: %v", err)
		}
		opts.Blobs = blobs
	}
	srv := toposerver.New(backend, opts)
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)
	s := &Topod{Addr: lis.Addr().String(), Topo: srv, g: g, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = g.Serve(lis)
	}()
	tb.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down as topod does on SIGTERM: streams ended, locks
// released. Stopping twice is harmless.
func (s *Topod) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.Topo.Close()
	s.g.Stop()
	<-s.done
}

// Kill drops every connection at once, without releasing anything first, as
// a crashed process would (the backend keeps what a crash would leave).
func (s *Topod) Kill() {
	s.g.Stop()
	<-s.done
	s.Topo.Close()
}

// Metrics reads the server's metrics (its DebugHandler's /metrics).
func (s *Topod) Metrics() (Metrics, error) {
	return ScrapeHandler(s.Topo.DebugHandler())
}

// OpenBolt opens a bolt backend in file, closed when the test ends.
func OpenBolt(tb testing.TB, file string) kv.Backend {
	tb.Helper()
	b, err := boltkv.Open(file, boltkv.Options{})
	if err != nil {
		tb.Fatalf("harness: open bolt: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// OpenEtcd opens an etcd backend on endpoints, closed when the test ends.
func OpenEtcd(tb testing.TB, endpoints []string) kv.Backend {
	tb.Helper()
	b, err := etcdkv.Open(context.Background(), endpoints, etcdkv.Options{})
	if err != nil {
		tb.Fatalf("harness: open etcd: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}
