package topoplugin_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

func newConn(t testing.TB, addr, root string) *topoplugin.Conn {
	t.Helper()
	c, err := topoplugin.NewConn(addr, root)
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// twoReplicas starts two topod replicas on one etcd.
func twoReplicas(t *testing.T) (a, b *harness.Topod) {
	t.Helper()
	cluster := harness.StartEtcd(t, 1)
	a = harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	b = harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	return a, b
}

// TestBoltSurvivesRestart: what was written through topod on bolt is there
// after topod restarts on the same file, and versions keep increasing.
func TestBoltSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "topo.db")
	b, err := boltkv.Open(file, boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := harness.StartTopod(t, b, toposerver.Options{})
	c := newConn(t, srv.Addr, "/vitess/global")
	v1, err := c.Create(ctx, "keyspaces/ks/Keyspace", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := harness.OpenBolt(t, file)
	srv2 := harness.StartTopodOn(t, srv.Addr, b2, toposerver.Options{})
	c2 := newConn(t, srv2.Addr, "/vitess/global")
	got, v, err := c2.Get(ctx, "keyspaces/ks/Keyspace")
	if err != nil || string(got) != "one" || v.String() != v1.String() {
		t.Fatalf("after restart Get = %q, %v, %v; want one, %v", got, v, err, v1)
	}
	v2, err := c2.Update(ctx, "keyspaces/ks/Keyspace", []byte("two"), v)
	if err != nil {
		t.Fatal(err)
	}
	if v2.(topoplugin.Version) <= v1.(topoplugin.Version) {
		t.Errorf("version after restart %v is not above %v", v2, v1)
	}
	// The first connection reconnects to the restarted server by itself.
	got, _, err = c.Get(ctx, "keyspaces/ks/Keyspace")
	if err != nil || string(got) != "two" {
		t.Errorf("old connection Get = %q, %v", got, err)
	}
}

// TestWatchSurvivesRestart: a watcher of a file keeps going across a topod
// restart, with no error, and converges on the latest value, including one
// written while topod was down.
func TestWatchSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "topo.db")
	b, err := boltkv.Open(file, boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := harness.StartTopod(t, b, toposerver.Options{})
	c := newConn(t, srv.Addr, "/vitess/cell1")
	if _, err := c.Create(ctx, "SrvVSchema", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	current, changes, err := c.Watch(watchCtx, "SrvVSchema")
	if err != nil || string(current.Contents) != "v1" {
		t.Fatalf("Watch = %v, %v", current, err)
	}

	srv.Stop()
	// Written while topod is down, directly in the store.
	if _, err := b.Update(ctx, "/vitess/cell1/SrvVSchema", []byte("v2"), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	srv2 := harness.StartTopodOn(t, srv.Addr, harness.OpenBolt(t, file), toposerver.Options{})
	waitFor(t, changes, "v2")

	c2 := newConn(t, srv2.Addr, "/vitess/cell1")
	if _, err := c2.Update(ctx, "SrvVSchema", []byte("v3"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, changes, "v3")
}

// TestWatchAfterStoreRestored: topod comes back on a store restored from
// an older backup, whose revision is below what a watcher had received.
// topod refuses to resume the watch from that revision (OutOfRange) and
// the plugin watches again from the start: the watcher gets the restored
// value, with no error, rather than keep a version the store no longer
// has.
func TestWatchAfterStoreRestored(t *testing.T) {
	ctx := t.Context()
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	c := newConn(t, srv.Addr, "/vitess/cell1")
	for i := range 20 {
		if _, err := c.Update(ctx, "SrvVSchema", fmt.Appendf(nil, "v%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	current, changes, err := c.Watch(watchCtx, "SrvVSchema")
	if err != nil || string(current.Contents) != "v19" {
		t.Fatalf("Watch = %v, %v", current, err)
	}
	srv.Stop()

	// The backup: one write, at a revision far below the watcher's.
	restored := harness.OpenBolt(t, filepath.Join(t.TempDir(), "restored.db"))
	if _, err := restored.Update(ctx, "/vitess/cell1/SrvVSchema", []byte("restored"), 0); err != nil {
		t.Fatal(err)
	}
	harness.StartTopodOn(t, srv.Addr, restored, toposerver.Options{})
	waitFor(t, changes, "restored")
}

// waitFor reads changes until one carries want; an error fails the test.
func waitFor(t *testing.T, changes <-chan *topo.WatchData, want string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case wd, ok := <-changes:
			if !ok {
				t.Fatalf("watch closed waiting for %q", want)
			}
			if wd.Err != nil {
				t.Fatalf("watch error waiting for %q: %v", want, wd.Err)
			}
			if string(wd.Contents) == want {
				return
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %q", want)
		}
	}
}

// TestReplicasShareEtcd: two topod replicas on one etcd serve the same data;
// a connection listing both fails over when its replica dies, and its
// watches resume on the other one.
func TestReplicasShareEtcd(t *testing.T) {
	ctx := t.Context()
	a, b := twoReplicas(t)

	ca := newConn(t, a.Addr, "/vitess/global")
	cb := newConn(t, b.Addr, "/vitess/global")
	if _, err := ca.Create(ctx, "keyspaces/ks/Keyspace", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Another connection sees the write once the replica it reads from
	// has it: at once if that replica's mirror is there, a few
	// milliseconds later if it is catching up (README, "Consistency").
	eventually(t, cb, "keyspaces/ks/Keyspace", "x")

	both := newConn(t, a.Addr+","+b.Addr, "/vitess/global")
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	eventually(t, both, "keyspaces/ks/Keyspace", "x")
	_, changes, err := both.Watch(watchCtx, "keyspaces/ks/Keyspace")
	if err != nil {
		t.Fatal(err)
	}
	// Kill the replica serving the watch, then write through the other.
	serving, survivor := a, b
	if b.Topo.ActiveStreams() > 0 {
		serving, survivor = b, a
	}
	if serving.Topo.ActiveStreams() != 1 {
		t.Fatalf("the watch is not on one replica: a has %d streams, b %d", a.Topo.ActiveStreams(), b.Topo.ActiveStreams())
	}
	serving.Kill()
	cs := newConn(t, survivor.Addr, "/vitess/global")
	if _, err := cs.Update(ctx, "keyspaces/ks/Keyspace", []byte("y"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, changes, "y")
	if got, _, err := both.Get(ctx, "keyspaces/ks/Keyspace"); err != nil || string(got) != "y" {
		t.Fatalf("failover Get = %q, %v", got, err)
	}
}

// eventually waits, up to a minute, until c reads want in file.
func eventually(t *testing.T, c *topoplugin.Conn, file, want string) {
	t.Helper()
	var got []byte
	var err error
	if wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, _, err = c.Get(ctx, file)
		return err == nil && string(got) == want, nil
	}) != nil {
		t.Fatalf("Get %s = %q, %v; want %q", file, got, err, want)
	}
}

// lockHolderEnv makes the test binary a lock holder process (see
// TestLockHolderProcess).
const lockHolderEnv = "TOPOD_TEST_LOCK_HOLDER"

// TestLockHolderProcess is not a test on its own: run by
// TestLockReleasedWhenHolderDies in a child process, it takes a lock, says so
// and waits to be killed.
func TestLockHolderProcess(t *testing.T) {
	spec := os.Getenv(lockHolderEnv)
	if spec == "" {
		t.Skip("only runs as the child of TestLockReleasedWhenHolderDies")
	}
	addr, root, _ := strings.Cut(spec, "|")
	c, err := topoplugin.NewConn(addr, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LockWithTTL(context.Background(), "keyspaces/ks", "child", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	fmt.Println("LOCKED")
	// Hold it until the parent kills this process (SIGKILL), or until its
	// end of stdin closes (the parent ended first).
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestLockReleasedWhenHolderDies: a lock held by a process that is killed
// (SIGKILL, no chance to unlock) is released, on bolt and on etcd, well
// within its TTL; and one held by a connection whose stream breaks too.
func TestLockReleasedWhenHolderDies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func(t *testing.T) kv.Backend
	}{
		{"bolt", func(t *testing.T) kv.Backend { return harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")) }},
		{"etcd", func(t *testing.T) kv.Backend { return harness.OpenEtcd(t, harness.StartEtcd(t, 1).Endpoints()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			srv := harness.StartTopod(t, tc.backend(t), toposerver.Options{})
			c := newConn(t, srv.Addr, "/vitess/global")
			if _, err := c.Create(ctx, "keyspaces/ks/Keyspace", []byte("x")); err != nil {
				t.Fatal(err)
			}

			child := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$", "-test.v")
			child.Env = append(os.Environ(), lockHolderEnv+"="+srv.Addr+"|/vitess/global")
			out, err := child.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			in, err := child.StdinPipe() // held open: the child holds the lock until killed
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			child.Stderr = os.Stderr
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			defer child.Process.Kill()
			waitLine(t, out, "LOCKED")

			// Held: a short Lock times out.
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err = c.Lock(short, "keyspaces/ks", "parent")
			cancel()
			if !topo.IsErrType(err, topo.Timeout) {
				t.Fatalf("Lock while held = %v, want Timeout", err)
			}

			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = child.Wait()
			killed := time.Now()
			within, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			ld, err := c.Lock(within, "keyspaces/ks", "parent")
			if err != nil {
				t.Fatalf("Lock after the holder died: %v", err)
			}
			t.Logf("lock released %v after the holder was killed", time.Since(killed))

			// A connection whose stream breaks (closed without unlocking).
			other := newConn(t, srv.Addr, "/vitess/global")
			if err := ld.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := other.Lock(ctx, "keyspaces/ks", "other"); err != nil {
				t.Fatal(err)
			}
			other.Close()
			within2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
			defer cancel2()
			ld, err = c.Lock(within2, "keyspaces/ks", "parent")
			if err != nil {
				t.Fatalf("Lock after the holder's connection closed: %v", err)
			}
			if err := ld.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func waitLine(t *testing.T, r interface{ Read([]byte) (int, error) }, want string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(r)
		for s.Scan() {
			if strings.TrimSpace(s.Text()) == want {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("child exited before printing %s", want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("child did not print %s", want)
	}
}
