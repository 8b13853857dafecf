// Package proc runs child processes for the demo, the end-to-end tests, the
// fault suite and the benchmarks: a program started with its output
// appended to a log file, as the caller or as another user (Identity), tied
// to the caller's life or detached from it; signalled, stopped with SIGTERM
// then SIGKILL, and waited on until it is ready (WaitReady with a check such
// as HTTPOK or GRPCHealthy) or has exited, with its log's tail in every
// error.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	// Name names the process in messages ("vtgate", "etcd m0").
	Name string
	// Binary is the program's path; Args its arguments.
	Binary string
	Args   []string
	// Log is the file that receives the process's stdout and stderr
	// (appended to).
	Log string
	// Dir is the working directory, also the process's HOME and TMPDIR
	// (it must be writable by User); the process then gets only the
	// caller's PATH and locale from its environment. With no Dir it runs
	// in the caller's directory with the caller's whole environment.
	Dir string
	// User runs the process; nil runs it as the caller.
	User *Identity
	// Detach starts the process in a session of its own that outlives the
	// caller (the demo). Otherwise the kernel kills it when the caller dies
	// (tests).
	Detach bool
	// Env is added to the process's environment ("KEY=value").
	Env []string
}

// Process is a started process.
type Process struct {
	Spec Spec
	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it exited; set before done is closed
}

// Start starts the process described by s.
func Start(s Spec) (*Process, error) {
	bin, err := filepath.Abs(s.Binary)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	if err := s.User.CheckAccess(bin, true); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	log, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log: %w", s.Name, err)
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(s.Args, " "))

	cmd := exec.Command(bin, s.Args...)
	cmd.Dir = s.Dir
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.Env = append(childEnv(s.Dir), s.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.User.credential()}
	if s.Detach {
		cmd.SysProcAttr.Setsid = true
	} else {
		cmd.SysProcAttr.Setpgid = true
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{Spec: s, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// childEnv is the environment of a child in dir: the caller's PATH and
// locale, and dir as HOME and TMPDIR (the caller's may not be the child
// user's); the caller's whole environment when dir is empty.
func childEnv(dir string) []string {
	if dir == "" {
		return os.Environ()
	}
	env := []string{"HOME=" + dir, "TMPDIR=" + dir}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "LANG", "LC_ALL", "TZ":
			env = append(env, kv)
		}
	}
	return env
}

// Run starts the process described by s and waits for it to exit: nil if
// it exited 0, else an error with its log's tail. ctx ending kills it.
func Run(ctx context.Context, s Spec) error {
	p, err := Start(s)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("%s: %w; last lines of %s:\n%s", s.Name, ctx.Err(), s.Log, LogTail(s.Log, 20))
	}
	if p.err != nil {
		return p.ExitError()
	}
	return nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and with what.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// ExitError says how the process ended (status 0 included), with its
// log's tail; nil while it runs.
func (p *Process) ExitError() error {
	if ok, _ := p.Exited(); !ok {
		return nil
	}
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.Spec.Name, p.err, p.Spec.Log, LogTail(p.Spec.Log, 20))
}

// Signal sends sig (SIGSTOP, SIGCONT, ...) to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s %v: %w", p.Spec.Name, sig, err)
	}
	return nil
}

// Kill kills the process with SIGKILL, as a crash would, and waits for it.
// Killing an exited process does nothing.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. A stopped (SIGSTOP) process is continued so that it sees the
// SIGTERM.
func (p *Process) Stop(grace time.Duration) {
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
	}
}

// LogTail returns the last n lines of the file at path.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty log)"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WritePidFile records the process's pid in path.
func (p *Process) WritePidFile(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(p.Pid())+"\n"), 0o644)
}

// StopPidFile stops the process whose pid path holds, if it still runs the
// program binary: SIGTERM, then SIGKILL after grace. It removes the pid
// file. A missing pid file or a process already gone is not an error; the
// returned bool says whether a process was stopped.
func StopPidFile(path, binary string, grace time.Duration) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer os.Remove(path)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false, fmt.Errorf("pid file %s: bad pid %q", path, strings.TrimSpace(string(b)))
	}
	if !Running(pid, binary) {
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, fmt.Errorf("stop pid %d: %w", pid, err)
	}
	// Not our child: nothing to wait on but /proc.
	deadline := time.Now().Add(grace)
	for Running(pid, binary) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(grace)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true, nil
}

// Running reports whether process pid is alive and runs binary (checked by
// /proc/PID/exe, so a recycled pid is not mistaken for it).
func Running(pid int, binary string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	want, err := filepath.Abs(binary)
	if err != nil {
		return false
	}
	if resolved, err := filepath.EvalSymlinks(want); err == nil {
		want = resolved
	}
	// A binary rebuilt since the process started shows as "path (deleted)".
	exe = strings.TrimSuffix(exe, " (deleted)")
	if exe != want {
		return false
	}
	// A zombie still has its exe link only until reaped; check its state.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}
