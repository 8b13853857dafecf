// Package etcdtest starts a real etcd in-process, with
// go.etcd.io/etcd/server/v3/embed, for tests and benchmarks.
//
// A Cluster has one or three members on loopback ports picked free, data in
// the test's temporary directory and etcd's default limits (notably the
// 1.5 MiB maximum request size), so a test sees what production etcd would
// answer. Members can be stopped and restarted on the same ports and data
// for fault tests, and each member serves its Prometheus metrics on a port of
// its own. Everything is torn down by tb.Cleanup.
//
// etcd's own logging goes, at error level, to a buffer printed only when the
// test fails; set ETCDTEST_LOG_LEVEL (debug, info, warn, error) to stream it
// to stderr instead.
//
// Prometheus metrics are registered by etcd in the process-wide default
// registry, so every member of an in-process cluster reports the same,
// process-wide, counters: a benchmark that reads them should run one cluster
// at a time and diff readings taken before and after.
package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/freeport"
)

// StartTimeout bounds how long Start and RestartMember wait for members to be
// ready.
const StartTimeout = 30 * time.Second

// startAttempts is how many times Start picks fresh ports when another
// process took one of them between picking and binding.
const startAttempts = 5

// Option adjusts a Cluster before it starts.
type Option func(*options)

type options struct {
	configure []func(i int, cfg *embed.Config)
	tls       *certtest.CA
}

// WithTLS makes the members serve clients over TLS only, with ca's server
// certificate, and require client certificates signed by ca (etcd's
// --client-cert-auth). Endpoints are then https:// URLs, and the cluster's
// own clients present ca's client certificate.
func WithTLS(ca *certtest.CA) Option {
	return func(o *options) { o.tls = ca }
}

// WithConfig lets a test change member i's embed.Config before each start of
// that member (the first one and every restart). Ports, names, data
// directories and the initial cluster are already set; keep them.
func WithConfig(f func(i int, cfg *embed.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, f) }
}

// Cluster is a running in-process etcd cluster.
type Cluster struct {
	token   string
	dataDir string
	logs    *logSink
	opts    options
	client  *clientv3.Client // for helpers such as Compact

	mu      sync.Mutex
	members []*member
}

// member is one etcd member: where it listens and, while it runs, its server.
type member struct {
	name       string
	dir        string
	peerURL    url.URL
	clientURL  url.URL
	metricsURL url.URL
	id         uint64 // raft member ID, stable across restarts

	etcd *embed.Etcd // nil while stopped
}

// Start starts a cluster of members members (1 or 3; any positive number
// works) and waits until every member is ready. It fails tb if the cluster
// does not come up within StartTimeout. The cluster is stopped, and its data
// removed, when the test ends.
func Start(tb testing.TB, members int, opts ...Option) *Cluster {
	tb.Helper()
	if members < 1 {
		tb.Fatalf("etcdtest: %d members: need at least 1", members)
	}
	c := &Cluster{
		token: fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano()),
		logs:  newLogSink(),
	}
	for _, o := range opts {
		o(&c.opts)
	}
	// Cleanups run last-in first-out: logs are printed after the members
	// stop, and the data directory is removed after they stop too.
	tb.Cleanup(func() {
		if tb.Failed() {
			c.logs.dump(tb)
		}
	})
	c.dataDir = tb.TempDir()
	tb.Cleanup(c.stopAll)

	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if err = c.start(attempt, members); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("etcdtest: start %d-member cluster: %v", members, err)
	}

	cli, err := c.newClient()
	if err != nil {
		tb.Fatalf("etcdtest: client: %v", err)
	}
	c.client = cli
	return c
}

