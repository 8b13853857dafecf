package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// topodBuildFlags are extra flags of the go build of topod (the smoke test
// builds it with -race when it runs with -race).
var topodBuildFlags []string

// buildTopod builds the topod binary from the module the driver runs in
// into dir, and returns its path.
func buildTopod(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build topod: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("build topod: not inside the topod module; run from it or pass --topod-bin")
	}
	bin := filepath.Join(dir, "topod")
	args := append(append([]string{"build"}, topodBuildFlags...), "-o", bin, topodPackage)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build topod: go build %s: %w\n%s", topodPackage, err, stderr.String())
	}
	return bin, nil
}

// topodCluster is a set of topod replicas, each a separate process serving
// one etcd, sharing one blob directory.
type topodCluster struct {
	procs []*topodProc
}

// topodProc is one running topod process.
type topodProc struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	exited  chan struct{}
	waitErr error
}

// startTopod starts replicas topod processes of bin on the etcd at
// endpoint, with their data and logs under dir, and waits until each
// answers its gRPC health check. extra flags are passed to every replica.
func startTopod(ctx context.Context, bin, endpoint, dir string, replicas int, extra []string) (*topodCluster, error) {
	c := &topodCluster{}
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o750); err != nil {
		return nil, fmt.Errorf("topod blob dir: %w", err)
	}
	for i := range replicas {
		p, err := startTopodProc(ctx, bin, endpoint, blobs, filepath.Join(dir, fmt.Sprintf("replica%d", i)), extra)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("topod replica %d: %w", i, err)
		}
		c.procs = append(c.procs, p)
	}
	return c, nil
}

func startTopodProc(ctx context.Context, bin, endpoint, blobs, dir string, extra []string) (*topodProc, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := range 3 {
		ports, err := freeport.Pick(1)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		logPath := filepath.Join(dir, fmt.Sprintf("topod-%d.log", attempt))
		logFile, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		args := append([]string{
			"--listen", addr,
			"--backend", "etcd://" + endpoint,
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
		p := &topodProc{cmd: cmd, addr: addr, logPath: logPath, exited: make(chan struct{})}
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
func (p *topodProc) waitReady(ctx context.Context, timeout time.Duration) error {
	cc, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
			return fmt.Errorf("topod exited while starting (%v): %s", p.waitErr, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("topod at %s not serving after %v: %s", p.addr, timeout, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the end of the process's log.
func (p *topodProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
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
func (p *topodProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Addrs returns the replicas' addresses joined by commas, as the plugin's
// server address.
func (c *topodCluster) Addrs() string {
	addrs := make([]string, len(c.procs))
	for i, p := range c.procs {
		addrs[i] = p.addr
	}
	return strings.Join(addrs, ",")
}

// pick returns the address of a replica chosen at random.
func (c *topodCluster) pick() string {
	return c.procs[rand.IntN(len(c.procs))].addr
}

// Stats returns the CPU time and memory of the replicas, summed.
func (c *topodCluster) Stats() (procStats, error) {
	var sum procStats
	for _, p := range c.procs {
		select {
		case <-p.exited:
			return procStats{}, fmt.Errorf("topod at %s exited (%v): %s", p.addr, p.waitErr, p.logTail())
		default:
		}
		s, err := readProcStats(p.cmd.Process.Pid)
		if err != nil {
			return procStats{}, err
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
		sum.PeakRSS += s.PeakRSS
	}
	return sum, nil
}

// Stop stops every replica.
func (c *topodCluster) Stop() {
	for _, p := range c.procs {
		p.stop()
	}
}

// procStats is what /proc tells of a process.
type procStats struct {
	CPU     time.Duration // user + system time
	RSS     int64         // resident set, bytes (VmRSS)
	PeakRSS int64         // peak resident set, bytes (VmHWM)
}

// clockTick is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// every Linux platform Go supports).
const clockTick = 10 * time.Millisecond

// readProcStats reads /proc/PID/stat and /proc/PID/status. Linux only.
func readProcStats(pid int) (procStats, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStats{}, fmt.Errorf("process stats: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procStats{}, fmt.Errorf("process stats: malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return procStats{}, fmt.Errorf("process stats: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStats{}, fmt.Errorf("process stats: /proc/%d/stat: %w", pid, err)
	}
	s := procStats{CPU: time.Duration(utime+stime) * clockTick}

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStats{}, fmt.Errorf("process stats: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &s.RSS
		case "VmHWM":
			dst = &s.PeakRSS
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return procStats{}, fmt.Errorf("process stats: /proc/%d/status %s: %w", pid, name, err)
		}
		*dst = kb << 10
	}
	return s, nil
}
