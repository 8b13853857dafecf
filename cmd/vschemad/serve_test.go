package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

// serveArgs are the flags of `vschemad serve` on tp, on a loopback port,
// with an audit log in a temporary directory, then args.
func serveArgs(t *testing.T, tp *vschematest.Topology, args ...string) []string {
	return append([]string{"--listen", "127.0.0.1:0", "--topo-implementation", tp.Impl,
		"--topo-global-server-address", tp.Addr, "--topo-global-root", tp.Root,
		"--audit-log", filepath.Join(t.TempDir(), "audit.log"), "--log-level", "error", "--shutdown-grace", "5s"}, args...)
}

// parseServe parses `vschemad serve`'s flags.
func parseServe(t *testing.T, args []string) *serveFlags {
	t.Helper()
	f := &serveFlags{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

// startServe runs `vschemad serve` in-process with serveArgs until the
// test ends, and returns the address it listens on.
func startServe(t *testing.T, tp *vschematest.Topology, args ...string) string {
	t.Helper()
	f := parseServe(t, serveArgs(t, tp, args...))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, f, os.Stderr, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("vschemad serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("vschemad serve: %v", err)
		}
	})
	return addr
}

func writeTokens(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTLS: HTTPS with a bearer token; with --tls-client-ca, a client
// without a certificate is refused, and the certificate's name is in the
// audit log; the client speaks TLS too.
func TestTLS(t *testing.T) {
	ca := certtest.New(t, "vschemad test CA")
	tokens := writeTokens(t, "tokens:\n  - {name: deployer, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce")
	base := "https://" + startServe(t, tp, "--tokens-file", tokens, "--tls-cert", ca.ServerCert, "--tls-key", ca.ServerKey, "--tls-client-ca", ca.CAFile)
	url := base + "/api/v1/keyspaces/commerce/vschema"
	// No client certificate: the handshake fails.
	if _, err := ca.HTTPClient(nil).Get(url); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	hc := ca.HTTPClient(&ca.Client)
	if code, body, _ := vschematest.Call(t, hc, "PUT", url, []byte(`{"tables": {"t": {}}}`)); code != http.StatusUnauthorized {
		t.Fatalf("certificate without token: %d %s", code, body)
	}
	if code, body, _ := vschematest.Call(t, hc, "PUT", url, []byte(`{"tables": {"t": {}}}`), "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	code, body, _ := vschematest.Call(t, hc, "GET", base+"/api/v1/audit", nil, "Authorization", "Bearer s3cret")
	if code != 200 || !strings.Contains(string(body), `"user": "deployer (cert ci-robot)"`) {
		t.Fatalf("audit: %d %s", code, body)
	}
	// The client, with the CA, a client certificate and the token.
	u, err := vschemaclient.ParseServer(base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vschemaclient.New(vschemaclient.Options{Server: u, Token: "s3cret", CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.GetVSchema(context.Background(), "commerce")
	if err != nil || !strings.Contains(string(d.Data), `"t"`) {
		t.Fatalf("vschemaclient GET over TLS: %v %v", d, err)
	}
	// Without tokens, client certificates alone: the browser guard's
	// Origin check applies (a browser presents its certificate by itself).
	mtls := "https://" + startServe(t, tp, "--tls-cert", ca.ServerCert, "--tls-key", ca.ServerKey, "--tls-client-ca", ca.CAFile)
	if code, body, _ := vschematest.Call(t, hc, "PUT", mtls+"/api/v1/keyspaces/commerce/vschema", []byte(`{}`), "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-origin PUT with a client certificate and no tokens: %d %s", code, body)
	}
}

// TestServeRefusals: serve refuses to run without authentication on a
// non-loopback address, or with bearer tokens over plain HTTP there, and
// reports bad TLS, token and timeout configuration.
func TestServeRefusals(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tokens := writeTokens(t, "tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no auth on all interfaces", []string{"--listen", "0.0.0.0:0"}, "refusing to serve without authentication"},
		{"key without cert", []string{"--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
		{"client CA without TLS", []string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert"},
		{"missing tokens file", []string{"--tokens-file", "/nonexistent/tokens.yaml"}, "read tokens file"},
		{"unknown topology", []string{"--topo-implementation", "zookeeper9"}, "open topology zookeeper9"},
		{"bad body limit", []string{"--max-body-bytes", "0"}, "--max-body-bytes"},
		{"no audit log", []string{"--audit-log", ""}, "--audit-log is required"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"tokens over plain HTTP off loopback", []string{"--listen", "0.0.0.0:0", "--tokens-file", tokens},
			"refusing to accept bearer tokens over plain HTTP on [::]:"},
		{"negative timeout", []string{"--idle-timeout", "-1s"}, "--idle-timeout -1s: want a positive duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := parseServe(t, serveArgs(t, tp, c.args...))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := serve(ctx, f, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("serve: %v, want %q", err, c.want)
			}
		})
	}
}

// TestAllowInsecureTokens: with --allow-insecure-tokens, bearer tokens are
// served over plain HTTP on a non-loopback address (behind a TLS proxy).
func TestAllowInsecureTokens(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tokens := writeTokens(t, "tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	addr := startServe(t, tp, "--listen", "0.0.0.0:0", "--tokens-file", tokens, "--allow-insecure-tokens")
	if code, body, _ := vschematest.Call(t, nil, "GET", "http://"+addr+"/api/v1/cells", nil, "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Fatalf("GET cells: %d %s", code, body)
	}
}

// TestMetricsListen: --metrics-listen serves the API's metrics on a port of
// their own, counting what the API served.
func TestMetricsListen(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	metricsAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	addr := startServe(t, tp, "--metrics-listen", metricsAddr)
	if code, body, _ := vschematest.Call(t, nil, "GET", "http://"+addr+"/api/v1/cells", nil); code != http.StatusOK {
		t.Fatalf("GET cells: %d %s", code, body)
	}
	code, body, _ := vschematest.Call(t, nil, "GET", "http://"+metricsAddr+"/metrics", nil)
	if want := `vschemad_http_requests_total{code="200",method="GET",route="/api/v1/cells"} 1`; code != http.StatusOK || !strings.Contains(string(body), want) {
		t.Fatalf("GET /metrics: %d, want %q in:\n%s", code, want, body)
	}
}
