package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/topod-io/topod/internal/proc"
)

// stopGrace is how long a stop waits after SIGTERM before SIGKILL.
const stopGrace = 15 * time.Second

// errAddrInUse says a start failed because a port was taken between
// picking it and binding it: the caller picks other ports and tries again.
var errAddrInUse = errors.New("address already in use")

// startProcess starts bin as a child of the caller with the caller's
// environment and env, its output appended to log.
func startProcess(name, bin string, args, env []string, log string) (*proc.Process, error) {
	return proc.Start(proc.Spec{Name: name, Binary: bin, Args: args, Env: env, Log: log})
}

// waitReady runs wait (one of p's waits) for at most timeout; the error
// wraps errAddrInUse when the process exited because a port was taken.
func waitReady(ctx context.Context, p *proc.Process, timeout time.Duration, wait func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := wait(ctx)
	if errors.Is(err, proc.ErrExited) && strings.Contains(proc.LogTail(p.Spec.Log, 20), errAddrInUse.Error()) {
		return fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}
