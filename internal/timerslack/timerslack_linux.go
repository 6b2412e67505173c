package timerslack

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Set gives every thread of the process the timer slack d, unless the
// process was started with a slack other than the kernel's default (set by
// systemd's TimerSlackNSec= or by a parent process): that choice is kept.
func Set(d time.Duration) (Result, error) {
	cur, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return Result{}, fmt.Errorf("read the timer slack: %w", err)
	}
	r := Result{Found: time.Duration(cur), Now: time.Duration(cur)}
	if r.Found != KernelDefault {
		r.Kept = true
		return r, nil
	}
	if d <= 0 || d == r.Found {
		return r, nil
	}
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0)
	switch errno {
	case 0:
		r.Now = d
		return r, nil
	case syscall.ENOTSUP:
		return r, ErrUnsupported
	default:
		return r, fmt.Errorf("set the timer slack: %w", errno)
	}
}
