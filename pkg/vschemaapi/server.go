// Package vschemaapi is vschemad's server: the HTTP/JSON API under /api/v1
// that reads, validates, applies, diffs, deletes and rolls back keyspace
// vschemas, routing rules and the cells' SrvVSchemas (pkg/vschemastore) on
// any Vitess topology, with bearer-token authorization by keyspace and verb,
// optional (mutual) TLS, and an append-only audit log of every write.
// cmd/vschemad's serve command is its flags; pkg/vschemaclient calls it.
package vschemaapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	vtlog "vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// Config is the configuration of a vschemad server; the comments name
// `vschemad serve`'s flags, which its errors name too.
type Config struct {
	Listen             string        // --listen: address to serve on
	TopoImplementation string        // --topo-implementation, registered with Vitess's topo (topod, etcd2)
	TopoAddress        string        // --topo-global-server-address
	TopoRoot           string        // --topo-global-root
	TokensFile         string        // --tokens-file: bearer tokens; "" to serve loopback clients only, unauthenticated
	TLSCert            string        // --tls-cert: with TLSKey, serve HTTPS
	TLSKey             string        // --tls-key
	TLSClientCA        string        // --tls-client-ca: require client certificates signed by it
	AuditLog           string        // --audit-log: the append-only audit log (required)
	MaxBodyBytes       int64         // --max-body-bytes: largest request body (413 beyond)
	LogLevel           string        // --log-level: debug, info, warn or error
	ShutdownGrace      time.Duration // --shutdown-grace: how long a shutdown waits for requests in flight
	// --cell-timeout: how long a write waits for one cell's SrvVSchema
	// update before reporting that cell failed (0: the store's default).
	CellTimeout time.Duration
	// --topod-record-access: with topod, update the cells' SrvVSchema at the
	// record level, re-encoding only the changed keyspaces.
	RecordAccess bool
	// --allow-insecure-tokens: accept bearer tokens over plain HTTP on an
	// address that is not loopback (behind a TLS-terminating proxy, say);
	// without it serve refuses to start so.
	AllowInsecureTokens bool
	// --read-timeout: the longest a request may take to arrive, body
	// included (http.Server.ReadTimeout; headers within min(30s, this)).
	// This and the next two: 0 is the default (DefaultReadTimeout...);
	// there is no "none".
	ReadTimeout time.Duration
	// --write-timeout: the longest from a request's headers to the end of
	// its answer (http.Server.WriteTimeout). A write still running then
	// completes and is audited, but its answer is lost.
	WriteTimeout time.Duration
	// --idle-timeout: how long a keep-alive connection waits for its next
	// request (http.Server.IdleTimeout).
	IdleTimeout time.Duration
	// --metrics-listen: address of a plain HTTP server for /metrics
	// (Prometheus); "" for none.
	MetricsListen string
}

// Timeout defaults of `vschemad serve`: long enough for a 64 MiB import
// body on a slow link and for a write that waits for several cells
// (--cell-timeout each round), short enough that a client that stalls or
// walks away does not hold a connection for long.
const (
	DefaultReadTimeout  = 5 * time.Minute
	DefaultWriteTimeout = 10 * time.Minute
	DefaultIdleTimeout  = 2 * time.Minute
)

