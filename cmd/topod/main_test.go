package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/topoplugin"
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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "etcd://127.0.0.1:1"}, "127.0.0.1:1"},
		{[]string{"--backend", "consul://x"}, "unknown scheme"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra-arg"}, "unknown command"},
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

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}
