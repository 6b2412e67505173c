package journald

import "syscall"

// sysProcAttr makes the kernel stop journalctl when the agent dies without
// stopping it (SIGKILL): a following journalctl would otherwise wait for
// the next entry to notice that nobody reads its output. (The kernel sends
// it when the thread that started journalctl ends, which Go does only for
// threads a goroutine locked and left locked; journalctl then ends early,
// and is started again from the last cursor handed on.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
