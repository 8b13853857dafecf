package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/freeport"
)

// EtcdStartTimeout bounds how long starting or restarting etcd members
// waits for them to be ready.
const EtcdStartTimeout = 30 * time.Second

// startAttempts is how many times a start picks fresh ports when another
// process took one of them between picking and binding.
const startAttempts = 5

// EtcdOption adjusts an embedded etcd cluster before it starts.
type EtcdOption func(*etcdOptions)

type etcdOptions struct {
	configure []func(i int, cfg *embed.Config)
	tls       *certtest.CA
	log       io.Writer
}

// WithTLS makes the members serve clients over TLS only, with ca's server
// certificate, and require client certificates signed by ca (etcd's
// --client-cert-auth). Endpoints are then https:// URLs, and the cluster's
// own clients present ca's client certificate.
func WithTLS(ca *certtest.CA) EtcdOption {
	return func(o *etcdOptions) { o.tls = ca }
}

// WithConfig lets a test change member i's embed.Config before each start of
// that member (the first one and every restart). Ports, names, data
// directories and the initial cluster are already set; keep them.
func WithConfig(f func(i int, cfg *embed.Config)) EtcdOption {
	return func(o *etcdOptions) { o.configure = append(o.configure, f) }
}

// WithLog sends etcd's error log to w as it is written, instead of keeping
// it for a failing test.
func WithLog(w io.Writer) EtcdOption {
	return func(o *etcdOptions) { o.log = w }
}

// Etcd is a running etcd cluster embedded in this process.
//
// etcd registers its Prometheus metrics in the process-wide default
// registry, so every member of an embedded cluster reports the same,
// process-wide, counters: read them from one cluster at a time and diff
// readings taken before and after.
type Etcd struct {
	token   string
	dataDir string
	logs    *logSink
	opts    etcdOptions
	client  *clientv3.Client // for helpers such as Compact

	mu      sync.Mutex
	members []*embedMember
}

// embedMember is one etcd member: where it listens and, while it runs, its
// server.
type embedMember struct {
	name       string
	dir        string
	peerURL    url.URL
	clientURL  url.URL
	metricsURL url.URL
	id         uint64 // raft member ID, stable across restarts

	etcd *embed.Etcd // nil while stopped
}

// StartEtcd starts an embedded cluster of members members (1 or 3; any
// positive number works) for a test, with data in its temporary directory
// and etcd's default limits (notably the 1.5 MiB maximum request size), and
// waits until every member is ready. It fails tb if the cluster does not
// come up within EtcdStartTimeout. The cluster is stopped when the test
// ends; its log (errors only; set HARNESS_ETCD_LOG_LEVEL to debug, info,
// warn or error to stream it to stderr) is printed if the test failed.
func StartEtcd(tb testing.TB, members int, opts ...EtcdOption) *Etcd {
	tb.Helper()
	c, err := NewEtcd(tb.Context(), tb.TempDir(), members, opts...)
	if err != nil {
		tb.Fatalf("harness: %v", err)
	}
	// Cleanups run last-in first-out: the log is printed after the members
	// stop.
	tb.Cleanup(func() {
		if tb.Failed() {
			c.logs.dump(tb)
		}
	})
	tb.Cleanup(c.Close)
	return c
}

// NewEtcd starts an embedded cluster as StartEtcd does, outside a test, with
// its data under dir. Close stops it.
func NewEtcd(ctx context.Context, dir string, members int, opts ...EtcdOption) (*Etcd, error) {
	if members < 1 {
		return nil, fmt.Errorf("start etcd: %d members: need at least 1", members)
	}
	freeGRPCMetricNames()
	c := &Etcd{token: fmt.Sprintf("harness-%d-%d", os.Getpid(), time.Now().UnixNano()), dataDir: dir}
	for _, o := range opts {
		o(&c.opts)
	}
	c.logs = newLogSink(c.opts.log)
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if err = c.start(ctx, attempt, members); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("start %d-member etcd: %w", members, err)
	}
	if c.client, err = c.newClient(); err != nil {
		c.Close()
		return nil, fmt.Errorf("start etcd: client: %w", err)
	}
	return c, nil
}

