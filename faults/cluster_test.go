package faults

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/miniotest"
	"github.com/topod-io/topod/internal/vtlocal"
	"github.com/topod-io/topod/pkg/topoplugin"
)

// inlineLimit is the topod replicas' --inline-limit: the workload's large
// values are above it, so they go through the blob store.
const inlineLimit = 512

// lockTTL is the TTL of the workload's locks (the plugin's LockWithTTL).
const lockTTL = 3 * time.Second

// topodReplica is one topod process and, for etcd backends, the proxies
// between it and each etcd member.
type topodReplica struct {
	addr        string
	metricsAddr string // with clusterOptions.metrics
	args        []string
	dir         string
	proc        *vtlocal.Process
	proxies     []proxy.Server // one per etcd member
}

// cluster is what one run works against.
type cluster struct {
	t        testing.TB
	dir      string
	etcd     *etcdCluster // nil on bolt
	minio    *miniotest.Server
	replicas []*topodReplica
	etcd2    bool
}

// clusterOptions say what to start.
type clusterOptions struct {
	replicas int
	bolt     bool // one replica on bolt instead of replicas on etcd
	etcd2    bool // no topod, no MinIO: clients use stock etcd2 on the etcd cluster
	metrics  bool // the replicas serve /metrics (metricsAddr)
	// inlineLimit is the replicas' --inline-limit; 0 for inlineLimit.
	inlineLimit int
}

// startCluster starts MinIO, the etcd cluster (unless bolt) and the topod
// replicas.
func startCluster(t testing.TB, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), etcd2: opts.etcd2}
	if opts.etcd2 {
		c.etcd = startEtcd(t, filepath.Join(c.dir, "etcd"), 3)
		return c
	}
	c.minio = miniotest.Start(t) // with its bucket made
	creds := filepath.Join(c.dir, "credentials")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.minio.AccessKey, c.minio.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if !opts.bolt {
		c.etcd = startEtcd(t, filepath.Join(c.dir, "etcd"), 3)
	}
	ports := pickPorts(t, 2*opts.replicas)
	for i := range opts.replicas {
		r := &topodReplica{addr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]), dir: filepath.Join(c.dir, fmt.Sprintf("topod%d", i))}
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		backend := "bolt://" + filepath.Join(r.dir, "topo.db")
		if c.etcd != nil {
			var eps []string
			for _, ep := range c.etcd.Endpoints() {
				p := startProxy(t, ep)
				r.proxies = append(r.proxies, p)
				eps = append(eps, strings.TrimPrefix(p.From(), "tcp://"))
			}
			backend = "etcd://" + strings.Join(eps, ",")
		}
		r.args = []string{"--listen", r.addr, "--backend", backend, "--data-dir", r.dir,
			"--blobs", c.minio.URL("topod"), "--blobs-credentials-file", creds,
			"--inline-limit", fmt.Sprint(cmp.Or(opts.inlineLimit, inlineLimit)), "--log-level", "warn", "--shutdown-grace", "1s"}
		if opts.metrics {
			r.metricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
			r.args = append(r.args, "--metrics-listen", r.metricsAddr)
		}
		c.replicas = append(c.replicas, r)
		c.startReplica(i)
	}
	t.Cleanup(func() {
		for _, r := range c.replicas {
			if r.proc != nil {
				r.proc.Kill()
			}
		}
	})
	return c
}

// startProxy starts an etcd proxy from a free loopback port to target.
func startProxy(t testing.TB, target string) proxy.Server {
	t.Helper()
	port := pickPorts(t, 1)[0]
	p := proxy.NewServer(proxy.ServerConfig{
		Logger: zap.NewNop(),
		From:   url.URL{Scheme: "tcp", Host: fmt.Sprintf("127.0.0.1:%d", port)},
		To:     url.URL{Scheme: "tcp", Host: target},
	})
	select {
	case <-p.Ready():
	case err := <-p.Error():
		t.Fatalf("proxy to %s: %v", target, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// startReplica starts replica i and waits until it serves.
func (c *cluster) startReplica(i int) {
	r := c.replicas[i]
	p, err := vtlocal.Start(vtlocal.Spec{Name: fmt.Sprintf("topod%d", i), Binary: topodBin, Args: r.args,
		Log: filepath.Join(r.dir, "topod.log"), Dir: r.dir})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.WaitGRPCHealth(ctx, r.addr); err != nil {
		c.t.Fatal(err)
	}
	r.proc = p
}

// killReplica kills replica i with SIGKILL.
func (c *cluster) killReplica(i int) {
	c.replicas[i].proc.Kill()
	c.replicas[i].proc = nil
}

// signalReplica sends sig (SIGSTOP, SIGCONT) to replica i.
func (c *cluster) signalReplica(i int, sig syscall.Signal) {
	if err := syscall.Kill(c.replicas[i].proc.Pid(), sig); err != nil {
		c.t.Errorf("signal topod%d: %v", i, err)
	}
}

// partitionReplica cuts (or, with on false, restores) replica i's
// connections to etcd: its proxies hold what they carry, both ways.
func (c *cluster) partitionReplica(i int, on bool) {
	for _, p := range c.replicas[i].proxies {
		partition(p, on)
	}
}

// partition holds (on) or releases what p carries, both ways: a network
// partition as TCP sees it, data delayed until it heals. (The proxy's
// blackhole drops bytes in the middle of a stream instead, which no TCP
// network does: the gRPC stream above then loses messages silently.)
func partition(p proxy.Server, on bool) {
	if on {
		p.PauseTx()
		p.PauseRx()
	} else {
		p.UnpauseTx()
		p.UnpauseRx()
	}
}

// addrs is the plugin's server address of every replica.
func (c *cluster) addrs() string {
	var a []string
	for _, r := range c.replicas {
		a = append(a, r.addr)
	}
	return strings.Join(a, ",")
}

// conn opens a client connection of its own: the plugin's to every topod
// replica, or stock etcd2's to every etcd member.
func (c *cluster) conn() topo.Conn {
	var conn topo.Conn
	var err error
	if c.etcd2 {
		conn, err = etcd2topo.NewServer(strings.Join(c.etcd.Endpoints(), ","), "/faults")
	} else {
		conn, err = topoplugin.NewConn(c.addrs(), "/faults")
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(conn.Close)
	return conn
}

// version is a client's topo.Version of revision n.
func (c *cluster) version(n int64) topo.Version {
	if c.etcd2 {
		return etcd2topo.EtcdVersion(n)
	}
	return topoplugin.Version(n)
}

func pickPorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Pick(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
