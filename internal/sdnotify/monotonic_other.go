//go:build !linux

package sdnotify

// monotonicUsec is unavailable where systemd does not run.
func monotonicUsec() (int64, bool) { return 0, false }
