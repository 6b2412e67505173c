//go:build linux && !portablewatch

package tailer

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/tailer/tailertest"
)

// The same fallbacks with the kernel's real limits, lowered in a child user
// namespace (the limits of /proc/sys/user are per user namespace: the host's
// stay untouched). The test binary runs itself in the namespace; where user
// namespaces are not allowed it skips.
func TestRealInotifyLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, tc := range []struct {
		name               string
		watches, instances int
	}{
		// The watcher uses two watches per directory; the test watches 4
		// directories: 5 watches leave 2 of them polled.
		{"max_user_watches", 5, 100},
		// Two instances are needed: with one, every file is polled.
		{"max_user_instances", 100, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRealInotifyLimitsChild$", "-test.v")
			cmd.Env = append(os.Environ(), fmt.Sprintf("LOGPUMP_USERNS_CHILD=%d,%d", tc.watches, tc.instances))
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags:  syscall.CLONE_NEWUSER,
				UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
				GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
			}
			out, err := cmd.CombinedOutput()
			if err != nil && cmd.Process == nil {
				t.Skipf("no user namespace here: %v", err)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "fallback_test.go") {
					t.Log(strings.TrimSpace(line))
				}
			}
			if err != nil || !strings.Contains(string(out), "--- PASS: TestRealInotifyLimitsChild") {
				t.Errorf("child: %v\n%s", err, out)
			}
		})
	}
}

// TestRealInotifyLimitsChild runs inside the namespace made by
// TestRealInotifyLimits.
func TestRealInotifyLimitsChild(t *testing.T) {
	spec := os.Getenv("LOGPUMP_USERNS_CHILD")
	if spec == "" {
		t.Skip("run by TestRealInotifyLimits")
	}
	var watches, instances int
	if _, err := fmt.Sscanf(spec, "%d,%d", &watches, &instances); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]int{"max_inotify_watches": watches, "max_inotify_instances": instances} {
		if err := os.WriteFile("/proc/sys/user/"+name, []byte(fmt.Sprint(v)), 0); err != nil {
			t.Fatalf("lower %s in the user namespace: %v", name, err)
		}
	}
	root := t.TempDir()
	logs := newLogRecords(t)
	count := tailertest.NewCounter()
	opts := testOptions(filepath.Join(root, "*", "*.log"))
	var ws []*tailertest.Writer
	for i := range 3 {
		d := filepath.Join(root, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, newWriter(t, filepath.Join(d, "app.log"), fmt.Sprintf("d%d", i)))
	}
	h := startTailerWith(t, opts, t.TempDir(), count, slog.New(logs), nil)
	written := map[string]int{}
	total := 0
	for round := range 4 {
		for i, w := range ws {
			mustWrite(t, w, 100)
			if round == 2 {
				rotateByRename(t, w, filepath.Join(root, fmt.Sprintf("d%d", i), "app.log"), 20)
				mustWrite(t, w, 30)
			}
		}
		total = 0
		for _, w := range ws {
			written[w.Stream] = w.Written()
			total += w.Written()
		}
		h.waitCount(total)
	}
	time.Sleep(5 * opts.ScanInterval)
	st := h.tl.Stats()
	h.stop()
	expect(t, count, written, 0)
	t.Logf("watches %d, instances %d: watched dirs %d, polled dirs %d, poll fallbacks %d",
		watches, instances, st.WatchedDirs, st.PolledDirs, st.PollFallbacks)
	if st.PollFallbacks == 0 {
		t.Errorf("no fallback under the lowered limit: %+v", st)
	}
	if n := logs.count("cannot watch directories"); n != 1 {
		t.Errorf("fallback logged %d times, want once; warnings %q", n, logs.msgs)
	}
}
