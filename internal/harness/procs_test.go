package harness_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/topod-io/topod/internal/harness"
)

// etcdBin builds (or finds in the cache) the etcd binary.
func etcdBin(t *testing.T) string {
	t.Helper()
	bin, err := harness.EtcdBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestEtcdProcsFaults: three etcd processes behind peer proxies survive
// their leader's SIGKILL and a restart, and a member cut from its peers
// loses the leadership it had.
func TestEtcdProcsFaults(t *testing.T) {
	ctx := t.Context()
	c, err := harness.StartEtcdProcs(ctx, harness.EtcdProcsConfig{Name: "etcd", Binary: etcdBin(t), Dir: t.TempDir(), Members: 3, NoFsync: true, PeerProxies: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := len(c.Endpoints()); n != 3 {
		t.Fatalf("%d endpoints, want 3", n)
	}
	st, err := c.Stats()
	if err != nil || st.RSS <= 0 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	m, err := harness.Scrape(ctx, c.MetricsURLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Lookup("etcd_server_has_leader"); !ok {
		t.Fatal("etcd exports no etcd_server_has_leader")
	}

	killed, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put(t, c.Endpoints(), "after-kill")
	if err := c.Restart(ctx, killed); err != nil {
		t.Fatal(err)
	}
	// The restarted member serves what was written while it was down.
	get(t, c.Endpoints()[killed:killed+1], "after-kill")

	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PartitionPeer(leader, true); err != nil {
		t.Fatal(err)
	}
	// Its peers no longer hear it: they elect another.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for i, ep := range c.Endpoints() {
			if i == leader {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := c.Client().Status(sctx, ep)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no new leader while m%d was cut from its peers: %v", leader, err)
	}
	if err := c.PartitionPeer(leader, false); err != nil {
		t.Fatal(err)
	}
	put(t, c.Endpoints(), "after-partition")
}

// put writes key, retrying while the cluster elects a leader (etcd times
// requests out then, as clients see it).
func put(t *testing.T, eps []string, key string) {
	t.Helper()
	cli := client(t, eps)
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, last = cli.Put(pctx, key, "v")
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("put %s: %v (last: %v)", key, err, last)
	}
}

func get(t *testing.T, eps []string, key string) {
	t.Helper()
	cli := client(t, eps)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s from %v: %v, %v", key, eps, resp, err)
	}
}

func client(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestTopodProc: the built topod on bolt serves, reports its metrics and
// stats, restarts on its address after SIGKILL, and stops on SIGTERM.
func TestTopodProc(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bin, err := harness.BuildTopod(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := harness.StartTopodProc(ctx, harness.TopodProcConfig{
		Name: "topod0", Binary: bin, Dir: dir, Metrics: true,
		Args: []string{"--backend", "bolt://" + filepath.Join(dir, "topo.db"), "--blobs", "file://" + filepath.Join(dir, "blobs"), "--data-dir", dir, "--shutdown-grace", "1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	m, err := harness.Scrape(ctx, p.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Lookup("go_goroutines"); !ok {
		t.Fatal("topod exports no go_goroutines")
	}
	if st, err := p.Stats(); err != nil || st.RSS <= 0 || st.PeakRSS < st.RSS {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	addr := p.Addr
	p.Kill()
	if _, err := p.Stats(); err == nil {
		t.Fatal("Stats of a killed topod: no error")
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Addr != addr {
		t.Fatalf("restarted on %s, want %s", p.Addr, addr)
	}
	child := p.Process()
	p.Stop()
	if _, err := child.Exited(); err != nil {
		t.Fatalf("topod did not exit cleanly on SIGTERM: %v", child.ExitError())
	}
}

// TestReadProcStats reads this process.
func TestReadProcStats(t *testing.T) {
	s, err := harness.ReadProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.PeakRSS < s.RSS {
		t.Fatalf("stats %+v", s)
	}
	if _, err := harness.ReadProcStats(1 << 30); err == nil {
		t.Fatal("stats of no process: no error")
	}
	if l := harness.LoadAvg(); len(strings.Fields(l)) != 3 {
		t.Fatalf("LoadAvg = %q", l)
	}
}
