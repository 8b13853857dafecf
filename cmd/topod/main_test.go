package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/topoplugin"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestServeAndShutdown runs the command on the embedded default (bolt in
// --data-dir), writes through the plugin, and shuts it down as SIGTERM does;
// a second start on the same data dir serves what the first one wrote.
func TestServeAndShutdown(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	run := func(write bool) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		cmd := newRootCommand()
		cmd.SetArgs([]string{"--listen", addr, "--data-dir", dataDir, "--log-level", "warn", "--metrics-listen", metricsAddr})
		go func() { done <- cmd.ExecuteContext(ctx) }()

		c, err := topoplugin.NewConn(addr, "/vitess/global")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		callCtx, callCancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer callCancel()
		if write {
			if _, err := c.Create(callCtx, "keyspaces/ks/Keyspace", []byte("x")); err != nil {
				t.Fatal(err)
			}
		} else if got, _, err := c.Get(callCtx, "keyspaces/ks/Keyspace"); err != nil || string(got) != "x" {
			t.Fatalf("Get after restart = %q, %v", got, err)
		}
		for path, want := range map[string]string{
			"/metrics":      "topod_upstream_watches 1",
			"/debug/status": "mirrored prefix",
		} {
			resp, err := http.Get("http://" + metricsAddr + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), want) {
				t.Errorf("%s does not show %q:\n%s", path, want, body)
			}
		}
		cancel() // what SIGTERM does through signal.NotifyContext
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("topod exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("topod did not shut down")
		}
	}
	run(true)
	run(false)
}

