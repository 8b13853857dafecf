package tlsconfig_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/pkg/tlsconfig"
)

func TestConfigs(t *testing.T) {
	ca := certtest.New(t, "tlsconfig test CA")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name    string
		server  bool
		files   tlsconfig.Files
		wantErr string // empty: success
	}{
		{"server", true, tlsconfig.Files{Cert: ca.ServerCert, Key: ca.ServerKey}, ""},
		{"server, mutual TLS", true, tlsconfig.Files{Cert: ca.ServerCert, Key: ca.ServerKey, CA: ca.CAFile}, ""},
		{"server without key", true, tlsconfig.Files{Cert: ca.ServerCert}, "both a certificate and a key"},
		{"server, missing cert", true, tlsconfig.Files{Cert: missing, Key: ca.ServerKey}, "missing.pem"},
		{"server, key of another cert", true, tlsconfig.Files{Cert: ca.ServerCert, Key: ca.ClientKey}, "load certificate"},
		{"server, CA not PEM", true, tlsconfig.Files{Cert: ca.ServerCert, Key: ca.ServerKey, CA: garbage}, "holds no PEM certificate"},
		{"client, system roots", false, tlsconfig.Files{}, ""},
		{"client", false, tlsconfig.Files{CA: ca.CAFile, ServerName: "localhost"}, ""},
		{"client certificate", false, tlsconfig.Files{CA: ca.CAFile, Cert: ca.ClientCert, Key: ca.ClientKey}, ""},
		{"client cert without key", false, tlsconfig.Files{Cert: ca.ClientCert}, "both the certificate and the key"},
		{"client, missing CA", false, tlsconfig.Files{CA: missing}, "missing.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *tls.Config
			var err error
			if tc.server {
				c, err = tlsconfig.Server(tc.files)
			} else {
				c, err = tlsconfig.Client(tc.files)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.server && (tc.files.CA != "") != (c.ClientAuth == tls.RequireAndVerifyClientCert) {
					t.Errorf("ClientAuth %v with CA %q", c.ClientAuth, tc.files.CA)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
