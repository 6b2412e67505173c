// Package timerslack lets the kernel serve the agent's timers late by up to a
// millisecond, so that the Go runtime's monitor thread wakes less often.
//
// Linux lets a timer of a thread expire up to the thread's timer slack after
// its time (50 µs unless set otherwise), so that wake-ups close in time are
// served together. The Go runtime's monitor thread (sysmon) sleeps 20 µs at a
// time whenever any goroutine runs or is in a system call: with the default
// slack it wakes about every 0.1 ms of every burst of work, however small
// the burst. An agent tailing a trickle of lines is mostly such bursts: reading
// the files written in a window, an export request, a checkpoint save. With a
// slack of 1 ms the monitor wakes at most about once a millisecond; the
// agent's own timers (windows, batch timeouts, retries, ticks) are hundreds
// of milliseconds long, and a millisecond late is nothing to them. In the
// trickle benchmark (100 files, 1,000 lines/s) the monitor's sleeps went from
// 65 to 21 a second and the agent's CPU from 0.67% to 0.58% of a core
// (docs/tailer.md).
//
// The slack is a property of each thread, inherited by the threads it
// creates; the runtime starts the monitor before any code of the agent runs,
// so Set changes it on every thread of the process at once.
package timerslack

import (
	"errors"
	"time"
)

// Default is the slack Set gives the agent's threads.
const Default = time.Millisecond

// KernelDefault is the slack of a process whose parents did not change it.
const KernelDefault = 50 * time.Microsecond

// ErrUnsupported is returned where the slack of every thread cannot be set:
// outside Linux, and in binaries linked with cgo (the released ones are not).
var ErrUnsupported = errors.New("setting the timer slack of every thread is not supported here")

// Result says what Set found and did.
type Result struct {
	Found time.Duration // the slack the process was started with
	Now   time.Duration // the slack of its threads after Set
	Kept  bool          // Found was not the kernel's default and was kept
}
