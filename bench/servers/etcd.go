// Package servers runs the benchmarks' servers as processes of their own, so
// that their CPU and memory are theirs alone: etcd members (the benchmark's
// own binary re-executed with a hidden subcommand that embeds etcd, one
// process a member, 1 or 3 members a cluster, loopback ports) and topod
// replicas (a built topod binary). It also reads what the benchmarks report
// of them: /proc (CPU time, RSS) and their Prometheus endpoints.
//
// A binary that starts etcd members must call MaybeRunEtcdChild first thing
// in main (and in TestMain for tests): in the child it runs etcd and exits.
package servers

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/topod-io/topod/internal/freeport"
)

// EtcdChildCommand is the hidden subcommand that runs one etcd member.
const EtcdChildCommand = "__bench-etcd-member"

// MaybeRunEtcdChild runs an etcd member and exits if os.Args ask for one
// (EtcdChildCommand); otherwise it returns at once.
func MaybeRunEtcdChild() {
	if len(os.Args) > 1 && os.Args[1] == EtcdChildCommand {
		os.Exit(etcdChildMain(os.Args[2:]))
	}
}

// FreeGRPCMetricNames unregisters, from the process-wide Prometheus
// registry, the gRPC server counters that go-grpc-prometheus (v1, linked in
// through Vitess) registers in its init but never feeds: etcd registers
// counters of the same names for its own gRPC server
// (grpc_server_handled_total{grpc_method="Range"}, ...) and, finding the
// names taken, would export none. A registry forgets a collector by the
// names it describes, so look-alikes of the right names do it.
var FreeGRPCMetricNames = sync.OnceFunc(func() {
	for _, name := range []string{"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total"} {
		prometheus.Unregister(prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name}))
	}
})

// EtcdConfig is the configuration of one member: loopback ports (peer,
// client, metrics), etcd's default limits (notably the 1.5 MiB request
// limit), errors only in its log.
func EtcdConfig(name, dir string, ports [3]int, initialCluster, token string, lg *zap.Logger) *embed.Config {
	peer, client, metrics := loopbackURL(ports[0]), loopbackURL(ports[1]), loopbackURL(ports[2])
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenMetricsUrls = []url.URL{metrics}
	if initialCluster == "" {
		initialCluster = name + "=" + peer.String()
	}
	cfg.InitialCluster = initialCluster
	cfg.InitialClusterToken = token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored on restart: the WAL is there
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	return cfg
}

// EtcdLogger logs etcd's errors to w, until closing is set.
func EtcdLogger(w io.Writer, closing *atomic.Bool) *zap.Logger {
	return zap.New(quietOnClose{zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.Lock(zapcore.AddSync(w)), zapcore.ErrorLevel), closing})
}

// quietOnClose drops etcd's log once it is being closed: stopping logs
// errors ("mux: server closed", "use of closed network connection") that
// are no news.
type quietOnClose struct {
	zapcore.Core
	closing *atomic.Bool
}

func (q quietOnClose) With(fields []zapcore.Field) zapcore.Core {
	return quietOnClose{q.Core.With(fields), q.closing}
}

func (q quietOnClose) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if q.Enabled(ent.Level) && !q.closing.Load() {
		return ce.AddCore(ent, q)
	}
	return ce
}

// etcdChildMain runs one member until its stdin is closed (the parent
// closes it, or dies: the child is also killed with it, by Pdeathsig) or it
// gets SIGTERM or SIGINT. It prints "ready" on stdout once etcd serves
// (for a member of a new cluster: once the cluster has a leader).
func etcdChildMain(args []string) int {
	fs := flag.NewFlagSet(EtcdChildCommand, flag.ContinueOnError)
	name := fs.String("name", "member0", "member name")
	dir := fs.String("dir", "", "data directory")
	peer := fs.Int("peer-port", 0, "")
	client := fs.Int("client-port", 0, "")
	metrics := fs.Int("metrics-port", 0, "")
	cluster := fs.String("initial-cluster", "", "name=peerURL,...")
	token := fs.String("token", "bench", "initial cluster token")
	noFsync := fs.Bool("unsafe-no-fsync", false, "etcd's --unsafe-no-fsync")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *peer == 0 || *client == 0 || *metrics == 0 {
		fmt.Fprintln(os.Stderr, "etcd member: --dir and the three ports are required")
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	FreeGRPCMetricNames() // the binary links Vitess too
	closing := &atomic.Bool{}
	cfg := EtcdConfig(*name, *dir, [3]int{*peer, *client, *metrics}, *cluster, *token, EtcdLogger(os.Stderr, closing))
	cfg.UnsafeNoFsync = *noFsync
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd member: start:", err)
		return 3
	}
	defer func() {
		closing.Store(true)
		e.Close()
	}()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcd member: failed while starting:", err)
		return 3
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "etcd member: not ready after 60s")
		return 3
	case <-sigs:
		return 0
	}
	fmt.Println("ready")
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-sigs:
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcd member:", err)
		return 1
	}
	return 0
}

