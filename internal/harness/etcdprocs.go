package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/proc"
)

// EtcdProcsConfig says what StartEtcdProcs starts.
type EtcdProcsConfig struct {
	Name    string // names the members ("etcd" makes etcd-m0, ...) and their logs
	Binary  string // the etcd binary: EtcdBinary
	Dir     string // data directories and logs
	Members int    // 1 or 3

	// NoFsync runs the members without fsync (etcd's --unsafe-no-fsync):
	// for tests of a benchmark's pipeline, never for its figures.
	NoFsync bool
	// PeerProxies puts a proxy in front of each member's peer listener, so
	// that PartitionPeer can cut a member from its peers.
	PeerProxies bool
}

// EtcdProcs is an etcd cluster whose members are child processes of the
// etcd binary (or, from ExternalEtcd, a cluster this process did not start),
// for the faults an embedded member cannot suffer (SIGKILL, a cut peer
// listener) and for benchmarks that measure etcd's own CPU and memory.
type EtcdProcs struct {
	cfg   EtcdProcsConfig
	token string
	cli   *clientv3.Client // for housekeeping: leader, compaction

	mu      sync.Mutex
	members []*procMember

	// external clusters: endpoints and metrics URLs given by the user.
	endpoints  []string
	metricsURL []string
}

// procMember is one member: its ports, its peer proxy and, while it runs,
// its process.
type procMember struct {
	name                        string
	dir                         string
	peer, client, metrics, advr int // advr: the peer port advertised (the proxy's, with PeerProxies)
	proxy                       proxy.Server
	proc                        *proc.Process // nil while down
}

// EtcdProcsStartTimeout bounds how long a member takes to serve.
const EtcdProcsStartTimeout = 60 * time.Second

