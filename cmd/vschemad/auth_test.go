package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/vschematest"
)

func writeTokens(t testing.TB, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTokens: scopes by keyspace glob and verb, tokens by value or digest,
// and the configuration errors.
func TestTokens(t *testing.T) {
	digest := sha256.Sum256([]byte("hashed-secret"))
	a, err := loadTokens(writeTokens(t, `
tokens:
  - name: ops
    sha256: `+hex.EncodeToString(digest[:])+`
    keyspaces: ["*"]
    verbs: [admin]
  - name: team
    token: team-secret
    keyspaces: ["customer*", "commerce"]
    verbs: [read, write]
  - name: viewer
    token: viewer-secret
    keyspaces: ["commerce"]
    verbs: [read]
`))
	if err != nil {
		t.Fatal(err)
	}
	req := func(h string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}
	cases := []struct {
		header   string
		who      string // "" for refused
		verb     verb
		keyspace string
		allowed  bool
		all      bool // canAll(verb)
	}{
		{header: "Bearer hashed-secret", who: "ops", verb: verbAdmin, keyspace: "anything", allowed: true, all: true},
		{header: "bearer team-secret", who: "team", verb: verbWrite, keyspace: "customer_eu", allowed: true},
		{header: "Bearer team-secret", who: "team", verb: verbRead, keyspace: "commerce", allowed: true},
		{header: "Bearer team-secret", who: "team", verb: verbWrite, keyspace: "inventory", allowed: false},
		{header: "Bearer team-secret", who: "team", verb: verbAdmin, keyspace: "commerce", allowed: false},
		{header: "Bearer viewer-secret", who: "viewer", verb: verbWrite, keyspace: "commerce", allowed: false},
		{header: "Bearer viewer-secret", who: "viewer", verb: verbRead, keyspace: "commerce", allowed: true},
		{header: "Bearer wrong"},
		{header: "Basic dGVhbTp4"},
		{header: ""},
	}
	for _, c := range cases {
		p, err := a.authenticate(req(c.header))
		if c.who == "" {
			if err == nil {
				t.Errorf("%q accepted as %s", c.header, p.name)
			}
			continue
		}
		if err != nil || p.name != c.who {
			t.Errorf("%q: %v, %v", c.header, p, err)
			continue
		}
		if got := p.can(c.verb, c.keyspace); got != c.allowed {
			t.Errorf("%s can %s %s = %v", c.who, c.verb, c.keyspace, got)
		}
		if got := p.canAll(c.verb); got != c.all {
			t.Errorf("%s canAll %s = %v", c.who, c.verb, got)
		}
	}

	for name, cfg := range map[string]string{
		"no tokens":       `tokens: []`,
		"no name":         "tokens:\n  - token: x\n    keyspaces: ['*']\n    verbs: [read]",
		"duplicate name":  "tokens:\n  - {name: a, token: x, keyspaces: ['*'], verbs: [read]}\n  - {name: a, token: y, keyspaces: ['*'], verbs: [read]}",
		"no secret":       "tokens:\n  - {name: a, keyspaces: ['*'], verbs: [read]}",
		"both secrets":    "tokens:\n  - {name: a, token: x, sha256: ab, keyspaces: ['*'], verbs: [read]}",
		"bad digest":      "tokens:\n  - {name: a, sha256: xyz, keyspaces: ['*'], verbs: [read]}",
		"no keyspaces":    "tokens:\n  - {name: a, token: x, verbs: [read]}",
		"bad glob":        "tokens:\n  - {name: a, token: x, keyspaces: ['[a'], verbs: [read]}",
		"unknown verb":    "tokens:\n  - {name: a, token: x, keyspaces: ['*'], verbs: [delete]}",
		"unknown field":   "tokens:\n  - {name: a, token: x, keyspaces: ['*'], verbs: [read], colour: red}",
		"not YAML at all": "{{{",
	} {
		if _, err := loadTokens(writeTokens(t, cfg)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestTLS: HTTPS with a bearer token; with --tls-client-ca, a client
// without a certificate is refused, and the certificate's name is in the
// audit log; the CLI speaks TLS too.
func TestTLS(t *testing.T) {
	ca := certtest.New(t, "vschemad test CA")
	tokens := writeTokens(t, "tokens:\n  - {name: deployer, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce")
	srv := startServer(t, tp, func(c *serveConfig) {
		c.tokensFile, c.tlsCert, c.tlsKey, c.tlsClientCA = tokens, ca.ServerCert, ca.ServerKey, ca.CAFile
	})
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatal(srv.URL)
	}
	url := srv.URL + "/api/v1/keyspaces/commerce/vschema"
	// No client certificate: the handshake fails.
	if _, err := tlsClient(ca, nil).Get(url); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	hc := tlsClient(ca, &ca.Client)
	if code, body, _ := call(t, hc, "PUT", url, []byte(`{"tables": {"t": {}}}`)); code != http.StatusUnauthorized {
		t.Fatalf("certificate without token: %d %s", code, body)
	}
	if code, body, _ := call(t, hc, "PUT", url, []byte(`{"tables": {"t": {}}}`), "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	code, body, _ := call(t, hc, "GET", srv.URL+"/api/v1/audit", nil, "Authorization", "Bearer s3cret")
	if code != 200 || !strings.Contains(string(body), `"user": "deployer (cert ci-robot)"`) {
		t.Fatalf("audit: %d %s", code, body)
	}
	// The CLI, with the CA, a client certificate and the token.
	code2, out, errOut := runCLI(t, "get", "-k", "commerce", "--server", srv.URL, "--ca-file", ca.CAFile, "--cert", ca.ClientCert, "--key", ca.ClientKey,
		"--token", "s3cret")
	if code2 != 0 || !strings.Contains(out, `"t"`) {
		t.Fatalf("vschemad get over TLS: %d %s %s", code2, out, errOut)
	}
}

// TestServeRefusals: serve refuses to run without authentication on a
// non-loopback address, and reports bad TLS and token configuration.
func TestServeRefusals(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	base := func() *serveConfig {
		return &serveConfig{listen: "127.0.0.1:0", topoImpl: tp.Impl, topoAddr: tp.Addr, topoRoot: tp.Root,
			auditLog: filepath.Join(t.TempDir(), "audit.log"), maxBodyBytes: 1 << 20, logLevel: "error", shutdownGrace: time.Second}
	}
	cases := []struct {
		name string
		mod  func(*serveConfig)
		want string
	}{
		{"no auth on all interfaces", func(c *serveConfig) { c.listen = "0.0.0.0:0" }, "refusing to serve without authentication"},
		{"key without cert", func(c *serveConfig) { c.tlsKey = "k.pem" }, "--tls-cert and --tls-key go together"},
		{"client CA without TLS", func(c *serveConfig) { c.tlsClientCA = "ca.pem" }, "--tls-client-ca needs --tls-cert"},
		{"missing tokens file", func(c *serveConfig) { c.tokensFile = "/nonexistent/tokens.yaml" }, "read tokens file"},
		{"unknown topology", func(c *serveConfig) { c.topoImpl = "zookeeper9" }, "open topology zookeeper9"},
		{"bad body limit", func(c *serveConfig) { c.maxBodyBytes = 0 }, "--max-body-bytes"},
		{"no audit log", func(c *serveConfig) { c.auditLog = "" }, "--audit-log is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.mod(cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := serve(ctx, cfg, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("serve: %v, want %q", err, c.want)
			}
		})
	}
}
