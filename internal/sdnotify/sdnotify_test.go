package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// manager listens like systemd does and returns the socket's path.
func manager(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

func receive(t *testing.T, conn *net.UnixConn, wait time.Duration) (string, error) {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(wait))
	n, err := conn.Read(buf)
	return string(buf[:n]), err
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestStates(t *testing.T) {
	conn, path := manager(t)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path}))
	if !n.Enabled() {
		t.Fatal("Enabled: got false with NOTIFY_SOCKET set")
	}
	tests := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", func() error { return n.Ready("running: 2 sources, 1 exporter") }, "READY=1\nSTATUS=running: 2 sources, 1 exporter"},
		{"stopping", n.Stopping, "STOPPING=1\nSTATUS=draining"},
		{"status on one line", func() error { return n.Status("reload rejected:\nbad key") }, "STATUS=reload rejected: bad key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			got, err := receive(t, conn, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	conn, path := manager(t)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path}))
	before, _ := monotonicUsec()
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after, _ := monotonicUsec()
	got, err := receive(t, conn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") || lines[2] != "STATUS=reloading configuration" {
		t.Fatalf("got %q, want RELOADING=1, MONOTONIC_USEC=..., STATUS=...", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC: got %s, want a CLOCK_MONOTONIC time in [%d, %d]", lines[1], before, after)
	}
}

func TestWithoutServiceManager(t *testing.T) {
	n := New(env(nil))
	if n.Enabled() {
		t.Error("Enabled: got true without NOTIFY_SOCKET")
	}
	for name, f := range map[string]func() error{
		"Ready": func() error { return n.Ready("x") }, "Reloading": n.Reloading,
		"Stopping": n.Stopping, "Status": func() error { return n.Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s: got %v, want nil", name, err)
		}
	}
	if err := n.Run(context.Background(), nil); err != nil {
		t.Errorf("Run without a watchdog: got %v, want nil at once", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		env  map[string]string
		want time.Duration
	}{
		{"half of WatchdogSec", map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}, 15 * time.Second},
		{"for this process", map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}, 15 * time.Second},
		{"for another process", map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 0},
		{"no watchdog", map[string]string{"NOTIFY_SOCKET": "/x"}, 0},
		{"garbage", map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"}, 0},
		{"no socket", map[string]string{"WATCHDOG_USEC": "30000000"}, 0},
	}
	for _, tt := range tests {
		if got := New(env(tt.env)).WatchdogInterval(); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestWatchdogPings(t *testing.T) {
	conn, path := manager(t)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx, func() bool { return true }) }()
	for i := range 3 {
		got, err := receive(t, conn, 10*time.Second)
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q, want WATCHDOG=1", i, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: got %v, want nil", err)
	}
}

func TestWatchdogSilentWhileUnhealthy(t *testing.T) {
	conn, path := manager(t)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}))
	ctx, cancel := context.WithCancel(context.Background())
	asked := make(chan struct{}, 100)
	done := make(chan error)
	go func() {
		done <- n.Run(ctx, func() bool { asked <- struct{}{}; return false })
	}()
	// Several ticks pass (each asks healthy) without a ping.
	for range 5 {
		<-asked
	}
	if got, err := receive(t, conn, 50*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("while unhealthy: got %q (err %v), want no ping", got, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: got %v, want nil", err)
	}
}
