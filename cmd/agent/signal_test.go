package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
)

// TestMain's "logpump" command (on PATH) runs the agent in a child
// process, so that signals reach only it.

// Two SIGTERMs within the debounce (GNU timeout signals the child, then its
// group) are one stop request: a clean drain and exit 0. A second one after
// it still exits at once.
func TestRepeatedStopSignal(t *testing.T) {
	testenv.SkipUnderQemuExec(t)
	if runtime.GOOS == "windows" {
		t.Skip("it sends the agent SIGTERM: Windows has no signals between processes (os.Process.Signal can only kill)")
	}
	for _, tt := range []struct {
		name     string
		gap      time.Duration
		wantCode int
		wantLog  string
	}{
		{"twice 10ms apart", 10 * time.Millisecond, 0, "repeated stop signal ignored"},
		{"again after the debounce", signalDebounce + 300*time.Millisecond, 130, "second signal: exiting now"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testenv.TempDir(t)
			os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
			cfg := fmt.Sprintf(`state_dir: %[1]s/state
log_level: debug
shutdown_timeout: 3s
sources:
  app: {type: file, include: ["%[1]s/logs/*.log"], start_at: beginning}
exporters:
  # A destination that never answers keeps the drain going until the
  # second signal, or shutdown_timeout.
  gw: {type: otlp_http, endpoint: "http://127.0.0.1:1/v1/logs", retry: {initial_interval: 10ms}}
pipelines:
  main: {sources: [app], exporters: [gw]}
`, dir)
			os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(cfg), 0o644)
			os.WriteFile(filepath.Join(dir, "logs", "a.log"), []byte("x\n"), 0o644)
			cmd := exec.Command("logpump", "run", "-config", filepath.Join(dir, "c.yaml"))
			stderr := &syncBuffer{}
			cmd.Stderr = stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(stderr.String(), "logpump running") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			time.Sleep(tt.gap)
			cmd.Process.Signal(syscall.SIGTERM)
			err := cmd.Wait()
			code := cmd.ProcessState.ExitCode()
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantLog) {
				t.Errorf("exit %d (%v), want %d with %q; log:\n%s", code, err, tt.wantCode, tt.wantLog, stderr.String())
			}
		})
	}
}

// An admin address changed by a reload is reported, not ignored silently.
func TestReloadReportsAdminChange(t *testing.T) {
	testenv.SkipUnderQemuExec(t)
	if runtime.GOOS == "windows" {
		t.Skip("it sends the agent SIGHUP: Windows has no signals between processes (os.Process.Signal can only kill)")
	}
	dir := testenv.TempDir(t)
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	path := filepath.Join(dir, "c.yaml")
	first, second := freeAddr(t), freeAddr(t)
	os.WriteFile(path, adminConfig(dir, first), 0o644)
	cmd := exec.Command("logpump", "run", "-config", path)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog := func(s string) bool {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if strings.Contains(stderr.String(), s) {
				return true
			}
		}
		return false
	}
	waitLog("logpump running")
	os.WriteFile(path, adminConfig(dir, second), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	ok := waitLog("configuration reloaded")
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	want := fmt.Sprintf(`"msg":"admin settings change only on restart; keeping the running ones","address":%q,"new_address":%q`, first, second)
	if !ok || !strings.Contains(stderr.String(), want) {
		t.Errorf("log does not say %s:\n%s", want, stderr.String())
	}
}

// adminConfig is a configuration with the admin server on addr, reading
// dir/logs to the console.
func adminConfig(dir, addr string) []byte {
	return []byte(fmt.Sprintf(`state_dir: %[1]s/state
admin: {address: %[2]q}
sources:
  app: {type: file, include: ["%[1]s/logs/*.log"]}
exporters:
  out: {type: console}
pipelines:
  main: {sources: [app], exporters: [out]}
`, dir, addr))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// An admin address in use stops the start with the reason in the JSON log.
func TestAdminBindErrorLogged(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("its configuration puts the temporary directory in YAML double-quoted strings, where a Windows path's \\ starts an escape")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, adminConfig(dir, ln.Addr().String()), 0o644)
	var stdout, stderr bytes.Buffer
	code := runAgent(path, func(string) string { return "" }, &stdout, &stderr, nil, 0)
	var rec struct{ Level, Msg, Address, Err string }
	json.Unmarshal(stderr.Bytes(), &rec)
	if code != 1 || rec.Level != "ERROR" || rec.Msg != "admin server not started" || rec.Address != ln.Addr().String() ||
		!strings.Contains(rec.Err, "address already in use") {
		t.Errorf("exit %d, stderr %q: want 1 and one JSON error naming the address", code, stderr.String())
	}
}
