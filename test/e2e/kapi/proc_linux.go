package kapi

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the process when the test binary
// dies (a panic or a -timeout leaves no etcd or API server behind).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
