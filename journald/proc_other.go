//go:build !linux

package journald

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