// Etcd is an etcd cluster whose members run as child processes (or, with
// ExternalEtcd, a cluster the benchmark did not start).
type Etcd struct {
	Name    string
	members []*etcdMember
	cli     *clientv3.Client
	// external clusters: endpoints and metrics URLs given by the user.
	endpoints  []string
	metricsURL []string
}

type etcdMember struct {
	name    string
	ports   [3]int
	cmd     *exec.Cmd
	stdin   io.Closer
	log     *TailBuffer
	exited  chan struct{}
	waitErr error
	readyCh chan bool
}

// StartEtcd starts a cluster of n members (child processes of this
// binary, which must call MaybeRunEtcdChild) with their data under dir and
// waits until every member serves. log receives the members' error logs.
//
// noFsync runs the members without fsync (etcd's --unsafe-no-fsync): for
// tests of a benchmark's pipeline, never for its figures.
func StartEtcd(ctx context.Context, name, dir string, n int, log io.Writer, noFsync bool) (*Etcd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start etcd %s: %w", name, err)
	}
	for attempt := range 5 {
		var c *Etcd
		c, err = startEtcdOnce(ctx, exe, name, filepath.Join(dir, fmt.Sprintf("%s-%d", name, attempt)), n, log, noFsync)
		if err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start etcd %s: %w", name, err)
}

func startEtcdOnce(ctx context.Context, exe, name, dir string, n int, log io.Writer, noFsync bool) (*Etcd, error) {
	ports, err := freeport.Pick(3 * n)
	if err != nil {
		return nil, err
	}
	c := &Etcd{Name: name}
	var peers []string
	for i := range n {
		m := &etcdMember{name: fmt.Sprintf("%s-m%d", name, i), ports: [3]int{ports[3*i], ports[3*i+1], ports[3*i+2]}}
		c.members = append(c.members, m)
		u := loopbackURL(m.ports[0])
		peers = append(peers, m.name+"="+u.String())
	}
	cluster := strings.Join(peers, ",")
	token := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	// Members of a new cluster are ready only once they have a leader:
	// start them all, then wait for each.
	for _, m := range c.members {
		if err := m.start(exe, filepath.Join(dir, m.name), cluster, token, log, noFsync); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := m.waitReady(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.cli, err = clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}

// ExternalEtcd returns a handle on a cluster the benchmark did not start:
// endpoints are host:port client addresses; metricsURLs (one per member,
// default http://<endpoint>/metrics, which etcd serves on its client port)
// are scraped. Stats of its processes are not available.
func ExternalEtcd(name string, endpoints, metricsURLs []string) (*Etcd, error) {
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
	return &Etcd{Name: name, cli: cli, endpoints: endpoints, metricsURL: metricsURLs}, nil
}

// External reports whether the benchmark did not start the cluster.
func (c *Etcd) External() bool { return len(c.members) == 0 }

func (m *etcdMember) start(exe, dir, cluster, token string, log io.Writer, noFsync bool) error {
	cmd := exec.Command(exe, EtcdChildCommand, "--name", m.name, "--dir", dir,
		"--peer-port", fmt.Sprint(m.ports[0]), "--client-port", fmt.Sprint(m.ports[1]), "--metrics-port", fmt.Sprint(m.ports[2]),
		"--initial-cluster", cluster, "--token", token, fmt.Sprintf("--unsafe-no-fsync=%v", noFsync))
	m.cmd = cmd
	m.log = &TailBuffer{W: log}
	m.exited = make(chan struct{})
	cmd.Stderr = m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", exe, err)
	}
	m.stdin = stdin
	ready := make(chan bool, 1)
	read := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
		_, _ = io.Copy(io.Discard, stdout)
		close(read)
	}()
	go func() {
		<-read // Wait closes stdout: not before the reads are done
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	m.readyCh = ready
	return nil
}

func (m *etcdMember) waitReady(ctx context.Context) error {
	select {
	case ok := <-m.readyCh:
		if !ok {
			<-m.exited
			return fmt.Errorf("etcd member %s exited while starting (%v): %s", m.name, m.waitErr, m.log.Tail())
		}
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd member %s not ready after 60s: %s", m.name, m.log.Tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop closes the member's stdin, which makes it exit, and waits for it
// (SIGKILL after 15s).
func (m *etcdMember) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	m.stdin.Close()
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// Close stops every member (an external cluster is left running).
func (c *Etcd) Close() {
	if c.cli != nil {
		c.cli.Close()
	}
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.stop()
		}()
	}
	wg.Wait()
}

// Endpoints returns the members' client addresses (host:port).
func (c *Etcd) Endpoints() []string {
	if c.External() {
		return c.endpoints
	}
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = net.JoinHostPort("127.0.0.1", fmt.Sprint(m.ports[1]))
	}
	return out
}