// freeGRPCMetricNames unregisters, from the process-wide Prometheus
// registry, the gRPC server counters that go-grpc-prometheus (v1, linked in
// through Vitess) registers in its init but never feeds: etcd registers
// counters of the same names for its own gRPC server
// (grpc_server_handled_total{grpc_method="Range"}, ...) and, finding the
// names taken, would export none. A registry forgets a collector by the
// names it describes, so look-alikes of the right names do it.
var freeGRPCMetricNames = sync.OnceFunc(func() {
	for _, name := range []string{"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total"} {
		prometheus.Unregister(prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name}))
	}
})

// newClient returns an etcd client on every member.
func (c *Etcd) newClient() (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      c.logs.logger,
	}
	if c.opts.tls != nil {
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
func (c *Etcd) ClientTLS() (*tls.Config, error) {
	ca := c.opts.tls
	if ca == nil {
		return nil, nil
	}
	tc, err := transport.TLSInfo{CertFile: ca.ClientCert, KeyFile: ca.ClientKey, TrustedCAFile: ca.CAFile}.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client TLS: %w", err)
	}
	return tc, nil
}

// start makes one attempt at starting a fresh cluster on newly picked ports.
func (c *Etcd) start(ctx context.Context, attempt, n int) error {
	c.stopMembers()
	ports, err := freeport.Pick(3 * n)
	if err != nil {
		return err
	}
	ms := make([]*embedMember, n)
	for i := range ms {
		ms[i] = &embedMember{
			name:       fmt.Sprintf("m%d", i),
			dir:        filepath.Join(c.dataDir, fmt.Sprintf("a%d-m%d", attempt, i)),
			peerURL:    loopbackURL(ports[3*i]),
			clientURL:  c.clientURL(ports[3*i+1]),
			metricsURL: loopbackURL(ports[3*i+2]),
		}
	}
	c.mu.Lock()
	c.members = ms
	c.mu.Unlock()
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return c.startMembers(ctx, idx)
}

