// Command topod serves a Vitess topology over gRPC for the topod topo plugin
// (--topo-implementation topod), on the embedded bolt backend or on etcd.
//
//	topod --listen 127.0.0.1:15999 --backend bolt:///var/lib/topod/topo.db
//	topod --listen :15999 --backend etcd://10.0.0.1:2379,10.0.0.2:2379
//
// With no --backend, topod keeps its data in --data-dir/topo.db.
// SIGTERM or SIGINT shut it down cleanly: streams are closed, the locks and
// leaderships they held released, and the backend closed.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/topod-io/topod/pkg/toposerver"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "topod:", err)
		os.Exit(1)
	}
}

// serveFlags are the flags of the server.
type serveFlags struct {
	listen        string
	backend       string
	dataDir       string
	logLevel      string
	maxValueBytes int
	lockTTL       time.Duration
	shutdownGrace time.Duration
}

func newRootCommand() *cobra.Command {
	f := serveFlags{}
	cmd := &cobra.Command{
		Use:           "topod",
		Short:         "topod serves a Vitess topology to the topod topo plugin",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", "127.0.0.1:15999", "address of the gRPC server")
	fs.StringVar(&f.backend, "backend", "", "backend URL: bolt:///path/to/topo.db or etcd://host:port[,host:port...] (default bolt in --data-dir)")
	fs.StringVar(&f.dataDir, "data-dir", "./topod-data", "directory of topod's own data (topo.db when --backend is not given)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&f.maxValueBytes, "max-value-bytes", toposerver.DefaultMaxValueBytes, "largest file accepted, in bytes")
	fs.DurationVar(&f.lockTTL, "lock-ttl", toposerver.DefaultLockTTL, "lease TTL of locks and elections whose client asked for none")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long a shutdown waits for requests in flight")
	return cmd
}

func serve(ctx context.Context, f serveFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if f.backend == "" {
		if err := os.MkdirAll(f.dataDir, 0o750); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	backend, err := toposerver.OpenBackend(openCtx, f.backend, f.dataDir)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		if err := backend.Close(); err != nil {
			log.Error("close backend", "err", err)
		}
	}()

	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := toposerver.New(backend, toposerver.Options{MaxValueBytes: f.maxValueBytes, LockTTL: f.lockTTL, Logger: log})
	g := grpc.NewServer(append(srv.GRPCServerOptions(),
		// Find dead clients quickly, so their locks are released well
		// within the lock TTL.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)...)
	srv.Register(g)

	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	log.Info("topod serving", "listen", lis.Addr().String(), "backend", describe(f))

	select {
	case err := <-served:
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("topod shutting down")
	srv.Close()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(f.shutdownGrace):
		g.Stop()
	}
	log.Info("topod stopped")
	return nil
}

func describe(f serveFlags) string {
	if f.backend == "" {
		return "bolt in " + f.dataDir
	}
	return f.backend
}
