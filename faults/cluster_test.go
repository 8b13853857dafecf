package faults

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/proxy"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/internal/harness"
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
	*harness.TopodProc
	proxies []proxy.Server // one per etcd member
}

// cluster is what one run works against.
type cluster struct {
	t        testing.TB
	dir      string
	etcd     *harness.EtcdProcs // nil on bolt
	minio    *harness.MinIO
	replicas []*topodReplica
	etcd2    bool
}

// clusterOptions say what to start.
type clusterOptions struct {
	replicas int
	bolt     bool // one replica on bolt instead of replicas on etcd
	etcd2    bool // no topod, no MinIO: clients use stock etcd2 on the etcd cluster
	metrics  bool // the replicas serve /metrics (MetricsURL)
	// inlineLimit is the replicas' --inline-limit; 0 for inlineLimit.
	inlineLimit int
}

// startCluster starts MinIO, the etcd cluster (unless bolt) and the topod
// replicas.
func startCluster(t testing.TB, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), etcd2: opts.etcd2}
	if opts.etcd2 {
		c.etcd = startEtcd(t, filepath.Join(c.dir, "etcd"))
		return c
	}
	c.minio = harness.StartMinIO(t) // with its bucket made
	creds := filepath.Join(c.dir, "credentials")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.minio.AccessKey, c.minio.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if !opts.bolt {
		c.etcd = startEtcd(t, filepath.Join(c.dir, "etcd"))
	}
	for i := range opts.replicas {
		r := &topodReplica{}
		dir := filepath.Join(c.dir, fmt.Sprintf("topod%d", i))
		backend := "bolt://" + filepath.Join(dir, "topo.db")
		if c.etcd != nil {
			var eps []string
			for _, ep := range c.etcd.Endpoints() {
				p, err := harness.StartProxy(ep)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				r.proxies = append(r.proxies, p)
				eps = append(eps, strings.TrimPrefix(p.From(), "tcp://"))
			}
			backend = "etcd://" + strings.Join(eps, ",")
		}
		p, err := harness.StartTopodProc(t.Context(), harness.TopodProcConfig{
			Name: fmt.Sprintf("topod%d", i), Binary: topodBin, Dir: dir, Metrics: opts.metrics,
			Args: []string{"--backend", backend, "--data-dir", dir,
				"--blobs", c.minio.URL("topod"), "--blobs-credentials-file", creds,
				"--inline-limit", fmt.Sprint(cmp.Or(opts.inlineLimit, inlineLimit)), "--log-level", "warn", "--shutdown-grace", "1s"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Kill)
		r.TopodProc = p
		c.replicas = append(c.replicas, r)
	}
	return c
}

// startEtcd starts three etcd members, each a process, each behind a peer
// proxy (for etcd-member-partition).
func startEtcd(t testing.TB, dir string) *harness.EtcdProcs {
	t.Helper()
	bin, err := harness.EtcdBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e, err := harness.StartEtcdProcs(t.Context(), harness.EtcdProcsConfig{Name: "etcd", Binary: bin, Dir: dir, Members: 3, PeerProxies: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// startReplica starts replica i again (after killReplica) and waits until
// it serves.
func (c *cluster) startReplica(i int) {
	if err := c.replicas[i].Restart(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// killReplica kills replica i with SIGKILL.
func (c *cluster) killReplica(i int) { c.replicas[i].Kill() }

// signalReplica sends sig (SIGSTOP, SIGCONT) to replica i.
func (c *cluster) signalReplica(i int, sig syscall.Signal) {
	if err := c.replicas[i].Signal(sig); err != nil {
		c.t.Errorf("signal topod%d: %v", i, err)
	}
}

// partitionReplica cuts (or, with on false, restores) replica i's
// connections to etcd: its proxies hold what they carry, both ways.
func (c *cluster) partitionReplica(i int, on bool) {
	for _, p := range c.replicas[i].proxies {
		harness.Partition(p, on)
	}
}

// addrs is the plugin's server address of every replica.
func (c *cluster) addrs() string {
	var a []string
	for _, r := range c.replicas {
		a = append(a, r.Addr)
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
