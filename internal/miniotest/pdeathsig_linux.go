package miniotest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the server if the test process
// dies without running its cleanups (a panic, a timeout, a SIGKILL).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
