package journald

import "syscall"

// sysProcAttr makes the kernel stop journalctl when the agent dies without
// stopping it (SIGKILL): a following journalctl would otherwise wait for
// the next entry to notice that nobody reads its output.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