// TestStartErrors: bad flags and an unreachable etcd fail at once with a
// message saying what is wrong.
func TestStartErrors(t *testing.T) {
	ca := certtest.New(t, "topod test CA")
	mtls := []string{"--tls-cert", ca.ServerCert, "--tls-key", ca.ServerKey, "--tls-client-ca", ca.CAFile}
	badPolicy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(badPolicy, []byte("principals:\n- {name: vtgate, identities: [vtgate]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "etcd://127.0.0.1:1"}, "127.0.0.1:1"},
		{[]string{"--backend", "consul://x"}, "unknown scheme"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra-arg"}, "unknown command"},
		{[]string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert and --tls-key"},
		{[]string{"--tls-cert", "cert.pem"}, "both a certificate and a key"},
		{[]string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, "/nonexistent/cert.pem"},
		{[]string{"--backend", "etcd://127.0.0.1:1", "--etcd-tls-ca", "/nonexistent/ca.pem"}, "--etcd-tls-*"},
		{[]string{"--etcd-watch-window-events", "0"}, "--etcd-watch-window-events 0"},
		{[]string{"--etcd-progress-notify-interval", "0s"}, "want positive values"},
		{[]string{"--max-watches-per-stream", "0"}, "--max-watches-per-stream 0"},
		{[]string{"--gc-grace", "1s"}, "a grace of at least 10m0s"},
		{[]string{"--max-lock-ttl", "10ms"}, "a TTL of 1s or more"},
		{[]string{"--max-send-msg-bytes", "1048576"}, "--max-send-msg-bytes 1048576"},
		{[]string{"--max-list-page-bytes", "0"}, "--max-list-page-bytes 0"},
		{[]string{"--max-list-page-bytes", "67108864"}, "pages of 1 byte to 1 MiB less than a message"},
		{[]string{"--max-put-blobs", "100"}, "--max-put-blobs 100"},
		{[]string{"--max-get-blobs", "0"}, "the plugin's batches"},
		{[]string{"--max-missing-blobs", "4095"}, "--max-missing-blobs 4095"},
		{[]string{"--advertise-address", "topod"}, "--advertise-address \"topod\": want host:port"},
		{[]string{"--authz-policy", badPolicy}, "--authz-policy needs --tls-client-ca"},
		{append([]string{"--authz-policy", "/nonexistent/policy.yaml"}, mtls...), "/nonexistent/policy.yaml"},
		{append([]string{"--authz-policy", badPolicy}, mtls...), `identity "vtgate"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := newRootCommand()
			cmd.SetArgs(append(tc.args, "--listen", freeAddr(t), "--data-dir", t.TempDir()))
			start := time.Now()
			err := cmd.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
}

// TestServeTLS: topod on an etcd that requires client certificates
// (--etcd-tls-*), serving gRPC with mutual TLS (--tls-*): a client with a
// certificate reads and writes; one without TLS or without a certificate is
// refused.
func TestServeTLS(t *testing.T) {
	ca := certtest.New(t, "topod test CA")
	cluster := harness.StartEtcd(t, 1, harness.WithTLS(ca))
	etcdAddr := strings.TrimPrefix(cluster.Endpoint(0), "https://")
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	cmd := newRootCommand()
	cmd.SetArgs([]string{"--listen", addr, "--data-dir", t.TempDir(), "--log-level", "warn",
		"--backend", "etcd://" + etcdAddr,
		"--etcd-tls-ca", ca.CAFile, "--etcd-tls-cert", ca.ClientCert, "--etcd-tls-key", ca.ClientKey,
		"--tls-cert", ca.ServerCert, "--tls-key", ca.ServerKey, "--tls-client-ca", ca.CAFile})
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("topod exited with %v", err)
		}
	}()

	withCert, err := tlsconfig.Client(tlsconfig.Files{CA: ca.CAFile, Cert: ca.ClientCert, Key: ca.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := tlsconfig.Client(tlsconfig.Files{CA: ca.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"client certificate", credentials.NewTLS(withCert), true},
		{"no client certificate", credentials.NewTLS(noCert), false},
		{"plaintext", insecure.NewCredentials(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc.creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := topodv1.NewTopoClient(cc)
			wait := 3 * time.Second
			if tc.ok {
				wait = 30 * time.Second // topod may still be starting
			}
			callCtx, callCancel := context.WithTimeout(t.Context(), wait)
			defer callCancel()
			p := "/vitess/global/keyspaces/" + strings.ReplaceAll(tc.name, " ", "_") + "/Keyspace"
			_, err = client.Update(callCtx, &topodv1.UpdateRequest{Path: p, Contents: []byte("x")}, grpc.WaitForReady(true))
			if !tc.ok {
				if err == nil {
					t.Fatal("Update succeeded; want the connection refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := client.Get(callCtx, &topodv1.GetRequest{Path: p, Linearizable: true})
			if err != nil || string(got.Contents) != "x" {
				t.Fatalf("Get = %v, %v", got, err)
			}
		})
	}
	// It really went to the TLS etcd.
	resp, err := cluster.Client(t).Get(t.Context(), "/vitess/global/keyspaces/client_certificate/Keyspace")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get: %v, %v", resp, err)
	}
}

// freeAddr returns a loopback address to serve on, which a test may stop
// and serve on again.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestDeprecatedMirrorFlags: the mirror's flags of earlier releases
// (--cache-prefixes, --cache-max-bytes) still set it, and say they are
// deprecated.
func TestDeprecatedMirrorFlags(t *testing.T) {
	for _, tc := range []struct {
		old, new, value string
	}{
		{"cache-prefixes", "mirror-prefixes", "[/a/,/b/]"},
		{"cache-max-bytes", "mirror-max-bytes", "1024"},
	} {
		t.Run(tc.old, func(t *testing.T) {
			cmd := newRootCommand()
			var stderr strings.Builder
			cmd.SetErr(&stderr)
			cmd.Flags().SetOutput(&stderr)
			if err := cmd.ParseFlags([]string{"--" + tc.old + "=" + strings.Trim(tc.value, "[]")}); err != nil {
				t.Fatal(err)
			}
			if got := cmd.Flags().Lookup(tc.new).Value.String(); got != tc.value {
				t.Errorf("--%s sets --%s to %s, want %s", tc.old, tc.new, got, tc.value)
			}
			if !strings.Contains(stderr.String(), "deprecated, use --"+tc.new) {
				t.Errorf("no deprecation warning: %q", stderr.String())
			}
		})
	}
}

func TestAdvertiseAddress(t *testing.T) {
	for _, tc := range []struct {
		flag string
		lis  net.Addr
		want string
	}{
		{"", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15999}, "127.0.0.1:15999"},
		{"", &net.TCPAddr{IP: net.IPv6unspecified, Port: 15999}, "topod-0:15999"},
		{"", &net.TCPAddr{IP: net.IPv4zero, Port: 15999}, "topod-0:15999"},
		{"topod.topod.svc:15999", &net.TCPAddr{IP: net.IPv6unspecified, Port: 15999}, "topod.topod.svc:15999"},
	} {
		got, err := advertiseAddress(tc.flag, tc.lis, "topod-0")
		if err != nil || got != tc.want {
			t.Errorf("advertiseAddress(%q, %v) = %q, %v; want %q", tc.flag, tc.lis, got, err, tc.want)
		}
	}
}
