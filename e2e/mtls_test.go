package e2e

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/topoplugin"
)

// shippedPolicy is the authorization policy deploy/'s prod overlay gives
// topod.
const shippedPolicy = "../deploy/overlays/prod/topod-authz-policy.yaml"

// guard is topod as deploy/'s prod overlay runs it: mutual TLS, one client
// certificate per Vitess component (CN and SPIFFE id the component's name),
// and the shipped authorization policy.
type guard struct {
	// serverArgs are topod's --tls-* and --authz-policy flags.
	serverArgs []string
	// clients names each component's certificate files, for vtlocal.Topo.
	clients map[string]tlsconfig.Files
	// health dials topod's health service with the operator's certificate.
	health grpc.DialOption
}

// newGuard issues the certificates into work/certs, readable by id (the
// Vitess processes' user), and points this process's own topod plugin at
// the operator's certificate (topod-admin: the test sets up and inspects
// what the components may not).
func newGuard(t *testing.T, id *proc.Identity, work string) *guard {
	t.Helper()
	ca := certtest.New(t, "e2e CA")
	dir := filepath.Join(work, "certs")
	if err := id.MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	place := func(src string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(src))
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dst, int(id.UID), int(id.GID)); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	policy, err := filepath.Abs(shippedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	g := &guard{
		serverArgs: []string{"--tls-cert", ca.ServerCert, "--tls-key", ca.ServerKey, "--tls-client-ca", ca.CAFile, "--authz-policy", policy},
		clients:    map[string]tlsconfig.Files{},
	}
	caFile := place(ca.CAFile)
	for _, c := range []string{"vtctld", "vtgate", "vttablet", "vtorc", "vschemad", "topod-admin"} {
		cert := ca.Issue(t, c, "spiffe://topod.local/ns/topod/sa/"+c)
		g.clients[c] = tlsconfig.Files{CA: caFile, Cert: place(cert.CertFile), Key: place(cert.KeyFile), ServerName: "localhost"}
	}
	admin := g.clients["topod-admin"]
	pair, err := tls.LoadX509KeyPair(admin.Cert, admin.Key)
	if err != nil {
		t.Fatal(err)
	}
	g.health = grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}))

	fs := pflag.NewFlagSet("e2e", pflag.ContinueOnError)
	topoplugin.RegisterFlags(fs)
	if err := fs.Parse([]string{"--topod-tls-ca", admin.CA, "--topod-tls-cert", admin.Cert, "--topod-tls-key", admin.Key, "--topod-tls-server-name", "localhost"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = fs.Parse([]string{"--topod-tls-ca=", "--topod-tls-cert=", "--topod-tls-key=", "--topod-tls-server-name="})
	})
	return g
}
