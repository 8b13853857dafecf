package topoplugin

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestTLS: with the --topod-tls-* flags the plugin talks TLS to a topod
// that requires client certificates (mutual TLS), reads, writes and
// watches; a client without TLS, without a certificate or trusting another
// CA is refused, and flags naming bad files fail at connect, naming them.
// It sets the flags' variables, so it must not run in parallel with other
// tests of the package.
func TestTLS(t *testing.T) {
	ca := certtest.New(t, "topod test CA")
	other := certtest.New(t, "another CA")
	serverTLS, err := tlsconfig.Server(tlsconfig.Files{Cert: ca.ServerCert, Key: ca.ServerKey, CA: ca.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := harness.StartTopod(t, b, toposerver.Options{TLS: serverTLS})
	t.Cleanup(func() { tlsFiles = tlsconfig.Files{} })

	for _, tc := range []struct {
		name       string
		files      tlsconfig.Files
		connectErr string // NewConn fails with this in its message
		refused    bool   // calls fail
	}{
		{"mutual TLS", tlsconfig.Files{CA: ca.CAFile, Cert: ca.ClientCert, Key: ca.ClientKey}, "", false},
		{"mutual TLS, server name", tlsconfig.Files{CA: ca.CAFile, Cert: ca.ClientCert, Key: ca.ClientKey, ServerName: "localhost"}, "", false},
		{"plaintext", tlsconfig.Files{}, "", true},
		{"no client certificate", tlsconfig.Files{CA: ca.CAFile}, "", true},
		{"another CA", tlsconfig.Files{CA: other.CAFile, Cert: ca.ClientCert, Key: ca.ClientKey}, "", true},
		{"wrong server name", tlsconfig.Files{CA: ca.CAFile, Cert: ca.ClientCert, Key: ca.ClientKey, ServerName: "topod.example"}, "", true},
		{"missing CA file", tlsconfig.Files{CA: "/nonexistent/ca.pem"}, "--topod-tls-*", false},
		{"key without cert", tlsconfig.Files{CA: ca.CAFile, Key: ca.ClientKey}, "--topod-tls-*", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsFiles = tc.files
			c, err := NewConn(srv.Addr, "/vitess/global")
			if tc.connectErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.connectErr) {
					t.Fatalf("NewConn: %v, want an error with %q", err, tc.connectErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			file := "keyspaces/" + strings.ReplaceAll(tc.name, " ", "_") + "/Keyspace"
			_, err = c.Create(ctx, file, []byte("x"))
			if tc.refused {
				if err == nil {
					t.Fatal("Create succeeded; want the connection refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			current, changes, err := c.Watch(ctx, file)
			if err != nil || string(current.Contents) != "x" {
				t.Fatalf("Watch: %v, %v", current, err)
			}
			if _, err := c.Update(ctx, file, []byte("y"), nil); err != nil {
				t.Fatal(err)
			}
			if wd := <-changes; wd.Err != nil || string(wd.Contents) != "y" {
				t.Fatalf("watch got %v", wd)
			}
			if _, _, err := c.Get(ctx, "keyspaces/none/Keyspace"); !topo.IsErrType(err, topo.NoNode) {
				t.Fatalf("Get of a missing file: %v, want NoNode", err)
			}
		})
	}
}