// MetricsURLs returns each member's Prometheus endpoint.
func (c *Etcd) MetricsURLs() []string {
	if c.External() {
		return c.metricsURL
	}
	out := make([]string, len(c.members))
	for i, m := range c.members {
		u := loopbackURL(m.ports[2])
		u.Path = "/metrics"
		out[i] = u.String()
	}
	return out
}

// Client is the benchmark's own client of the cluster, for housekeeping.
func (c *Etcd) Client() *clientv3.Client { return c.cli }

// PIDs returns the members' process ids (none for an external cluster).
func (c *Etcd) PIDs() []int {
	var out []int
	for _, m := range c.members {
		if m.cmd != nil && m.cmd.Process != nil {
			out = append(out, m.cmd.Process.Pid)
		}
	}
	return out
}

// Stats returns the members' CPU time and memory, summed.
func (c *Etcd) Stats() (ProcStats, error) {
	var sum ProcStats
	for _, m := range c.members {
		select {
		case <-m.exited:
			return ProcStats{}, fmt.Errorf("etcd member %s exited (%v): %s", m.name, m.waitErr, m.log.Tail())
		default:
		}
		s, err := ReadProcStats(m.cmd.Process.Pid)
		if err != nil {
			return ProcStats{}, err
		}
		sum = sum.Add(s)
	}
	return sum, nil
}

// Leader returns the index of the member that leads (among Endpoints), or
// an error.
func (c *Etcd) Leader(ctx context.Context) (int, uint64, error) {
	for i, ep := range c.Endpoints() {
		st, err := c.cli.Status(ctx, ep)
		if err != nil {
			continue
		}
		if st.Header.MemberId == st.Leader {
			return i, st.Leader, nil
		}
	}
	return -1, 0, errors.New("etcd: no member reports itself leader")
}

// KillLeader kills the leader's process with SIGKILL (no goodbye to its
// peers or its clients, as a crashed machine) and returns its index among
// Endpoints. The member stays down.
func (c *Etcd) KillLeader(ctx context.Context) (int, error) {
	if len(c.members) < 3 {
		return -1, errors.New("etcd: kill leader: the cluster keeps a quorum only with three members or more")
	}
	li, _, err := c.Leader(ctx)
	if err != nil {
		return -1, err
	}
	m := c.members[li]
	if err := m.cmd.Process.Kill(); err != nil {
		return -1, fmt.Errorf("etcd: kill leader %s: %w", m.name, err)
	}
	<-m.exited
	return li, nil
}

// MoveLeader transfers leadership from the current leader to the next
// member, as etcdctl move-leader does, and returns the new leader's index.
func (c *Etcd) MoveLeader(ctx context.Context) (int, error) {
	eps := c.Endpoints()
	if len(eps) < 2 {
		return -1, errors.New("etcd: move leader: a one-member cluster has no other member")
	}
	li, _, err := c.Leader(ctx)
	if err != nil {
		return -1, err
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

// Compact compacts the cluster's history up to its current revision, and
// returns that revision.
func (c *Etcd) Compact(ctx context.Context) (int64, error) {
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
func (c *Etcd) DeletePrefix(ctx context.Context, prefix string) error {
	if _, err := c.cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd: delete %s*: %w", prefix, err)
	}
	return nil
}

// TailBuffer passes what is written to W (if set) and keeps the last 4 KiB.
type TailBuffer struct {
	W  io.Writer
	mu sync.Mutex
	b  []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	if t.W == nil {
		return len(p), nil
	}
	return t.W.Write(p)
}

// Tail returns the last bytes written, trimmed.
func (t *TailBuffer) Tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := strings.TrimSpace(string(t.b)); s != "" {
		return s
	}
	return "(empty log)"
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(port))}
}
