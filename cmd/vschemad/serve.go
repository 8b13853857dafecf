package main

import (
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	_ "vitess.io/vitess/go/vt/topo/etcd2topo" // --topo-implementation etcd2

	"github.com/topod-io/topod/pkg/topoplugin" // --topo-implementation topod
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemastore"
)

func newServeCmd() *cobra.Command {
	cfg := &vschemaapi.Config{}
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
			return vschemaapi.Serve(ctx, cfg, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:15980", "address to serve on")
	f.StringVar(&cfg.TopoImplementation, "topo-implementation", "topod", "the topology implementation: topod or etcd2")
	f.StringVar(&cfg.TopoAddress, "topo-global-server-address", "127.0.0.1:15999", "address of the global topology server")
	f.StringVar(&cfg.TopoRoot, "topo-global-root", "/vitess/global", "root of the global topology")
	f.StringVar(&cfg.TokensFile, "tokens-file", "", "bearer tokens, their keyspaces and verbs (YAML or JSON); without it only loopback clients are served, unauthenticated")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key, serve HTTPS")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "CA bundle (PEM) that client certificates must be signed by; requires --tls-cert")
	f.StringVar(&cfg.AuditLog, "audit-log", "", "append-only audit log of every write (JSON lines), e.g. /var/lib/vschemad/audit.log (required)")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 64<<20, "largest request body accepted (413 beyond)")
	f.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 30*time.Second, "how long a shutdown waits for requests in flight")
	f.DurationVar(&cfg.CellTimeout, "cell-timeout", vschemastore.DefaultCellRoundTimeout, "how long a write waits for one cell's SrvVSchema update (its store down, say) before answering that the cell failed; the other cells are updated meanwhile")
	f.BoolVar(&cfg.AllowInsecureTokens, "allow-insecure-tokens", false, "accept bearer tokens over plain HTTP on an address that is not loopback (a TLS-terminating proxy in front); without it serve refuses to start so")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", vschemaapi.DefaultReadTimeout, "the longest a request may take to arrive, body included (headers: 30s at most); 0 for the default")
	f.DurationVar(&cfg.WriteTimeout, "write-timeout", vschemaapi.DefaultWriteTimeout, "the longest from a request's headers to the end of its answer; a write still running then completes and is audited, but its answer is lost; 0 for the default")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", vschemaapi.DefaultIdleTimeout, "how long an idle keep-alive connection is kept open; 0 for the default")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address of a plain HTTP server for /metrics (Prometheus; deploy/monitoring reads them); empty: none")
	f.BoolVar(&cfg.RecordAccess, "topod-record-access", true, "with topod, update the cells' SrvVSchema at the record level, re-encoding only the changed keyspaces; false: through topo.Conn alone, splicing the whole file")
	topoplugin.RegisterFlags(f)
	return cmd
}
