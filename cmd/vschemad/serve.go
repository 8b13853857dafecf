package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	vtlog "vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo" // --topo-implementation etcd2

	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/topoplugin" // --topo-implementation topod
	"github.com/topod-io/topod/pkg/vschemastore"
)

// serveConfig is the configuration of `vschemad serve`.
type serveConfig struct {
	listen        string
	topoImpl      string
	topoAddr      string
	topoRoot      string
	tokensFile    string
	tlsCert       string
	tlsKey        string
	tlsClientCA   string
	auditLog      string
	maxBodyBytes  int64
	logLevel      string
	shutdownGrace time.Duration
	recordAccess  bool
}

func newServeCmd() *cobra.Command {
	cfg := &serveConfig{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the vschema API over a Vitess topology",
		Long: `Serve the vschema API (HTTP/JSON under /api/v1) over a Vitess topology.

Without --tokens-file it serves without authentication, and only on a
loopback address. With --tls-cert and --tls-key it serves HTTPS; with
--tls-client-ca it also requires client certificates signed by that CA.`,
		Example: `  vschemad serve --listen 127.0.0.1:15980 --topo-implementation topod \
    --topo-global-server-address 127.0.0.1:15999 --topo-global-root /vitess/global \
    --audit-log /var/lib/vschemad/audit.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.listen, "listen", "127.0.0.1:15980", "address to serve on")
	f.StringVar(&cfg.topoImpl, "topo-implementation", "topod", "the topology implementation: topod or etcd2")
	f.StringVar(&cfg.topoAddr, "topo-global-server-address", "127.0.0.1:15999", "address of the global topology server")
	f.StringVar(&cfg.topoRoot, "topo-global-root", "/vitess/global", "root of the global topology")
	f.StringVar(&cfg.tokensFile, "tokens-file", "", "bearer tokens, their keyspaces and verbs (YAML or JSON); without it only loopback clients are served, unauthenticated")
	f.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key, serve HTTPS")
	f.StringVar(&cfg.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&cfg.tlsClientCA, "tls-client-ca", "", "CA bundle (PEM) that client certificates must be signed by; requires --tls-cert")
	f.StringVar(&cfg.auditLog, "audit-log", "", "append-only audit log of every write (JSON lines), e.g. /var/lib/vschemad/audit.log (required)")
	f.Int64Var(&cfg.maxBodyBytes, "max-body-bytes", 64<<20, "largest request body accepted (413 beyond)")
	f.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 30*time.Second, "how long a shutdown waits for requests in flight")
	f.BoolVar(&cfg.recordAccess, "topod-record-access", true, "with topod, update the cells' SrvVSchema at the record level, re-encoding only the changed keyspaces; false: through topo.Conn alone, splicing the whole file")
	topoplugin.RegisterFlags(f)
	return cmd
}

// serve runs the server until ctx ends. If ready is not nil, the listening
// address is sent on it once the server accepts connections.
func serve(ctx context.Context, cfg *serveConfig, ready chan<- string) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Vitess's own logging: warnings and errors only, in the same format.
	vtlog.SwapLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)})))

	if cfg.auditLog == "" {
		return errors.New("--audit-log is required: the file every write is appended to, e.g. /var/lib/vschemad/audit.log")
	}
	if cfg.maxBodyBytes <= 0 {
		return fmt.Errorf("--max-body-bytes %d: want a positive size", cfg.maxBodyBytes)
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.tlsClientCA != "" && cfg.tlsCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	var auth *authenticator
	if cfg.tokensFile != "" {
		var err error
		if auth, err = loadTokens(cfg.tokensFile); err != nil {
			return err
		}
		for _, t := range auth.tokens {
			if err := keyspaceGlobsValid(t.keyspaces); err != nil {
				log.Warn("token scope names no valid keyspace", "token", t.name, "err", err)
			}
		}
	}
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	defer lis.Close()
	switch {
	case auth != nil:
		log.Info("authentication: bearer tokens", "tokens_file", cfg.tokensFile, "tokens", len(auth.tokens))
	case cfg.tlsClientCA != "":
		log.Warn("no --tokens-file: every client with a certificate signed by --tls-client-ca may do everything", "client_ca", cfg.tlsClientCA)
	case !isLoopback(lis.Addr()):
		return fmt.Errorf("refusing to serve without authentication on %s, which is not a loopback address: set --tokens-file (or --tls-client-ca)", lis.Addr())
	default:
		log.Warn("serving WITHOUT authentication, on loopback only: set --tokens-file to require bearer tokens", "listen", lis.Addr().String())
	}

	ts, err := topo.OpenServer(cfg.topoImpl, cfg.topoAddr, cfg.topoRoot)
	if err != nil {
		return fmt.Errorf("open topology %s at %s %s: %w", cfg.topoImpl, cfg.topoAddr, cfg.topoRoot, err)
	}
	defer ts.Close()
	opts := vschemastore.StoreOptions{}
	switch {
	case cfg.topoImpl == topoplugin.Name && cfg.recordAccess:
		rc := newRecordConns(ts)
		defer rc.close()
		opts.RecordConn = rc.get
		log.Info("cell updates: topod record-level access, re-encoding only the changed keyspaces")
	default:
		log.Info("cell updates: through topo.Conn, splicing each cell's SrvVSchema")
	}
	store, err := vschemastore.NewStore(ts, opts)
	if err != nil {
		return err
	}
	audit, err := openAudit(cfg.auditLog)
	if err != nil {
		return err
	}
	defer audit.Close()

	api := &apiServer{store: store, auth: auth, audit: audit, maxBody: cfg.maxBodyBytes, log: log}
	srv := &http.Server{
		Handler:           api.handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		tlsCfg, err := serverTLS(cfg)
		if err != nil {
			return err
		}
		srv.TLSConfig = tlsCfg
		scheme = "https"
	}
	errc := make(chan error, 1)
	go func() {
		if scheme == "https" {
			errc <- srv.ServeTLS(lis, "", "")
		} else {
			errc <- srv.Serve(lis)
		}
	}()
	log.Info("serving", "url", scheme+"://"+lis.Addr().String()+"/api/v1", "topology", cfg.topoImpl, "global", cfg.topoAddr+cfg.topoRoot, "audit_log", cfg.auditLog)
	if ready != nil {
		ready <- lis.Addr().String()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: connections still open after the grace period: closing them", "err", err)
		srv.Close()
	}
	return nil
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// serverTLS returns the TLS configuration of --tls-cert, --tls-key and
// --tls-client-ca.
func serverTLS(cfg *serveConfig) (*tls.Config, error) {
	return tlsconfig.Server(tlsconfig.Files{Cert: cfg.tlsCert, Key: cfg.tlsKey, CA: cfg.tlsClientCA})
}

// recordConns opens, per cell, a topod plugin connection of its own, to
// reach the record level (vschemastore.RecordConn) that topo.Server's
// connections, wrapped in topo.StatsConn, hide.
type recordConns struct {
	ts    *topo.Server
	mu    sync.Mutex
	conns map[string]*topoplugin.Conn
}

func newRecordConns(ts *topo.Server) *recordConns {
	return &recordConns{ts: ts, conns: map[string]*topoplugin.Conn{}}
}

func (r *recordConns) get(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
	ci, err := r.ts.GetCellInfo(ctx, cell, false)
	if err != nil {
		return nil, err
	}
	key := ci.ServerAddress + "|" + ci.Root
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[key]
	if !ok {
		if c, err = topoplugin.NewConn(ci.ServerAddress, ci.Root); err != nil {
			return nil, err
		}
		r.conns[key] = c
	}
	return c, nil
}

func (r *recordConns) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}
