// Package sdnotify tells systemd about the agent's state with the
// sd_notify protocol of a Type=notify unit: READY=1 once the pipeline runs,
// RELOADING=1 while a SIGHUP reload is applied, STOPPING=1 when a stop
// begins, and WATCHDOG=1 pings when the unit sets WatchdogSec.
//
// Outside systemd (no NOTIFY_SOCKET) every method does nothing and returns
// nil, so the agent calls them unconditionally.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier sends state changes to the service manager. It is safe for
// concurrent use.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// New reads the service manager's environment through getenv
// (os.Getenv when nil): NOTIFY_SOCKET, and WATCHDOG_USEC with WATCHDOG_PID,
// which must name this process if set. It does no I/O.
func New(getenv func(string) string) *Notifier {
	if getenv == nil {
		getenv = os.Getenv
	}
	n := &Notifier{}
	if s := getenv("NOTIFY_SOCKET"); s != "" {
		// A leading "@" names an abstract socket, which package net understands.
		n.addr = &net.UnixAddr{Name: s, Net: "unixgram"}
	}
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err == nil && usec > 0 {
		pid := getenv("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// Ready says the agent is running: after start, and again after a reload.
// status is a one-line human-readable state shown by systemctl status.
func (n *Notifier) Ready(status string) error {
	return n.send("READY=1", status)
}

// Reloading says a reload has begun. The service manager waits for the
// next [Notifier.Ready]. MONOTONIC_USEC tells it when the reload started,
// as systemd 253 and later require.
func (n *Notifier) Reloading() error {
	if usec, ok := monotonicUsec(); ok {
		return n.send("RELOADING=1\nMONOTONIC_USEC="+strconv.FormatInt(usec, 10), "reloading configuration")
	}
	return n.send("RELOADING=1", "reloading configuration")
}

// Stopping says the agent is draining before it exits.
func (n *Notifier) Stopping() error {
	return n.send("STOPPING=1", "draining")
}

// Status updates the status line without changing the state.
func (n *Notifier) Status(status string) error {
	return n.send("", status)
}

// WatchdogInterval is how often [Notifier.Run] pings: half the unit's
// WatchdogSec, or 0 when the watchdog is off.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n.addr == nil {
		return 0
	}
	return n.watchdog / 2
}

// Run pings the watchdog every [Notifier.WatchdogInterval] until ctx is
// done, skipping a ping when healthy (nil means always) returns false: if
// the agent stays unhealthy for WatchdogSec, systemd restarts it. Run
// returns nil at once when the watchdog is off, and nil when ctx is done;
// it returns the error of a ping that could not be sent.
func (n *Notifier) Run(ctx context.Context, healthy func() bool) error {
	every := n.WatchdogInterval()
	if every <= 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if healthy != nil && !healthy() {
				continue
			}
			if err := n.send("WATCHDOG=1", ""); err != nil {
				return err
			}
		}
	}
}

// send writes one datagram holding state and, if set, a STATUS line.
func (n *Notifier) send(state, status string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	msg := state
	if status != "" {
		status = strings.ReplaceAll(status, "\n", " ")
		if msg != "" {
			msg += "\n"
		}
		msg += "STATUS=" + status
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify service manager: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("notify service manager: %w", err)
	}
	return nil
}
