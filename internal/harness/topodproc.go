package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/proc"
)

// TopodStartTimeout bounds how long a topod process takes to serve.
const TopodStartTimeout = 60 * time.Second

// TopodProcConfig says how to run one topod process.
type TopodProcConfig struct {
	Name   string // in messages and the log's name: "topod0"
	Binary string // BuildTopod's
	Dir    string // where its log goes
	// Args are its flags but --listen and --metrics-listen, which
	// StartTopodProc adds.
	Args []string
	// Addr is the address to serve on; empty picks a free loopback port.
	Addr string
	// Metrics serves Prometheus metrics on a port of its own (MetricsURL).
	Metrics bool
	// Health are the dial options of the readiness check (TLS
	// credentials); plaintext without.
	Health []grpc.DialOption
}

// TopodProc is a topod process, restartable on its address.
type TopodProc struct {
	cfg         TopodProcConfig
	Addr        string // gRPC, host:port
	MetricsAddr string // with cfg.Metrics

	mu   sync.Mutex
	proc *proc.Process // nil after Kill or Stop
}

// StartTopodProc starts topod and waits until its gRPC health check serves.
func StartTopodProc(ctx context.Context, cfg TopodProcConfig) (*TopodProc, error) {
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	var err error
	for range startAttempts {
		p := &TopodProc{cfg: cfg, Addr: cfg.Addr}
		ports, perr := freeport.Pick(2)
		if perr != nil {
			return nil, fmt.Errorf("start %s: %w", cfg.Name, perr)
		}
		if p.Addr == "" {
			p.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		}
		if cfg.Metrics {
			p.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		}
		if err = p.Restart(ctx); err == nil {
			return p, nil
		}
		if !errors.Is(err, errAddrInUse) || cfg.Addr != "" {
			break
		}
	}
	return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
}

// Restart starts the process again, on the same address and flags, after
// Kill or Stop, and waits until it serves.
func (p *TopodProc) Restart(ctx context.Context) error {
	args := append([]string{"--listen", p.Addr}, p.cfg.Args...)
	if p.MetricsAddr != "" {
		args = append(args, "--metrics-listen", p.MetricsAddr)
	}
	proc, err := startProcess(p.cfg.Name, p.cfg.Binary, args, nil, filepath.Join(p.cfg.Dir, p.cfg.Name+".log"))
	if err != nil {
		return err
	}
	if err := waitGRPCHealth(ctx, proc, p.Addr, p.cfg.Health); err != nil {
		proc.Kill()
		return err
	}
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()
	return nil
}

// waitGRPCHealth waits until the standard gRPC health service at addr
// reports SERVING.
func waitGRPCHealth(ctx context.Context, p *proc.Process, addr string, opts []grpc.DialOption) error {
	return waitReady(ctx, p, TopodStartTimeout, func(ctx context.Context) error { return p.WaitGRPCHealth(ctx, addr, opts...) })
}

// Process is the running process, nil after Kill or Stop.
func (p *TopodProc) Process() *proc.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

// take returns the running process and forgets it.
func (p *TopodProc) take() *proc.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc := p.proc
	p.proc = nil
	return proc
}

// Kill kills the process with SIGKILL (a crash) and waits for it.
func (p *TopodProc) Kill() {
	if proc := p.take(); proc != nil {
		proc.Kill()
	}
}

// Stop stops the process as an orchestrator does, with SIGTERM (SIGKILL
// after a grace period), and waits for it.
func (p *TopodProc) Stop() {
	if proc := p.take(); proc != nil {
		proc.Stop(stopGrace)
	}
}

// Signal sends sig (SIGSTOP, SIGCONT) to the running process.
func (p *TopodProc) Signal(sig syscall.Signal) error {
	proc := p.Process()
	if proc == nil {
		return fmt.Errorf("signal %s: not running", p.cfg.Name)
	}
	return proc.Signal(sig)
}

// MetricsURL is the process's Prometheus endpoint ("" without
// cfg.Metrics).
func (p *TopodProc) MetricsURL() string {
	if p.MetricsAddr == "" {
		return ""
	}
	return "http://" + p.MetricsAddr + "/metrics"
}