// newClient returns an etcd client on every member.
func (c *Cluster) newClient() (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      c.logs.logger,
	}
	if ca := c.opts.tls; ca != nil {
		tc, err := c.ClientTLS()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// ClientTLS returns the TLS configuration a client of a WithTLS cluster
// needs (nil for a plaintext cluster).
func (c *Cluster) ClientTLS() (*tls.Config, error) {
	ca := c.opts.tls
	if ca == nil {
		return nil, nil
	}
	return transport.TLSInfo{CertFile: ca.ClientCert, KeyFile: ca.ClientKey, TrustedCAFile: ca.CAFile}.ClientConfig()
}

// start makes one attempt at starting a fresh cluster on newly picked ports.
func (c *Cluster) start(attempt, n int) error {
	c.stopAll()
	ports, err := freeport.Pick(3 * n)
	if err != nil {
		return err
	}
	ms := make([]*member, n)
	peers := make([]string, n)
	for i := range ms {
		m := &member{
			name:       fmt.Sprintf("m%d", i),
			dir:        filepath.Join(c.dataDir, fmt.Sprintf("a%d-m%d", attempt, i)),
			peerURL:    loopbackURL(ports[3*i]),
			clientURL:  c.clientURL(ports[3*i+1]),
			metricsURL: loopbackURL(ports[3*i+2]),
		}
		ms[i] = m
		peers[i] = m.name + "=" + m.peerURL.String()
	}
	initialCluster := strings.Join(peers, ",")

	c.mu.Lock()
	c.members = ms
	c.mu.Unlock()

	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return c.startMembers(idx, initialCluster)
}

// startMembers starts the given members and waits until all are ready. On
// failure every member it started is stopped again.
func (c *Cluster) startMembers(idx []int, initialCluster string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if initialCluster == "" {
		initialCluster = c.initialClusterLocked()
	}
	var errs []error
	var started []int
	for _, i := range idx {
		m := c.members[i]
		if m.etcd != nil {
			errs = append(errs, fmt.Errorf("member %d (%s) is already running", i, m.name))
			continue
		}
		e, err := embed.StartEtcd(c.config(i, m, initialCluster))
		if err != nil {
			errs = append(errs, fmt.Errorf("member %d (%s): %w", i, m.name, err))
			continue
		}
		m.etcd = e
		started = append(started, i)
	}
	if len(errs) == 0 {
		errs = append(errs, c.waitReadyLocked(started)...)
	}
	if err := errors.Join(errs...); err != nil {
		for _, i := range started {
			c.stopLocked(i)
		}
		return err
	}
	for _, i := range started {
		c.members[i].id = uint64(c.members[i].etcd.Server.MemberID())
	}
	return nil
}

// waitReadyLocked waits, concurrently, for the given members to be ready: a
// member of a multi-member cluster is ready only once a quorum has formed, so
// all of them must be starting at the same time.
func (c *Cluster) waitReadyLocked(idx []int) []error {
	errc := make(chan error, len(idx))
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for _, i := range idx {
		m := c.members[i]
		e := m.etcd
		go func() {
			select {
			case <-e.Server.ReadyNotify():
				errc <- nil
			case err := <-e.Err():
				errc <- fmt.Errorf("member %d (%s) failed while starting: %v", i, m.name, err)
			case <-e.Server.StopNotify():
				errc <- fmt.Errorf("member %d (%s) stopped while starting", i, m.name)
			case <-ctx.Done():
				errc <- fmt.Errorf("member %d (%s) not ready after %v (no quorum?)", i, m.name, StartTimeout)
			}
		}()
	}
	var errs []error
	for range idx {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// config builds member i's embed.Config. It is rebuilt for every start
// (embed.Config holds a mutex and must not be copied).
func (c *Cluster) config(i int, m *member, initialCluster string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenPeerUrls = []url.URL{m.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.peerURL}
	cfg.ListenClientUrls = []url.URL{m.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.clientURL}
	cfg.ListenMetricsUrls = []url.URL{m.metricsURL}
	if ca := c.opts.tls; ca != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, TrustedCAFile: ca.CAFile, ClientCertAuth: true}
	}
	cfg.InitialCluster = initialCluster
	cfg.InitialClusterToken = c.token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored on restart: the WAL is there
	cfg.LogLevel = c.logs.level.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.logs.logger)
	for _, f := range c.opts.configure {
		f(i, cfg)
	}
	return cfg
}

func (c *Cluster) initialClusterLocked() string {
	peers := make([]string, len(c.members))
	for i, m := range c.members {
		peers[i] = m.name + "=" + m.peerURL.String()
	}
	return strings.Join(peers, ",")
}

// Size returns the number of members, running or not.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Endpoints returns every member's client URL (http://127.0.0.1:port), in
// member order, whether the member is running or not.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL.String()
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].clientURL.String()
}

// ClientURLs returns Endpoints joined by commas, the form Vitess's
// --topo-global-server-address and etcd's --endpoints take.
func (c *Cluster) ClientURLs() string {
	return strings.Join(c.Endpoints(), ",")
}

// Client returns a new etcd client on every member, closed when tb ends.
func (c *Cluster) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := c.newClient()
	if err != nil {
		tb.Fatalf("etcdtest: client: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// Logger returns the logger etcd logs to, for clients a test creates itself.
func (c *Cluster) Logger() *zap.Logger { return c.logs.logger }

// Member returns member i's embedded server, or nil while it is stopped.
func (c *Cluster) Member(i int) *embed.Etcd {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].etcd
}

// Running reports whether member i is running.
func (c *Cluster) Running(i int) bool { return c.Member(i) != nil }

// Leader returns the index of the member the running members see as leader,
// or -1 if none does.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.etcd == nil {
			continue
		}
		lead := uint64(m.etcd.Server.Leader())
		for j, o := range c.members {
			if lead != 0 && o.id == lead {
				return j
			}
		}
	}
	return -1
}

// StopMember stops member i (a no-op if it is stopped). Its data and ports
// are kept for RestartMember.
func (c *Cluster) StopMember(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(i)
}

func (c *Cluster) stopLocked(i int) {
	m := c.members[i]
	if m.etcd == nil {
		return
	}
	m.etcd.Close()
	m.etcd = nil
}

// RestartMember starts stopped member i again on its data directory and
// ports, and waits until it is ready. A member is ready once it reaches a
// quorum: after a majority was stopped, restart members together with
// RestartMembers.
func (c *Cluster) RestartMember(i int) error {
	return c.RestartMembers(i)
}

// RestartMembers restarts the given stopped members concurrently and waits
// until all are ready.
//
// Ports are picked outside the kernel's ephemeral range, so no client
// connection takes them while a member is stopped; a restart that still finds
// its port in use (a socket of the stopped member lingering) is retried for a
// few seconds.
func (c *Cluster) RestartMembers(idx ...int) error {
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err = c.startMembers(idx, "")
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("etcdtest: restart: %w", err)
	}
	return nil
}

// stopAll stops every member and the helper client.
func (c *Cluster) stopAll() {
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.members {
		c.stopLocked(i)
	}
}

// Compact compacts the cluster's history up to rev (physically: when it
// returns, no member serves revisions older than rev).
func (c *Cluster) Compact(ctx context.Context, rev int64) error {
	_, err := c.client.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		// Already compacted to rev or beyond (by a concurrent call).
		return nil
	}
	if err != nil {
		return fmt.Errorf("etcdtest: compact to %d: %w", rev, err)
	}
	return nil
}

// Revision returns the cluster's current revision.
func (c *Cluster) Revision(ctx context.Context) (int64, error) {
	resp, err := c.client.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcdtest: revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// clientURL is the client URL of a member on port: https with WithTLS.
func (c *Cluster) clientURL(port int) url.URL {
	u := loopbackURL(port)
	if c.opts.tls != nil {
		u.Scheme = "https"
	}
	return u
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(port))}
}
