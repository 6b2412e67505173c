package e2e

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestTimerSlack: every thread of a running agent has a timer slack of 1 ms,
// so that the Go runtime's monitor thread wakes less often while the agent
// trickles (docs/operations.md), unless the agent was started with a slack
// other than the kernel's 50 µs (systemd's TimerSlackNSec=), which every
// thread then keeps.
func TestTimerSlack(t *testing.T) {
	for _, tc := range []struct {
		name         string
		parent, want time.Duration // parent 0: the kernel's default
	}{
		{"kernel default raised", 0, time.Millisecond},
		{"parent's slack kept", 3 * time.Millisecond, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := threadSlacks(os.Getpid()); err != nil {
				t.Skipf("cannot read the timer slack of threads here: %v", err)
			}
			tally := otlpsink.NewTally()
			e := newEnv(t, setup{onBody: tally.AddBody})
			s := e.newStream("slack", 100, "a.log")
			if err := s.write(100); err != nil {
				t.Fatal(err)
			}
			p := startWithSlack(t, e, tc.parent)
			// The slack is set before the pipeline starts: once lines
			// arrive, it is in force.
			if !waitUntil(30*time.Second, func() bool { return tally.Total() >= 100 }) {
				t.Fatalf("only %d of 100 lines arrived", tally.Total())
			}
			slacks, err := threadSlacks(p.pid())
			if err != nil {
				t.Fatal(err)
			}
			if len(slacks) < 2 {
				t.Fatalf("the agent has %d threads; want the runtime's monitor and more", len(slacks))
			}
			for tid, got := range slacks {
				if got != tc.want {
					t.Errorf("thread %d: timer slack %v, want %v", tid, got, tc.want)
				}
			}
			summary(t, "timer-slack", "case=%q threads=%d want=%v", tc.name, len(slacks), tc.want)
			p.stop(10 * time.Second)
		})
	}
}

// startWithSlack starts the agent from a thread whose timer slack is slack
// (0: left as it is), which the agent inherits, as from systemd's
// TimerSlackNSec=.
func startWithSlack(t *testing.T, e *env, slack time.Duration) *agentProc {
	t.Helper()
	if slack == 0 {
		return e.start()
	}
	started := make(chan *agentProc, 1)
	go func() {
		// Never unlocked: the thread with the changed slack ends with
		// this goroutine instead of running other goroutines.
		runtime.LockOSThread()
		var p *agentProc
		defer func() { started <- p }()
		const prSetTimerslack = 29 // PR_SET_TIMERSLACK
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, uintptr(slack.Nanoseconds()), 0); errno != 0 {
			t.Errorf("set the timer slack: %v", errno)
			return
		}
		p = e.start()
	}()
	p := <-started
	if p == nil {
		t.FailNow()
	}
	return p
}

// threadSlacks returns the timer slack of every thread of process pid
// (/proc/TID/timerslack_ns; reading another process's needs CAP_SYS_NICE).
func threadSlacks(pid int) (map[int]time.Duration, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]time.Duration{}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", task.Name(), "timerslack_ns"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, err
		}
		out[tid] = time.Duration(ns)
	}
	return out, nil
}