// Stats reads the process's CPU time and memory; an error if it is not
// running or has exited on its own.
func (p *TopodProc) Stats() (ProcStats, error) {
	proc := p.Process()
	if proc == nil {
		return ProcStats{}, fmt.Errorf("%s: not running", p.cfg.Name)
	}
	if err := proc.ExitError(); err != nil {
		return ProcStats{}, err
	}
	s, err := ReadProcStats(proc.Pid())
	if err != nil {
		return ProcStats{}, fmt.Errorf("%s: %w", p.cfg.Name, err)
	}
	return s, nil
}

// TopodProcs is a set of topod replicas, each a process serving one etcd
// cluster, sharing one blob directory (or, from ExternalTopod, replicas
// this process did not start).
type TopodProcs struct {
	Procs []*TopodProc
	// external replicas: addresses and metrics URLs given by the user.
	addrs      []string
	metricsURL []string
}

// StartTopodProcs starts replicas topod processes of bin on the etcd
// cluster at endpoints (host:port), with their data and logs under dir,
// each serving Prometheus metrics on a port of its own, and waits until
// each serves. extra flags are passed to every replica.
func StartTopodProcs(ctx context.Context, bin string, endpoints []string, dir string, replicas int, extra []string) (*TopodProcs, error) {
	c := &TopodProcs{}
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o750); err != nil {
		return nil, fmt.Errorf("start topod: blob dir: %w", err)
	}
	for i := range replicas {
		rdir := filepath.Join(dir, fmt.Sprintf("replica%d", i))
		p, err := StartTopodProc(ctx, TopodProcConfig{
			Name:   fmt.Sprintf("topod%d", i),
			Binary: bin,
			Dir:    rdir,
			Args: append([]string{
				"--backend", "etcd://" + strings.Join(endpoints, ","),
				"--blobs", "file://" + blobs,
				"--data-dir", rdir,
				"--log-level", "warn",
			}, extra...),
			Metrics: true,
		})
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Procs = append(c.Procs, p)
	}
	return c, nil
}

// ExternalTopod returns a handle on topod replicas this process did not
// start: addrs are their gRPC addresses, metricsURLs (optional) their
// Prometheus endpoints.
func ExternalTopod(addrs, metricsURLs []string) *TopodProcs {
	return &TopodProcs{addrs: addrs, metricsURL: metricsURLs}
}

// Addrs returns the replicas' addresses joined by commas, as the plugin's
// server address.
func (c *TopodProcs) Addrs() string {
	if len(c.Procs) == 0 {
		return strings.Join(c.addrs, ",")
	}
	addrs := make([]string, len(c.Procs))
	for i, p := range c.Procs {
		addrs[i] = p.Addr
	}
	return strings.Join(addrs, ",")
}

// Pick returns the address of a replica chosen at random.
func (c *TopodProcs) Pick() string {
	if len(c.Procs) == 0 {
		return c.addrs[rand.IntN(len(c.addrs))]
	}
	return c.Procs[rand.IntN(len(c.Procs))].Addr
}

// MetricsURLs returns the replicas' Prometheus endpoints.
func (c *TopodProcs) MetricsURLs() []string {
	if len(c.Procs) == 0 {
		return c.metricsURL
	}
	out := make([]string, len(c.Procs))
	for i, p := range c.Procs {
		out[i] = p.MetricsURL()
	}
	return out
}

// Replicas returns the number of replicas.
func (c *TopodProcs) Replicas() int {
	if len(c.Procs) == 0 {
		return len(c.addrs)
	}
	return len(c.Procs)
}

// Stats returns the CPU time and memory of the replicas, summed (zero for
// external replicas).
func (c *TopodProcs) Stats() (ProcStats, error) {
	var sum ProcStats
	for _, p := range c.Procs {
		s, err := p.Stats()
		if err != nil {
			return ProcStats{}, err
		}
		sum = sum.Add(s)
	}
	return sum, nil
}

// Stop stops every replica this process started.
func (c *TopodProcs) Stop() {
	for _, p := range c.Procs {
		p.Stop()
	}
}
