// Package topodtest runs a topod server in-process on a loopback port, over
// a real backend, for tests and benchmarks of the plugin and of the tools
// built on it.
package topodtest

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/toposerver"
)

// Server is a topod serving on a loopback address.
type Server struct {
	Addr string
	Topo *toposerver.Server
	g    *grpc.Server
	done chan struct{}
}

// Start serves backend on a free loopback port until the test ends. The
// backend stays the caller's to close. Without opts.Blobs, blobs go to a
// file store in a temporary directory. The port is outside the kernel's
// ephemeral range, so a test can stop the server and StartOn its address
// again.
func Start(tb testing.TB, backend kv.Backend, opts toposerver.Options) *Server {
	tb.Helper()
	lis, err := freeport.Listen()
	if err != nil {
		tb.Fatalf("topodtest: listen: %v", err)
	}
	return serve(tb, lis, backend, opts)
}

// StartOn serves backend on addr (e.g. the address of a server stopped
// earlier, to restart it).
func StartOn(tb testing.TB, addr string, backend kv.Backend, opts toposerver.Options) *Server {
	tb.Helper()
	var lis net.Listener
	var err error
	// A port just released may take a moment to be reusable.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if lis, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("topodtest: listen %s: %v", addr, err)
	}
	return serve(tb, lis, backend, opts)
}

// serve serves backend on lis until the test ends.
func serve(tb testing.TB, lis net.Listener, backend kv.Backend, opts toposerver.Options) *Server {
	tb.Helper()
	if opts.Blobs == nil {
		blobs, err := fileblob.Open(tb.TempDir())
		if err != nil {
			tb.Fatalf("topodtest: blob store: %v", err)
		}
		opts.Blobs = blobs
	}
	srv := toposerver.New(backend, opts)
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)
	s := &Server{Addr: lis.Addr().String(), Topo: srv, g: g, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = g.Serve(lis)
	}()
	tb.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down as topod does on SIGTERM: streams ended, locks
// released. Stopping twice is harmless.
func (s *Server) Stop() {
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
func (s *Server) Kill() {
	s.g.Stop()
	<-s.done
	s.Topo.Close()
}