// StartEtcdProcs starts the members of cfg, all at once (a member of a new
// cluster is ready only once a quorum is), and waits until each serves its
// /health.
func StartEtcdProcs(ctx context.Context, cfg EtcdProcsConfig) (*EtcdProcs, error) {
	if cfg.Members < 1 || cfg.Binary == "" || cfg.Dir == "" {
		return nil, fmt.Errorf("start etcd %s: need members (%d), a binary (%q) and a directory (%q)", cfg.Name, cfg.Members, cfg.Binary, cfg.Dir)
	}
	var err error
	for attempt := range startAttempts {
		var c *EtcdProcs
		if c, err = startEtcdProcsOnce(ctx, cfg, attempt); err == nil {
			return c, nil
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("start etcd %s: %w", cfg.Name, err)
}

func startEtcdProcsOnce(ctx context.Context, cfg EtcdProcsConfig, attempt int) (*EtcdProcs, error) {
	per := 3
	if cfg.PeerProxies {
		per = 4
	}
	ports, err := freeport.Pick(per * cfg.Members)
	if err != nil {
		return nil, err
	}
	c := &EtcdProcs{cfg: cfg, token: fmt.Sprintf("%s-%d-%d", cfg.Name, os.Getpid(), time.Now().UnixNano())}
	for i := range cfg.Members {
		p := ports[per*i:]
		m := &procMember{
			name: fmt.Sprintf("%s-m%d", cfg.Name, i),
			peer: p[0], client: p[1], metrics: p[2], advr: p[0],
		}
		m.dir = filepath.Join(cfg.Dir, fmt.Sprintf("%s-%d", m.name, attempt))
		if err := os.MkdirAll(m.dir, 0o750); err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", m.name, err)
		}
		if cfg.PeerProxies {
			m.advr = p[3]
			if m.proxy, err = startProxy(m.advr, m.peer); err != nil {
				c.Close()
				return nil, fmt.Errorf("etcd member %s: peer %w", m.name, err)
			}
		}
		c.members = append(c.members, m)
	}
	for i := range c.members {
		if err := c.launch(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	// The members wait for each other: wait for them together, and stop
	// at the first that fails.
	g, gctx := errgroup.WithContext(ctx)
	for i := range c.members {
		g.Go(func() error { return c.waitReady(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		c.Close()
		return nil, err
	}
	if c.cli, err = clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		c.Close()
		return nil, fmt.Errorf("etcd %s client: %w", cfg.Name, err)
	}
	return c, nil
}

// StartProxy starts a TCP proxy from a free loopback port to target
// (host:port), for a test to Partition what goes through it. Its address is
// strings.TrimPrefix(p.From(), "tcp://").
func StartProxy(target string) (proxy.Server, error) {
	ports, err := freeport.Pick(1)
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: %w", target, err)
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("proxy to %s: want a loopback 127.0.0.1:port (%v)", target, err)
	}
	var to int
	if _, err := fmt.Sscan(port, &to); err != nil {
		return nil, fmt.Errorf("proxy to %s: %w", target, err)
	}
	return startProxy(ports[0], to)
}

// startProxy starts a TCP proxy from port from to port to, on loopback.
func startProxy(from, to int) (proxy.Server, error) {
	p := proxy.NewServer(proxy.ServerConfig{
		Logger: zap.NewNop(),
		From:   url.URL{Scheme: "tcp", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(from))},
		To:     url.URL{Scheme: "tcp", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(to))},
	})
	select {
	case <-p.Ready():
		return p, nil
	case err := <-p.Error():
		p.Close()
		return nil, fmt.Errorf("proxy %d to %d: %w", from, to, err)
	}
}

// launch starts member i's process (its data directory decides whether it
// joins a new cluster or restarts on its WAL).
func (c *EtcdProcs) launch(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	var initial []string
	for _, o := range c.members {
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", o.name, o.advr))
	}
	u := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }
	args := []string{
		"--name", m.name,
		"--data-dir", filepath.Join(m.dir, "data"),
		"--listen-peer-urls", u(m.peer),
		"--initial-advertise-peer-urls", u(m.advr),
		"--listen-client-urls", u(m.client),
		"--advertise-client-urls", u(m.client),
		"--listen-metrics-urls", u(m.metrics),
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-token", c.token,
		"--initial-cluster-state", "new", // ignored on restart: the WAL is there
		"--log-level", "error",
		fmt.Sprintf("--unsafe-no-fsync=%v", c.cfg.NoFsync),
	}
	p, err := startProcess("etcd "+m.name, c.cfg.Binary, args, nil, filepath.Join(m.dir, "etcd.log"))
	if err != nil {
		return err
	}
	m.proc = p
	return nil
}

// waitReady waits until member i answers its /health (which needs a
// leader).
func (c *EtcdProcs) waitReady(ctx context.Context, i int) error {
	c.mu.Lock()
	m := c.members[i]
	p := m.proc
	c.mu.Unlock()
	health := fmt.Sprintf("http://127.0.0.1:%d/health", m.metrics)
	return waitReady(ctx, p, EtcdProcsStartTimeout, func(ctx context.Context) error { return p.WaitHTTP(ctx, health) })
}

// ExternalEtcd returns a handle on a cluster this process did not start:
// endpoints are host:port client addresses; metricsURLs (one per member,
// default http://<endpoint>/metrics, which etcd serves on its client port)
// are scraped. It has no processes: Stats is empty, the fault hooks fail.
func ExternalEtcd(name string, endpoints, metricsURLs []string) (*EtcdProcs, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("external etcd: no endpoints")
	}
	if len(metricsURLs) == 0 {
		for _, ep := range endpoints {
			metricsURLs = append(metricsURLs, "http://"+ep+"/metrics")
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("external etcd client: %w", err)
	}
	return &EtcdProcs{cfg: EtcdProcsConfig{Name: name}, cli: cli, endpoints: endpoints, metricsURL: metricsURLs}, nil
}

// External reports whether this process did not start the cluster.
func (c *EtcdProcs) External() bool { return len(c.members) == 0 }

// Name is the cluster's name.
func (c *EtcdProcs) Name() string { return c.cfg.Name }

// Endpoints returns the members' client addresses (host:port), whether
// they run or not.
func (c *EtcdProcs) Endpoints() []string {
	if c.External() {
		return c.endpoints
	}
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = net.JoinHostPort("127.0.0.1", fmt.Sprint(m.client))
	}
	return out
}

// MetricsURLs returns each member's Prometheus endpoint.
func (c *EtcdProcs) MetricsURLs() []string {
	if c.External() {
		return c.metricsURL
	}
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = fmt.Sprintf("http://127.0.0.1:%d/metrics", m.metrics)
	}
	return out
}

// Client is a client of every member, for housekeeping; Close closes it.
func (c *EtcdProcs) Client() *clientv3.Client { return c.cli }

// procs returns the processes of the running members.
func (c *EtcdProcs) procs() []*proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc.Process
	for _, m := range c.members {
		if m.proc != nil {
			out = append(out, m.proc)
		}
	}
	return out
}

// Stats returns the running members' CPU time and memory, summed; an error
// if one has exited on its own (none for an external cluster).
func (c *EtcdProcs) Stats() (ProcStats, error) {
	var sum ProcStats
	for _, p := range c.procs() {
		if err := p.ExitError(); err != nil {
			return ProcStats{}, err
		}
		s, err := ReadProcStats(p.Pid())
		if err != nil {
			return ProcStats{}, fmt.Errorf("%s: %w", p.Spec.Name, err)
		}
		sum = sum.Add(s)
	}
	return sum, nil
}