// Serve runs the server until ctx ends. If ready is not nil, the listening
// address is sent on it once the server accepts connections.
func Serve(ctx context.Context, cfg *Config, ready chan<- string) error {
	cfg = new(*cfg) // defaults are filled in below; the caller's stays as given
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Vitess's own logging: warnings and errors only, in the same format.
	vtlog.SwapLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)})))

	if cfg.AuditLog == "" {
		return errors.New("--audit-log is required: the file every write is appended to, e.g. /var/lib/vschemad/audit.log")
	}
	if cfg.MaxBodyBytes <= 0 {
		return fmt.Errorf("--max-body-bytes %d: want a positive size", cfg.MaxBodyBytes)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.TLSClientCA != "" && cfg.TLSCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	timeouts := []struct {
		flag string
		d    *time.Duration
		def  time.Duration
	}{{"--read-timeout", &cfg.ReadTimeout, DefaultReadTimeout}, {"--write-timeout", &cfg.WriteTimeout, DefaultWriteTimeout}, {"--idle-timeout", &cfg.IdleTimeout, DefaultIdleTimeout}}
	for _, t := range timeouts {
		switch {
		case *t.d < 0:
			return fmt.Errorf("%s %v: want a positive duration (0 for the default, %v)", t.flag, *t.d, t.def)
		case *t.d == 0:
			*t.d = t.def
		}
	}
	var auth *authenticator
	if cfg.TokensFile != "" {
		var err error
		if auth, err = loadTokens(cfg.TokensFile); err != nil {
			return err
		}
		for _, t := range auth.tokens {
			if err := keyspaceGlobsValid(t.keyspaces); err != nil {
				log.Warn("token scope names no valid keyspace", "token", t.name, "err", err)
			}
		}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	defer lis.Close()
	var guard *browserGuard
	switch {
	case auth != nil && cfg.TLSCert == "" && !isLoopback(lis.Addr()) && !cfg.AllowInsecureTokens:
		return fmt.Errorf("refusing to accept bearer tokens over plain HTTP on %s, which is not a loopback address: set --tls-cert and --tls-key, or --allow-insecure-tokens if a TLS-terminating proxy is in front", lis.Addr())
	case auth != nil && cfg.TLSCert == "" && !isLoopback(lis.Addr()):
		log.Warn("bearer tokens over plain HTTP on a non-loopback address (--allow-insecure-tokens): anyone on the path can read and replay them", "listen", lis.Addr().String())
		log.Info("authentication: bearer tokens", "tokens_file", cfg.TokensFile, "tokens", len(auth.tokens))
	case auth != nil:
		log.Info("authentication: bearer tokens", "tokens_file", cfg.TokensFile, "tokens", len(auth.tokens))
	case cfg.TLSClientCA != "":
		guard = &browserGuard{}
		log.Warn("no --tokens-file: every client with a certificate signed by --tls-client-ca may do everything", "client_ca", cfg.TLSClientCA)
	case !isLoopback(lis.Addr()):
		return fmt.Errorf("refusing to serve without authentication on %s, which is not a loopback address: set --tokens-file (or --tls-client-ca)", lis.Addr())
	default:
		guard = &browserGuard{loopbackHost: true}
		log.Warn("serving WITHOUT authentication, on loopback only: set --tokens-file to require bearer tokens", "listen", lis.Addr().String())
	}

	ts, err := topo.OpenServer(cfg.TopoImplementation, cfg.TopoAddress, cfg.TopoRoot)
	if err != nil {
		return fmt.Errorf("open topology %s at %s %s: %w", cfg.TopoImplementation, cfg.TopoAddress, cfg.TopoRoot, err)
	}
	defer ts.Close()
	opts := vschemastore.StoreOptions{CellRoundTimeout: cfg.CellTimeout}
	switch {
	case cfg.TopoImplementation == topoplugin.Name && cfg.RecordAccess:
		conns := topoplugin.NewCellConns(ts, nil)
		defer conns.Close()
		opts.RecordConn = func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
			c, err := conns.Get(ctx, cell)
			if err != nil {
				return nil, err
			}
			return c, nil
		}
		log.Info("cell updates: topod record-level access, re-encoding only the changed keyspaces")
	default:
		log.Info("cell updates: through topo.Conn, splicing each cell's SrvVSchema")
	}
	store, err := vschemastore.NewStore(ts, opts)
	if err != nil {
		return err
	}
	audit, err := openAudit(cfg.AuditLog, log)
	if err != nil {
		return err
	}
	defer audit.Close()

	api := &apiServer{store: store, auth: auth, guard: guard, audit: audit, maxBody: cfg.MaxBodyBytes, log: log, metrics: newMetrics()}
	if cfg.MetricsListen != "" {
		mlis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		ms := &http.Server{Handler: api.metrics.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(mlis) }()
		defer ms.Close()
		log.Info("metrics serving", "url", "http://"+mlis.Addr().String()+"/metrics")
	}
	srv := &http.Server{
		Handler:           api.handler(),
		ReadHeaderTimeout: min(30*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLSCert != "" {
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
	log.Info("serving", "url", scheme+"://"+lis.Addr().String()+"/api/v1", "topology", cfg.TopoImplementation, "global", cfg.TopoAddress+cfg.TopoRoot, "audit_log", cfg.AuditLog)
	if ready != nil {
		ready <- lis.Addr().String()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
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
func serverTLS(cfg *Config) (*tls.Config, error) {
	return tlsconfig.Server(tlsconfig.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSClientCA})
}
