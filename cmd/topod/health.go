package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/topod-io/topod/pkg/tlsconfig"
)

// healthFlags are the flags of `topod health`.
type healthFlags struct {
	address string
	tls     tlsconfig.Files
	timeout time.Duration
}

// newHealthCommand returns `topod health`: it asks a topod's standard gRPC
// health service whether it serves, and exits non-zero unless it does. It
// is the exec probe of a topod that speaks mutual TLS, which Kubernetes'
// own gRPC probe cannot reach (it speaks plaintext only).
func newHealthCommand() *cobra.Command {
	f := healthFlags{}
	cmd := &cobra.Command{
		Use:           "health",
		Short:         "exit 0 if a topod's gRPC health service reports SERVING",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			return checkHealth(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.address, "address", "127.0.0.1:15999", "gRPC address of the topod to ask")
	fs.StringVar(&f.tls.CA, "topod-tls-ca", "", "CAs (PEM) to verify topod's certificate by; any --topod-tls-* flag turns TLS on")
	fs.StringVar(&f.tls.Cert, "topod-tls-cert", "", "client certificate (PEM), for a topod started with --tls-client-ca")
	fs.StringVar(&f.tls.Key, "topod-tls-key", "", "client certificate's private key (PEM)")
	fs.StringVar(&f.tls.ServerName, "topod-tls-server-name", "", "the name topod's certificate must carry (default the host of --address)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

// checkHealth asks the gRPC health service at f.address about the whole
// server (the empty service name).
func checkHealth(ctx context.Context, f healthFlags) error {
	creds := insecure.NewCredentials()
	if f.tls.Enabled() {
		c, err := tlsconfig.Client(f.tls)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(c)
	}
	conn, err := grpc.NewClient(f.address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("health: dial %s: %w", f.address, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health: %s: %w", f.address, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: %s reports %s", f.address, s)
	}
	return nil
}