// startMembers starts the given members and waits until all are ready. On
// failure every member it started is stopped again.
func (c *Etcd) startMembers(ctx context.Context, idx []int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	initialCluster := c.initialClusterLocked()
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
		errs = append(errs, c.waitReadyLocked(ctx, started)...)
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
func (c *Etcd) waitReadyLocked(ctx context.Context, idx []int) []error {
	errc := make(chan error, len(idx))
	ctx, cancel := context.WithTimeout(ctx, EtcdStartTimeout)
	defer cancel()
	for _, i := range idx {
		m := c.members[i]
		e := m.etcd
		go func() {
			select {
			case <-e.Server.ReadyNotify():
				errc <- nil
			case err := <-e.Err():
				errc <- fmt.Errorf("member %d (%s) failed while starting: %w", i, m.name, err)
			case <-e.Server.StopNotify():
				errc <- fmt.Errorf("member %d (%s) stopped while starting", i, m.name)
			case <-ctx.Done():
				errc <- fmt.Errorf("member %d (%s) not ready after %v (no quorum?): %w", i, m.name, EtcdStartTimeout, ctx.Err())
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
func (c *Etcd) config(i int, m *embedMember, initialCluster string) *embed.Config {
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

func (c *Etcd) initialClusterLocked() string {
	peers := make([]string, len(c.members))
	for i, m := range c.members {
		peers[i] = m.name + "=" + m.peerURL.String()
	}
	return strings.Join(peers, ",")
}

// Size returns the number of members, running or not.
func (c *Etcd) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Endpoints returns every member's client URL (http://127.0.0.1:port), in
// member order, whether the member is running or not.
func (c *Etcd) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL.String()
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *Etcd) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].clientURL.String()
}

// ClientURLs returns Endpoints joined by commas, the form Vitess's
// --topo-global-server-address and etcd's --endpoints take.
func (c *Etcd) ClientURLs() string {
	return strings.Join(c.Endpoints(), ",")
}

// Client returns a new etcd client on every member, closed when tb ends.
func (c *Etcd) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := c.newClient()
	if err != nil {
		tb.Fatalf("harness: etcd client: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// Logger returns the logger etcd logs to, for clients a test creates itself.
func (c *Etcd) Logger() *zap.Logger { return c.logs.logger }

// Member returns member i's embedded server, or nil while it is stopped.
func (c *Etcd) Member(i int) *embed.Etcd {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].etcd
}

// Running reports whether member i is running.
func (c *Etcd) Running(i int) bool { return c.Member(i) != nil }

// Leader returns the index of the member the running members see as leader,
// or -1 if none does.
func (c *Etcd) Leader() int {
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
func (c *Etcd) StopMember(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(i)
}

func (c *Etcd) stopLocked(i int) {
	m := c.members[i]
	if m.etcd == nil {
		return
	}
	c.logs.closing.Store(true) // stopping logs errors that are no news
	m.etcd.Close()
	c.logs.closing.Store(false)
	m.etcd = nil
}

// RestartMember starts stopped member i again on its data directory and
// ports, and waits until it is ready. A member is ready once it reaches a
// quorum: after a majority was stopped, restart members together with
// RestartMembers.
func (c *Etcd) RestartMember(i int) error {
	return c.RestartMembers(i)
}

// RestartMembers restarts the given stopped members concurrently and waits
// until all are ready.
//
// Ports are picked outside the kernel's ephemeral range, so no client
// connection takes them while a member is stopped; a restart that still finds
// its port in use (a socket of the stopped member lingering) is retried for a
// few seconds.
func (c *Etcd) RestartMembers(idx ...int) error {
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		last = c.startMembers(context.Background(), idx)
		if last != nil && !errors.Is(last, syscall.EADDRINUSE) {
			return false, last
		}
		return last == nil, nil
	})
	if err != nil {
		if last != nil {
			err = last // what kept the members from starting, not the timeout
		}
		return fmt.Errorf("restart etcd members %v: %w", idx, err)
	}
	return nil
}

// stopMembers stops every member.
func (c *Etcd) stopMembers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.members {
		c.stopLocked(i)
	}
}

// Close stops every member and the helper client. StartEtcd's clusters
// are closed when the test ends.
func (c *Etcd) Close() {
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
	c.stopMembers()
}

// Compact compacts the cluster's history up to rev (physically: when it
// returns, no member serves revisions older than rev).
func (c *Etcd) Compact(ctx context.Context, rev int64) error {
	_, err := c.client.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		// Already compacted to rev or beyond (by a concurrent call).
		return nil
	}
	if err != nil {
		return fmt.Errorf("etcd: compact to %d: %w", rev, err)
	}
	return nil
}

// Revision returns the cluster's current revision.
func (c *Etcd) Revision(ctx context.Context) (int64, error) {
	resp, err := c.client.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd: revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// DeletePrefix removes every key under prefix.
func (c *Etcd) DeletePrefix(ctx context.Context, prefix string) error {
	if _, err := c.client.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd: delete %s*: %w", prefix, err)
	}
	return nil
}

// MetricsURL returns the URL of member i's Prometheus metrics
// (http://127.0.0.1:port/metrics). The values are process-wide: see Etcd.
func (c *Etcd) MetricsURL(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.members[i].metricsURL
	u.Path = "/metrics"
	return u.String()
}

// Metrics scrapes member i's metrics endpoint.
func (c *Etcd) Metrics(ctx context.Context, i int) (Metrics, error) {
	return Scrape(ctx, c.MetricsURL(i))
}

// clientURL is the client URL of a member on port: https with WithTLS.
func (c *Etcd) clientURL(port int) url.URL {
	u := loopbackURL(port)
	if c.opts.tls != nil {
		u.Scheme = "https"
	}
	return u
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(port))}
}
