package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	vtlog "vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo" // --topo-implementation etcd2

	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/topoplugin" // --topo-implementation topod
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// serveFlags are `vschemad serve`'s flags.
type serveFlags struct {
	listen, metricsListen                    string
	topoImpl, topoAddr, topoRoot             string
	tokensFile, tlsCert, tlsKey, tlsClientCA string
	auditLog, logLevel                       string
	maxBodyBytes                             int64
	shutdownGrace, cellTimeout               time.Duration
	readTimeout, writeTimeout, idleTimeout   time.Duration
	recordAccess, allowInsecureTokens        bool
}

// Timeout defaults of `vschemad serve`: long enough for a 64 MiB import
// body on a slow link and for a write that waits for several cells
// (--cell-timeout each round), short enough that a client that stalls or
// walks away does not hold a connection for long.
const (
	defaultReadTimeout  = 5 * time.Minute
	defaultWriteTimeout = 10 * time.Minute
	defaultIdleTimeout  = 2 * time.Minute
)

func newServeCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the vschema API over a Vitess topology",
		Long: `Serve the vschema API (HTTP/JSON under /api/v1) over a Vitess topology.

Without --tokens-file it serves without authentication, and only on a
loopback address; it then answers only requests whose Host is localhost,
127.0.0.1 or [::1] (any port), refuses requests a browser marks as coming
from another origin (Origin, Sec-Fetch-Site), and requires
Content-Type: application/json of every method but GET, HEAD and OPTIONS,
so that no web page can make a browser write through it.

With --tls-cert and --tls-key it serves HTTPS; with --tls-client-ca it also
requires client certificates signed by that CA (without --tokens-file, the
Origin and Content-Type checks above apply too). Bearer tokens over plain
HTTP are refused on any address but loopback unless --allow-insecure-tokens.`,
		Example: `  vschemad serve --listen 127.0.0.1:15980 --topo-implementation topod \
    --topo-global-server-address 127.0.0.1:15999 --topo-global-root /vitess/global \
    --audit-log /var/lib/vschemad/audit.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, f, cmd.ErrOrStderr(), nil)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// register adds the flags to fs.
func (f *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:15980", "address to serve on")
	fs.StringVar(&f.topoImpl, "topo-implementation", "topod", "the topology implementation: topod or etcd2")
	fs.StringVar(&f.topoAddr, "topo-global-server-address", "127.0.0.1:15999", "address of the global topology server")
	fs.StringVar(&f.topoRoot, "topo-global-root", "/vitess/global", "root of the global topology")
	fs.StringVar(&f.tokensFile, "tokens-file", "", "bearer tokens, their keyspaces and verbs (YAML or JSON); without it only loopback clients are served, unauthenticated")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key, serve HTTPS")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "CA bundle (PEM) that client certificates must be signed by; requires --tls-cert")
	fs.StringVar(&f.auditLog, "audit-log", "", "append-only audit log of every write (JSON lines), e.g. /var/lib/vschemad/audit.log (required)")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", 64<<20, "largest request body accepted (413 beyond)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 30*time.Second, "how long a shutdown waits for requests in flight")
	fs.DurationVar(&f.cellTimeout, "cell-timeout", vschemastore.DefaultCellRoundTimeout, "how long a write waits for one cell's SrvVSchema update (its store down, say) before answering that the cell failed; the other cells are updated meanwhile")
	fs.BoolVar(&f.allowInsecureTokens, "allow-insecure-tokens", false, "accept bearer tokens over plain HTTP on an address that is not loopback (a TLS-terminating proxy in front); without it serve refuses to start so")
	fs.DurationVar(&f.readTimeout, "read-timeout", defaultReadTimeout, "the longest a request may take to arrive, body included (headers: 30s at most); 0 for the default")
	fs.DurationVar(&f.writeTimeout, "write-timeout", defaultWriteTimeout, "the longest from a request's headers to the end of its answer; a write still running then completes and is audited, but its answer is lost; 0 for the default")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", defaultIdleTimeout, "how long an idle keep-alive connection is kept open; 0 for the default")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "address of a plain HTTP server for /metrics (Prometheus; deploy/monitoring reads them); empty: none")
	fs.BoolVar(&f.recordAccess, "topod-record-access", true, "with topod, update the cells' SrvVSchema at the record level, re-encoding only the changed keyspaces; false: through topo.Conn alone, splicing the whole file")
	topoplugin.RegisterFlags(fs)
}

// check refuses flags that do not go together, and fills in the timeouts'
// defaults.
func (f *serveFlags) check() error {
	if f.auditLog == "" {
		return errors.New("--audit-log is required: the file every write is appended to, e.g. /var/lib/vschemad/audit.log")
	}
	if f.maxBodyBytes <= 0 {
		return fmt.Errorf("--max-body-bytes %d: want a positive size", f.maxBodyBytes)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if f.tlsClientCA != "" && f.tlsCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	for _, t := range []struct {
		flag string
		d    *time.Duration
		def  time.Duration
	}{{"--read-timeout", &f.readTimeout, defaultReadTimeout}, {"--write-timeout", &f.writeTimeout, defaultWriteTimeout}, {"--idle-timeout", &f.idleTimeout, defaultIdleTimeout}} {
		switch {
		case *t.d < 0:
			return fmt.Errorf("%s %v: want a positive duration (0 for the default, %v)", t.flag, *t.d, t.def)
		case *t.d == 0:
			*t.d = t.def
		}
	}
	return nil
}

// serve runs vschemad until ctx ends, logging to logw. If ready is not
// nil, the listening address is sent on it once the server accepts
// connections.
func serve(ctx context.Context, flags *serveFlags, logw io.Writer, ready chan<- string) error {
	f := *flags // check fills in defaults; the flags stay as given
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level}))
	// Vitess's own logging: warnings and errors only, in the same format.
	vtlog.SwapLogger(slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)})))
	if err := f.check(); err != nil {
		return err
	}

	auth := vschemaapi.Anyone
	if f.tokensFile != "" {
		tokens, err := vschemaapi.LoadTokens(f.tokensFile)
		if err != nil {
			return fmt.Errorf("--tokens-file: %w", err)
		}
		for _, w := range tokens.Warnings() {
			log.Warn(w)
		}
		auth = tokens
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	defer lis.Close()
	if err := f.checkExposure(lis.Addr(), log); err != nil {
		return err
	}

	ts, err := topo.OpenServer(f.topoImpl, f.topoAddr, f.topoRoot)
	if err != nil {
		return fmt.Errorf("open topology %s at %s %s: %w", f.topoImpl, f.topoAddr, f.topoRoot, err)
	}
	defer ts.Close()
	opts := vschemastore.StoreOptions{CellRoundTimeout: f.cellTimeout}
	if f.topoImpl == topoplugin.Name && f.recordAccess {
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
	} else {
		log.Info("cell updates: through topo.Conn, splicing each cell's SrvVSchema")
	}
	store, err := vschemastore.NewStore(ts, opts)
	if err != nil {
		return fmt.Errorf("open the vschema store on %s: %w", f.topoImpl, err)
	}
	audit, err := vschemaapi.OpenAudit(f.auditLog, log)
	if err != nil {
		return fmt.Errorf("--audit-log: %w", err)
	}
	defer audit.Close()

	metrics := vschemaapi.NewMetrics()
	if f.metricsListen != "" {
		mlis, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", f.metricsListen, err)
		}
		ms := &http.Server{Handler: metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(mlis) }()
		defer ms.Close()
		log.Info("metrics serving", "url", "http://"+mlis.Addr().String()+"/metrics")
	}
	handler := vschemaapi.NewHandler(store, auth, audit, vschemaapi.Options{
		MaxBodyBytes: f.maxBodyBytes,
		Guard:        vschemaapi.GuardFor(f.tokensFile != "", f.tlsClientCA != ""),
		Log:          log,
		Metrics:      metrics,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(30*time.Second, f.readTimeout),
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if f.tlsCert != "" {
		if srv.TLSConfig, err = tlsconfig.Server(tlsconfig.Files{Cert: f.tlsCert, Key: f.tlsKey, CA: f.tlsClientCA}); err != nil {
			return fmt.Errorf("--tls-cert, --tls-key, --tls-client-ca: %w", err)
		}
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
	log.Info("serving", "url", scheme+"://"+lis.Addr().String()+"/api/v1", "topology", f.topoImpl, "global", f.topoAddr+f.topoRoot, "audit_log", f.auditLog)
	if ready != nil {
		ready <- lis.Addr().String()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", f.shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: connections still open after the grace period: closing them", "err", err)
		srv.Close()
	}
	return nil
}

// checkExposure refuses to serve without authentication, or bearer tokens
// over plain HTTP, on an address that is not loopback, and says how
// requests are authenticated.
func (f *serveFlags) checkExposure(addr net.Addr, log *slog.Logger) error {
	tcp, _ := addr.(*net.TCPAddr)
	loopback := tcp != nil && tcp.IP.IsLoopback()
	tokens, plain := f.tokensFile != "", f.tlsCert == ""
	switch {
	case tokens && plain && !loopback && !f.allowInsecureTokens:
		return fmt.Errorf("refusing to accept bearer tokens over plain HTTP on %s, which is not a loopback address: set --tls-cert and --tls-key, or --allow-insecure-tokens if a TLS-terminating proxy is in front", addr)
	case tokens && plain && !loopback:
		log.Warn("bearer tokens over plain HTTP on a non-loopback address (--allow-insecure-tokens): anyone on the path can read and replay them", "listen", addr.String())
		log.Info("authentication: bearer tokens", "tokens_file", f.tokensFile)
	case tokens:
		log.Info("authentication: bearer tokens", "tokens_file", f.tokensFile)
	case f.tlsClientCA != "":
		log.Warn("no --tokens-file: every client with a certificate signed by --tls-client-ca may do everything", "client_ca", f.tlsClientCA)
	case !loopback:
		return fmt.Errorf("refusing to serve without authentication on %s, which is not a loopback address: set --tokens-file (or --tls-client-ca)", addr)
	default:
		log.Warn("serving WITHOUT authentication, on loopback only: set --tokens-file to require bearer tokens", "listen", addr.String())
	}
	return nil
}
