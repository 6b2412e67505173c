package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
)

// Checkpoints that cannot be written: one warning, /readyz not ready with
// the reason, every line still delivered, and a stop that drains exits 0
// with the warning kept.
func TestCheckpointWriteFailure(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("its configuration puts the temporary directory in YAML double-quoted strings, where a Windows path's \\ starts an escape")
	}
	dir := testenv.TempDir(t)
	state, logs := filepath.Join(dir, "state"), filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	adminAddr := freeAddr(t)
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`state_dir: %s
checkpoints: {flush_interval: 50ms}
admin: {address: %q}
sources:
  app: {type: file, include: ["%s/*.log"], start_at: beginning}
exporters:
  out: {type: console, format: json}
pipelines:
  main: {sources: [app], exporters: [out]}
`, state, adminAddr, logs)), 0o644)
	var lines strings.Builder
	for i := range 100 {
		fmt.Fprintf(&lines, "line %d\n", i)
	}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	var readyz string
	var status int
	done := make(chan struct{})
	code := runAgent(path, func(string) string { return "" }, stdout, stderr, func(ctx context.Context, cancel context.CancelFunc) {
		go func() {
			defer close(done)
			defer cancel()
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, status := get(adminAddr, "/readyz"); status == http.StatusOK {
					break
				}
			}
			// A directory where the checkpoint file goes: no write can
			// succeed, whatever the user's privileges.
			os.Remove(filepath.Join(state, "checkpoints.bin"))
			os.MkdirAll(filepath.Join(state, "checkpoints.bin"), 0o755)
			os.WriteFile(filepath.Join(logs, "a.log"), []byte(lines.String()), 0o644)
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				readyz, status = get(adminAddr, "/readyz")
				if status == http.StatusServiceUnavailable && strings.Count(stdout.String(), "\n") >= 100 {
					time.Sleep(300 * time.Millisecond) // more failed flushes
					return
				}
			}
		}()
	}, 0)
	select {
	case <-done:
	case <-time.After(time.Minute): // runAgent returned before it ran (a rejected configuration)
		t.Fatalf("exit %d before the agent ran; log:\n%s", code, stderr.String())
	}
	log := stderr.String()
	if code != 0 {
		t.Errorf("exit %d, want 0; log:\n%s", code, log)
	}
	if !strings.Contains(readyz, "not ready: checkpoints cannot be written since") {
		t.Errorf("/readyz %d %q: want not ready, checkpoints cannot be written", status, readyz)
	}
	if n := strings.Count(log, "checkpoint write failed"); n != 1 {
		t.Errorf("%d warnings about the failed write, want 1:\n%s", n, log)
	}
	if !strings.Contains(log, "stopped, but the checkpoints could not be written") {
		t.Errorf("no warning at the stop:\n%s", log)
	}
	for i := range 100 {
		if !strings.Contains(stdout.String(), fmt.Sprintf(`"line %d"`, i)) {
			t.Errorf("line %d not delivered", i)
		}
	}
}
