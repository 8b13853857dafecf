package servers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/topod-io/topod/internal/freeport"
)

// topodPackage is the import path of the topod server command.
const topodPackage = "github.com/topod-io/topod/cmd/topod"

// BuildTopod builds the topod binary of the module the process runs in
// into dir, with extra go build flags (such as -race), and returns its
// path.
func BuildTopod(ctx context.Context, dir string, flags ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build topod: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("build topod: not inside the topod module; run from it or pass --topod-bin")
	}
	bin := filepath.Join(dir, "topod")
	args := append(append([]string{"build"}, flags...), "-o", bin, topodPackage)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build topod: go build %s: %w\n%s", topodPackage, err, stderr.String())
	}
	return bin, nil
}

// Topod is a set of topod replicas, each a separate process serving one
// etcd cluster, sharing one blob directory (or, with ExternalTopod,
// replicas the benchmark did not start).
type Topod struct {
	Procs []*TopodProc
	// external replicas: addresses and metrics URLs given by the user.
	addrs      []string
	metricsURL []string
}

// TopodProc is one running topod process.
type TopodProc struct {
	Cmd         *exec.Cmd
	Addr        string
	MetricsAddr string
	LogPath     string
	exited      chan struct{}
	waitErr     error
}

// StartTopod starts replicas topod processes of bin on the etcd cluster at
// endpoints, with their data and logs under dir, each serving Prometheus
// metrics on a port of its own, and waits until each answers its gRPC
// health check. extra flags are passed to every replica.
func StartTopod(ctx context.Context, bin string, endpoints []string, dir string, replicas int, extra []string) (*Topod, error) {
	c := &Topod{}
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o750); err != nil {
		return nil, fmt.Errorf("topod blob dir: %w", err)
	}
	for i := range replicas {
		p, err := startTopodProc(ctx, bin, strings.Join(endpoints, ","), blobs, filepath.Join(dir, fmt.Sprintf("replica%d", i)), extra)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("topod replica %d: %w", i, err)
		}
		c.Procs = append(c.Procs, p)
	}
	return c, nil
}

// ExternalTopod returns a handle on topod replicas the benchmark did not
// start: addrs are their gRPC addresses, metricsURLs (optional) their
// Prometheus endpoints.
func ExternalTopod(addrs, metricsURLs []string) *Topod {
	return &Topod{addrs: addrs, metricsURL: metricsURLs}
}

func startTopodProc(ctx context.Context, bin, endpoints, blobs, dir string, extra []string) (*TopodProc, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := range 3 {
		ports, err := freeport.Pick(2)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		maddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
		logPath := filepath.Join(dir, fmt.Sprintf("topod-%d.log", attempt))
		logFile, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		args := append([]string{
			"--listen", addr,
			"--metrics-listen", maddr,
			"--backend", "etcd://" + endpoints,
			"--blobs", "file://" + blobs,
			"--data-dir", dir,
			"--log-level", "warn",
		}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout = logFile
		cmd.Stderr = logFile
		// topod dies with the driver, even if the driver is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		logFile.Close() // the child has its own descriptor
		p := &TopodProc{Cmd: cmd, Addr: addr, MetricsAddr: maddr, LogPath: logPath, exited: make(chan struct{})}
		go func() {
			p.waitErr = cmd.Wait()
			close(p.exited)
		}()
		if lastErr = p.waitReady(ctx, 30*time.Second); lastErr == nil {
			return p, nil
		}
		p.stop()
		if !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// waitReady waits until the process answers the gRPC health check.
func (p *TopodProc) waitReady(ctx context.Context, timeout time.Duration) error {
	cc, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	health := healthpb.NewHealthClient(cc)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("topod exited while starting (%v): %s", p.waitErr, p.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("topod at %s not serving after %v: %s", p.Addr, timeout, p.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LogTail returns the end of the process's log.
func (p *TopodProc) LogTail() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty log)"
	}
	return string(b)
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after 15s).
func (p *TopodProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Addrs returns the replicas' addresses joined by commas, as the plugin's
// server address.
func (c *Topod) Addrs() string {
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
func (c *Topod) Pick() string {
	if len(c.Procs) == 0 {
		return c.addrs[rand.IntN(len(c.addrs))]
	}
	return c.Procs[rand.IntN(len(c.Procs))].Addr
}

// MetricsURLs returns the replicas' Prometheus endpoints.
func (c *Topod) MetricsURLs() []string {
	if len(c.Procs) == 0 {
		return c.metricsURL
	}
	out := make([]string, len(c.Procs))
	for i, p := range c.Procs {
		out[i] = "http://" + p.MetricsAddr + "/metrics"
	}
	return out
}

// Replicas returns the number of replicas.
func (c *Topod) Replicas() int {
	if len(c.Procs) == 0 {
		return len(c.addrs)
	}
	return len(c.Procs)
}

// Stats returns the CPU time and memory of the replicas, summed (zero for
// external replicas).
func (c *Topod) Stats() (ProcStats, error) {
	var sum ProcStats
	for _, p := range c.Procs {
		select {
		case <-p.exited:
			return ProcStats{}, fmt.Errorf("topod at %s exited (%v): %s", p.Addr, p.waitErr, p.LogTail())
		default:
		}
		s, err := ReadProcStats(p.Cmd.Process.Pid)
		if err != nil {
			return ProcStats{}, err
		}
		sum = sum.Add(s)
	}
	return sum, nil
}

// Stop stops every replica the benchmark started.
func (c *Topod) Stop() {
	for _, p := range c.Procs {
		p.stop()
	}
}
