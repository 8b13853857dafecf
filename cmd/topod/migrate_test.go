package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	vtlog "vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/toposerver"
)

// verifiedRE is the last line of the verify's progress (--progress lines).
var verifiedRE = regexp.MustCompile(`files verified: (\d+)/(\d+) \(100%\), 0 failed`)

// TestMigrateCommand runs `topod migrate` from stock etcd2 into topod, then
// again (nothing to copy), then with --verify-only.
func TestMigrateCommand(t *testing.T) {
	ctx := t.Context()
	vtlog.SwapLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	p := jd.JD().Sized(4)
	p.Cells = 2
	etcd := harness.StartEtcd(t, 1)
	etcdAddr := strings.TrimPrefix(etcd.Endpoint(0), "http://")
	src, err := topo.OpenServer("etcd2", etcdAddr, "/etcd2/global")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := jdtopo.CreateCells(ctx, src, p, etcdAddr, "/etcd2"); err != nil {
		t.Fatal(err)
	}
	if err := jdtopo.Write(ctx, src, p); err != nil {
		t.Fatal(err)
	}
	backend, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	topod := harness.StartTopod(t, backend, toposerver.Options{})

	run := func(extra ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		cmd := newRootCommand()
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append([]string{"migrate", "--from-address", etcdAddr, "--from-root", "/etcd2/global",
			"--to-address", topod.Addr, "--progress", "lines"}, extra...))
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("topod migrate %v: %v\n%s%s", extra, err, out.String(), errOut.String())
		}
		if m := verifiedRE.FindStringSubmatch(errOut.String()); m == nil || m[1] != m[2] {
			t.Fatalf("topod migrate %v: no verify progress in\n%s", extra, errOut.String())
		}
		return out.String()
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, " 0 updated, 0 unchanged, 0 vanished from the source, 0 failed"},
		{nil, " 0 created, 0 updated,"},
		{[]string{"--verify-only"}, "verified in"},
	} {
		out := run(tc.args...)
		t.Logf("topod migrate %v:\n%s", tc.args, out)
		if !strings.Contains(out, tc.want) || !strings.Contains(out, ": 0 differences") {
			t.Fatalf("topod migrate %v:\n%s\nwant %q and no differences", tc.args, out, tc.want)
		}
		if tc.args != nil && strings.Contains(out, "copied in") {
			t.Fatalf("--verify-only copied:\n%s", out)
		}
	}
}

// TestMigrateFlags: missing or bad flags fail at once, saying which.
func TestMigrateFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate"}, "--from-address and --to-address are required"},
		{[]string{"migrate", "--from-address", "a:1", "--to-address", "b:2", "--concurrency", "0"}, "--concurrency"},
		{[]string{"migrate", "--from-address", "a:1", "--to-address", "b:2", "--progress", "fancy"}, "--progress"},
		{[]string{"migrate", "--from-implementation", "zk9", "--from-address", "a:1", "--to-address", "b:2"}, "open the source"},
	} {
		cmd := newRootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("topod %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
