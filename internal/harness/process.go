package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 15 * time.Second

// pollInterval is how often readiness checks are retried.
const pollInterval = 50 * time.Millisecond

// Process is one child process: its output in a log file, its exit
// watched. It has one job: start, signal and reap a program.
type Process struct {
	Name string // in messages: "etcd m0", "topod1"
	Log  string // the file its stdout and stderr go to (appended)

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // how it exited; set before exited is closed
}

// StartProcess starts bin with args and env added to this process's
// environment, its output appended to logPath. The kernel kills it if this
// process dies.
func StartProcess(name, bin string, args, env []string, logPath string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log: %w", name, err)
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process exited (nil for status 0), once Exited is
// closed.
func (p *Process) Err() error {
	<-p.exited
	return p.err
}

// ExitError says how the process ended, with its log's tail; nil while it
// runs.
func (p *Process) ExitError() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); log %s ends:\n%s", p.Name, p.err, p.Log, p.LogTail())
	default:
		return nil
	}
}

// Signal sends sig (SIGSTOP, SIGCONT, ...) to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s %v: %w", p.Name, sig, err)
	}
	return nil
}

// Kill kills the process with SIGKILL, as a crash would, and waits for it.
// Killing an exited process does nothing.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and waits for the process to exit, killing it after
// stopGrace. A stopped (SIGSTOP) process is continued first so that it can
// see the SIGTERM.
func (p *Process) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		p.Kill()
	}
}

// LogTail returns the last 4 KiB of the process's log.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty log)"
	}
	return string(b)
}

// errAddrInUse says a start failed because a port was taken between
// picking it and binding it: the caller picks other ports and tries again.
var errAddrInUse = errors.New("address already in use")

// WaitReady polls check until it returns nil, the process exits or timeout
// passes. The error names what was waited for and ends with the log's tail;
// it wraps errAddrInUse if the log says a port was taken.
func (p *Process) WaitReady(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		if last = check(ctx); last == nil {
			return true, nil
		}
		select {
		case <-p.exited:
			return false, errors.New("exited")
		default:
			return false, nil
		}
	})
	if err == nil {
		return nil
	}
	if exit := p.ExitError(); exit != nil {
		if strings.Contains(p.LogTail(), errAddrInUse.Error()) {
			return fmt.Errorf("%w: %w", errAddrInUse, exit)
		}
		return fmt.Errorf("wait for %s: %w", what, exit)
	}
	return fmt.Errorf("wait for %s of %s: %w (last answer: %v); log %s ends:\n%s", what, p.Name, err, last, p.Log, p.LogTail())
}

// HTTPOK is a WaitReady check: a GET of url answers 200 OK.
func HTTPOK(url string) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
