package proc_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/proc"
)

func sh(t *testing.T, script string) proc.Spec {
	t.Helper()
	bin, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	return proc.Spec{Name: "sh", Binary: bin, Args: []string{"-c", script}, Log: filepath.Join(t.TempDir(), "sh.log")}
}

// TestWaitReady: a wait ends when the check passes, with ErrExited and the
// log's tail when the process exits first, and with the context's error
// when it ends first.
func TestWaitReady(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		ready   bool // what check answers
		timeout time.Duration
		wantErr error  // nil: ready
		wantLog string // in the error
	}{
		{"ready", "sleep 60", true, time.Minute, nil, ""},
		{"exits first", "echo broken config; exit 3", false, time.Minute, proc.ErrExited, "broken config"},
		{"never ready", "sleep 60", false, 200 * time.Millisecond, context.DeadlineExceeded, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := proc.Start(sh(t, tt.script))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			err = p.WaitReady(ctx, "the check", func(context.Context) error {
				if tt.ready {
					return nil
				}
				return errors.New("not yet")
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("WaitReady = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantLog) {
				t.Errorf("WaitReady = %v, want the log's %q in it", err, tt.wantLog)
			}
		})
	}
}

// TestStopContinuesAStoppedProcess: Stop of a SIGSTOPped process ends it
// with its SIGTERM, not with the SIGKILL after the grace.
func TestStopContinuesAStoppedProcess(t *testing.T) {
	p, err := proc.Start(sh(t, "trap 'exit 0' TERM; echo trap''ped; while :; do sleep 0.1; done"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.WaitReady(t.Context(), "its trap", func(context.Context) error {
		if !strings.Contains(proc.LogTail(p.Spec.Log, 5), "trapped") {
			return errors.New("no trap yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.Stop(20 * time.Second)
	if _, err := p.Exited(); err != nil {
		t.Fatalf("stopped process ended with %v, want exit 0 on SIGTERM", err)
	}
}

// TestRun: Run answers nil for status 0, and the status and the log's tail
// otherwise.
func TestRun(t *testing.T) {
	if err := proc.Run(t.Context(), sh(t, "exit 0")); err != nil {
		t.Fatalf("Run of exit 0 = %v", err)
	}
	err := proc.Run(t.Context(), sh(t, "echo it failed; exit 2"))
	if err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), "it failed") {
		t.Fatalf("Run of exit 2 = %v, want its status and log", err)
	}
}