// Leader returns the index (in Endpoints) of the member that reports
// itself leader.
func (c *EtcdProcs) Leader(ctx context.Context) (int, error) {
	for i, ep := range c.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.cli.Status(sctx, ep)
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			return i, nil
		}
	}
	return -1, fmt.Errorf("etcd %s: no member reports itself leader", c.cfg.Name)
}

// Kill kills member i with SIGKILL (a crash: no goodbye to its peers or its
// clients) and waits for it to exit. Its data and ports are kept for
// Restart; killing a member that is down does nothing.
func (c *EtcdProcs) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	p := m.proc
	m.proc = nil
	c.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Restart starts member i again on its data and ports after Kill, and
// waits until it serves.
func (c *EtcdProcs) Restart(ctx context.Context, i int) error {
	if err := c.launch(i); err != nil {
		return fmt.Errorf("restart etcd member %d: %w", i, err)
	}
	if err := c.waitReady(ctx, i); err != nil {
		return fmt.Errorf("restart etcd member %d: %w", i, err)
	}
	return nil
}

// KillLeader kills the leader (Kill) and returns its index. The member
// stays down.
func (c *EtcdProcs) KillLeader(ctx context.Context) (int, error) {
	if len(c.members) < 3 {
		return -1, errors.New("etcd: kill leader: the cluster keeps a quorum only with three members or more")
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return -1, fmt.Errorf("etcd: kill leader: %w", err)
	}
	c.Kill(li)
	return li, nil
}

// MoveLeader transfers leadership from the current leader to the next
// member, as etcdctl move-leader does, and returns the new leader's index.
func (c *EtcdProcs) MoveLeader(ctx context.Context) (int, error) {
	eps := c.Endpoints()
	if len(eps) < 2 {
		return -1, errors.New("etcd: move leader: a one-member cluster has no other member")
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return -1, fmt.Errorf("etcd: move leader: %w", err)
	}
	next := (li + 1) % len(eps)
	st, err := c.cli.Status(ctx, eps[next])
	if err != nil {
		return -1, fmt.Errorf("etcd: move leader: status of %s: %w", eps[next], err)
	}
	// MoveLeader must be sent to the leader.
	lc, err := clientv3.New(clientv3.Config{Endpoints: []string{eps[li]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return -1, fmt.Errorf("etcd: move leader: %w", err)
	}
	defer lc.Close()
	if _, err := lc.MoveLeader(ctx, st.Header.MemberId); err != nil {
		return -1, fmt.Errorf("etcd: move leader to %s: %w", eps[next], err)
	}
	return next, nil
}

// PartitionPeer cuts (on) or heals member i's peer listener: its peers'
// connections to it hold what they carry, both ways, as a partitioned TCP
// network delays data until it heals (its own connections to its peers, and
// its clients, are untouched). The cluster needs PeerProxies.
func (c *EtcdProcs) PartitionPeer(i int, on bool) error {
	p := c.members[i].proxy
	if p == nil {
		return fmt.Errorf("etcd %s: partition member %d: started without PeerProxies", c.cfg.Name, i)
	}
	Partition(p, on)
	return nil
}

// Partition holds (on) or releases what p carries, both ways: a network
// partition as TCP sees it, data delayed until it heals. (The proxy's
// blackhole drops bytes in the middle of a stream instead, which no TCP
// network does: the gRPC stream above then loses messages silently.)
func Partition(p proxy.Server, on bool) {
	if on {
		p.PauseTx()
		p.PauseRx()
	} else {
		p.UnpauseTx()
		p.UnpauseRx()
	}
}

// Compact compacts the cluster's history up to its current revision, and
// returns that revision.
func (c *EtcdProcs) Compact(ctx context.Context) (int64, error) {
	resp, err := c.cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd: compact: revision: %w", err)
	}
	rev := resp.Header.Revision
	if _, err := c.cli.Compact(ctx, rev); err != nil && !strings.Contains(err.Error(), "compacted") {
		return rev, fmt.Errorf("etcd: compact to %d: %w", rev, err)
	}
	return rev, nil
}

// DeletePrefix removes every key under prefix.
func (c *EtcdProcs) DeletePrefix(ctx context.Context, prefix string) error {
	if _, err := c.cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd: delete %s*: %w", prefix, err)
	}
	return nil
}

// Close stops every member with SIGTERM and their proxies (an external
// cluster is left running), and closes the client.
func (c *EtcdProcs) Close() {
	if c.cli != nil {
		c.cli.Close()
	}
	var wg sync.WaitGroup
	for _, p := range c.procs() {
		wg.Go(func() { p.Stop(stopGrace) })
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		m.proc = nil
		if m.proxy != nil {
			m.proxy.Close()
		}
	}
}
