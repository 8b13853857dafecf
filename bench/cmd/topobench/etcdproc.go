package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/topod-io/topod/bench/servers"
	"github.com/topod-io/topod/internal/freeport"
)

// etcdChildCommand is the hidden subcommand with which the driver runs etcd
// in a process of its own (the keyspaces phase): the driver re-executes its
// own binary (os.Executable; under go test, the test binary, whose TestMain
// dispatches it) with the same embed configuration as the embedded etcd, so
// that etcd's RSS and CPU can be read from /proc apart from the clients'.
const etcdChildCommand = "__topobench-etcd"

// isEtcdChild reports whether args (os.Args) ask for the etcd child.
func isEtcdChild(args []string) bool {
	return len(args) > 1 && args[1] == etcdChildCommand
}

// etcdChildMain runs etcd until its stdin is closed (the driver closes it,
// or dies: it is also killed with the driver, by Pdeathsig) or it gets
// SIGTERM or SIGINT. It prints "ready" on stdout once etcd serves. args are
// the arguments after the subcommand.
func etcdChildMain(args []string) int {
	fs := flag.NewFlagSet(etcdChildCommand, flag.ContinueOnError)
	dir := fs.String("dir", "", "etcd data directory")
	peer := fs.Int("peer-port", 0, "")
	client := fs.Int("client-port", 0, "")
	metrics := fs.Int("metrics-port", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *peer == 0 || *client == 0 || *metrics == 0 {
		fmt.Fprintln(os.Stderr, "topobench etcd: --dir and the three ports are required")
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	freeGRPCMetricNames() // this binary links Vitess too
	closing := &atomic.Bool{}
	cfg := etcdConfig(*dir, []int{*peer, *client, *metrics}, servers.EtcdLogger(os.Stderr, closing))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "topobench etcd: start:", err)
		return 3
	}
	defer func() {
		closing.Store(true)
		e.Close()
	}()
	if err := waitEtcdReady(context.Background(), e); err != nil {
		fmt.Fprintln(os.Stderr, "topobench etcd:", err)
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
	case <-sigs:
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "topobench etcd:", err)
		return 1
	}
	return 0
}

// etcdProc is the etcd child process.
type etcdProc struct {
	cmd     *exec.Cmd
	stdin   io.Closer
	log     *servers.TailBuffer
	exited  chan struct{}
	waitErr error
}

// startEtcdProcess starts etcd in a process of its own with its data under
// dir, and waits until it serves.
func startEtcdProcess(ctx context.Context, dir string) (*etcdServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start etcd process: %w", err)
	}
	for attempt := range 5 {
		var s *etcdServer
		s, err = startEtcdProcessOnce(ctx, exe, filepath.Join(dir, fmt.Sprintf("etcd%d", attempt)))
		if err == nil {
			return s, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start etcd process: %w", err)
}

func startEtcdProcessOnce(ctx context.Context, exe, dir string) (*etcdServer, error) {
	ports, err := freeport.Pick(3)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, etcdChildCommand, "--dir", dir,
		"--peer-port", fmt.Sprint(ports[0]), "--client-port", fmt.Sprint(ports[1]), "--metrics-port", fmt.Sprint(ports[2]))
	p := &etcdProc{cmd: cmd, log: &servers.TailBuffer{W: stderr}, exited: make(chan struct{})}
	cmd.Stderr = p.log
	// etcd dies with the driver, even if the driver is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	p.stdin = stdin
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
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	fail := func(err error) (*etcdServer, error) {
		p.stop()
		return nil, err
	}
	select {
	case ok := <-ready:
		if !ok {
			<-p.exited
			return fail(fmt.Errorf("etcd process exited while starting (%v): %s", p.waitErr, p.log.Tail()))
		}
	case <-time.After(30 * time.Second):
		return fail(fmt.Errorf("etcd process not ready after 30s: %s", p.log.Tail()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	closing := &atomic.Bool{}
	s, err := newEtcdServer(loopbackURL(ports[1]), loopbackURL(ports[2]), servers.EtcdLogger(stderr, closing), closing)
	if err != nil {
		return fail(err)
	}
	s.proc = p
	return s, nil
}

// stop closes etcd's stdin, which makes it exit, and waits for it (SIGKILL
// after 15s).
func (p *etcdProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
