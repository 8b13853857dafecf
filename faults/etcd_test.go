package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdChildCommand is the argument with which the test binary runs one etcd
// member in a process of its own, so that the suite can SIGKILL and SIGSTOP
// it as a crash or a stall would.
const etcdChildCommand = "__faults-etcd-member"

// memberConfig is what the child needs to start a member, passed as JSON.
type memberConfig struct {
	Name, Dir, Token       string
	ListenPeer, AdvertPeer string // real peer listener, and the proxy in front of it
	Client                 string
	InitialCluster         string
}

// etcdChildMain runs one member until it is killed or its stdin closes; it
// prints "ready" once the member serves.
func etcdChildMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "faults etcd: want one JSON argument")
		return 2
	}
	var mc memberConfig
	if err := json.Unmarshal([]byte(args[0]), &mc); err != nil {
		fmt.Fprintln(os.Stderr, "faults etcd:", err)
		return 2
	}
	u := func(s string) []url.URL { v, _ := url.Parse(s); return []url.URL{*v} }
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = mc.Name, mc.Dir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = u(mc.ListenPeer), u(mc.AdvertPeer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = u(mc.Client), u(mc.Client)
	cfg.InitialCluster, cfg.InitialClusterToken = mc.InitialCluster, mc.Token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored on restart: the WAL is there
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults etcd: start:", err)
		return 3
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "faults etcd:", err)
		return 3
	}
	fmt.Println("ready")
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "faults etcd:", err)
		return 1
	}
	return 0
}

// etcdMember is one member: its process (nil while down) and the proxy in
// front of its peer listener.
type etcdMember struct {
	cfg       memberConfig
	peerProxy proxy.Server
	cmd       *exec.Cmd
	exited    chan struct{}
}

// etcdCluster is a three-member etcd cluster, each member a process.
type etcdCluster struct {
	t       testing.TB
	members []*etcdMember
	mu      sync.Mutex
}

// startEtcd starts a cluster of n members under dir.
func startEtcd(t testing.TB, dir string, n int) *etcdCluster {
	t.Helper()
	ports := pickPorts(t, 3*n)
	c := &etcdCluster{t: t}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		advert := fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1])
		initial = append(initial, name+"="+advert)
		c.members = append(c.members, &etcdMember{cfg: memberConfig{
			Name: name, Dir: fmt.Sprintf("%s/%s", dir, name), Token: fmt.Sprintf("faults-%d", time.Now().UnixNano()),
			ListenPeer: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i]), AdvertPeer: advert,
			Client: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
		}})
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		m.cfg.Token = c.members[0].cfg.Token
		from, _ := url.Parse(m.cfg.AdvertPeer)
		to, _ := url.Parse(m.cfg.ListenPeer)
		m.peerProxy = proxy.NewServer(proxy.ServerConfig{Logger: zap.NewNop(), From: *from, To: *to})
		select {
		case <-m.peerProxy.Ready():
		case err := <-m.peerProxy.Error():
			t.Fatalf("etcd peer proxy: %v", err)
		}
		t.Cleanup(func() { m.peerProxy.Close() })
	}
	// The members wait for each other: start them together.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range c.members {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.Kill(i)
		}
	})
	return c
}

// start starts member i's process and waits until it serves.
func (c *etcdCluster) start(i int) error {
	m := c.members[i]
	arg, _ := json.Marshal(m.cfg)
	cmd := exec.Command(os.Args[0], etcdChildCommand, string(arg))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &lockedWriter{w: &stderr}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.cfg.Name, err)
	}
	_ = stdin // kept open: closing it stops the member
	exited := make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-exited
			return fmt.Errorf("etcd %s did not start: %s", m.cfg.Name, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("etcd %s not ready after 60s: %s", m.cfg.Name, stderr.String())
	}
	c.mu.Lock()
	m.cmd, m.exited = cmd, exited
	c.mu.Unlock()
	return nil
}

// Kill kills member i with SIGKILL (a crash) and waits for it to exit.
func (c *etcdCluster) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart starts a killed member i again on its data.
func (c *etcdCluster) Restart(i int) {
	if err := c.start(i); err != nil {
		c.t.Errorf("restart etcd: %v", err)
	}
}

// Endpoints are the members' client addresses, host:port.
func (c *etcdCluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, strings.TrimPrefix(m.cfg.Client, "http://"))
	}
	return eps
}

// client returns a client of every member.
func (c *etcdCluster) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Leader returns the index of the member that is leader, or -1.
func (c *etcdCluster) Leader(ctx context.Context) int {
	cli, err := c.client()
	if err != nil {
		return -1
	}
	defer cli.Close()
	for i, ep := range c.Endpoints() {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}

// Compact compacts the cluster's history up to its current revision.
func (c *etcdCluster) Compact(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		return err
	}
	_, err = cli.Compact(ctx, resp.Header.Revision)
	if err != nil && strings.Contains(err.Error(), "required revision has been compacted") {
		return nil
	}
	return err
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
