package vschemaapi_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemaclient"
)

func TestMain(m *testing.M) {
	vschematest.QuietVitessLogs()
	os.Exit(m.Run())
}

// TestTLS: HTTPS with a bearer token; with --tls-client-ca, a client
// without a certificate is refused, and the certificate's name is in the
// audit log; the CLI speaks TLS too.
func TestTLS(t *testing.T) {
	ca := certtest.New(t, "vschemad test CA")
	tokens := vschemaapi.WriteTokens(t, "tokens:\n  - {name: deployer, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce")
	srv := vschematest.StartVSchemad(t, tp, func(c *vschemaapi.Config) {
		c.TokensFile, c.TLSCert, c.TLSKey, c.TLSClientCA = tokens, ca.ServerCert, ca.ServerKey, ca.CAFile
	})
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatal(srv.URL)
	}
	url := srv.URL + "/api/v1/keyspaces/commerce/vschema"
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
	code, body, _ := vschematest.Call(t, hc, "GET", srv.URL+"/api/v1/audit", nil, "Authorization", "Bearer s3cret")
	if code != 200 || !strings.Contains(string(body), `"user": "deployer (cert ci-robot)"`) {
		t.Fatalf("audit: %d %s", code, body)
	}
	// The client, with the CA, a client certificate and the token.
	u, err := vschemaclient.ParseServer(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vschemaclient.New(vschemaclient.Options{Server: u, Token: "s3cret", CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := c.Do(context.Background(), http.MethodGet, vschemaclient.KeyspacePath("commerce"), nil, nil, nil)
	if err != nil || !strings.Contains(string(out), `"t"`) {
		t.Fatalf("vschemaclient GET over TLS: %s %v", out, err)
	}
}

// TestServeRefusals: serve refuses to run without authentication on a
// non-loopback address, or with bearer tokens over plain HTTP there, and
// reports bad TLS, token and timeout configuration.
func TestServeRefusals(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tokens := vschemaapi.WriteTokens(t, "tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	base := func() *vschemaapi.Config {
		return &vschemaapi.Config{Listen: "127.0.0.1:0", TopoImplementation: tp.Impl, TopoAddress: tp.Addr, TopoRoot: tp.Root,
			AuditLog: filepath.Join(t.TempDir(), "audit.log"), MaxBodyBytes: 1 << 20, LogLevel: "error", ShutdownGrace: time.Second}
	}
	cases := []struct {
		name string
		mod  func(*vschemaapi.Config)
		want string
	}{
		{"no auth on all interfaces", func(c *vschemaapi.Config) { c.Listen = "0.0.0.0:0" }, "refusing to serve without authentication"},
		{"key without cert", func(c *vschemaapi.Config) { c.TLSKey = "k.pem" }, "--tls-cert and --tls-key go together"},
		{"client CA without TLS", func(c *vschemaapi.Config) { c.TLSClientCA = "ca.pem" }, "--tls-client-ca needs --tls-cert"},
		{"missing tokens file", func(c *vschemaapi.Config) { c.TokensFile = "/nonexistent/tokens.yaml" }, "read tokens file"},
		{"unknown topology", func(c *vschemaapi.Config) { c.TopoImplementation = "zookeeper9" }, "open topology zookeeper9"},
		{"bad body limit", func(c *vschemaapi.Config) { c.MaxBodyBytes = 0 }, "--max-body-bytes"},
		{"no audit log", func(c *vschemaapi.Config) { c.AuditLog = "" }, "--audit-log is required"},
		{"tokens over plain HTTP off loopback", func(c *vschemaapi.Config) { c.Listen, c.TokensFile = "0.0.0.0:0", tokens },
			"refusing to accept bearer tokens over plain HTTP on [::]:"},
		{"negative timeout", func(c *vschemaapi.Config) { c.IdleTimeout = -time.Second }, "--idle-timeout -1s: want a positive duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.mod(cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := vschemaapi.Serve(ctx, cfg, nil)
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
	tokens := vschemaapi.WriteTokens(t, "tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	srv := vschematest.StartVSchemad(t, tp, func(c *vschemaapi.Config) {
		c.Listen, c.TokensFile, c.AllowInsecureTokens = "0.0.0.0:0", tokens, true
	})
	if code, body, _ := vschematest.Call(t, nil, "GET", srv.URL+"/api/v1/cells", nil, "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Fatalf("GET cells: %d %s", code, body)
	}
}
