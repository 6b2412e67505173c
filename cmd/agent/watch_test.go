package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
)

// TestWatchConfigAppliesChanges: with -watch-config the agent applies a
// changed file without a signal, as a Kubernetes ConfigMap volume changes
// it (a new directory, then the ..data symlink replaced at once). A broken
// file keeps the running configuration and /readyz says why (still ready);
// the next good file is applied and the warning goes.
func TestWatchConfigAppliesChanges(t *testing.T) {
	testenv.SkipUnderQemuExec(t)
	testenv.SkipUnderWine(t, "CreateSymbolicLink reports success and makes no link (the ConfigMap's ..data)")
	dir := testenv.TempDir(t)
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	addr := freeAddr(t)
	version := 0
	// publish writes text as the next version, ConfigMap style.
	publish := func(text string) {
		version++
		v := filepath.Join(dir, fmt.Sprintf("..v%d", version))
		os.MkdirAll(v, 0o755)
		os.WriteFile(filepath.Join(v, "config.yaml"), []byte(text), 0o644)
		tmp := filepath.Join(dir, "..data_tmp")
		os.Remove(tmp)
		if err := os.Symlink(filepath.Base(v), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	config := func(tag string) string {
		return fmt.Sprintf(`state_dir: %[1]s/state
admin: {address: %[2]q}
sources:
  app: {type: file, include: ["%[1]s/logs/*.log"], start_at: beginning, write_window: 0s}
processors:
  tag: {type: transform, actions: [{set: attributes.version, value: %[3]s}]}
exporters:
  out: {type: console, format: json}
pipelines:
  main: {sources: [app], processors: [tag], exporters: [out]}
`, dir, addr, tag)
	}
	publish(config("one"))
	if err := os.Symlink("..data/config.yaml", filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("logpump", "run", "-config", filepath.Join(dir, "config.yaml"), "-watch-config", "50ms")
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("log:\n%s", stderr.String())
		}
	}()
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 20s", what)
			}
		}
	}
	line := 0
	sendLine := func() string {
		line++
		s := fmt.Sprintf("line %d", line)
		f, _ := os.OpenFile(filepath.Join(dir, "logs", "a.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		fmt.Fprintln(f, s)
		f.Close()
		return s
	}
	// tagged reports whether the console printed body with version tag.
	tagged := func(body, tag string) bool {
		for _, l := range strings.Split(stdout.String(), "\n") {
			if strings.Contains(l, `"body":"`+body+`"`) && strings.Contains(l, `"version":"`+tag+`"`) {
				return true
			}
		}
		return false
	}
	wait("running agent", func() bool { return strings.Contains(stderr.String(), "logpump running") })
	l1 := sendLine()
	wait("line under the first configuration", func() bool { return tagged(l1, "one") })

	publish(config("two"))
	wait("reload after the file changed", func() bool { return strings.Contains(stderr.String(), `"msg":"configuration reloaded"`) })
	l2 := sendLine()
	wait("line under the changed configuration", func() bool { return tagged(l2, "two") })

	publish(config("three") + "bogus_key: 1\n")
	wait("rejected reload", func() bool { return strings.Contains(stderr.String(), "reload failed") })
	body, code := get(addr, "/readyz")
	if code != 200 || !strings.Contains(body, "was not applied") || !strings.Contains(body, "bogus_key") {
		t.Errorf("/readyz = %d %q, want 200 naming the rejected file and its error", code, body)
	}
	if m, _ := get(addr, "/metrics"); !strings.Contains(m, "logpump_config_last_reload_successful 0") {
		t.Error("metrics do not say the last reload failed")
	}
	l3 := sendLine()
	wait("line under the running configuration", func() bool { return tagged(l3, "two") })

	publish(config("four"))
	wait("reload of the fixed file", func() bool { return strings.Count(stderr.String(), `"msg":"configuration reloaded"`) == 2 })
	if body, _ := get(addr, "/readyz"); strings.Contains(body, "was not applied") {
		t.Errorf("/readyz still warns after a good file was applied: %q", body)
	}
	l4 := sendLine()
	wait("line under the fixed configuration", func() bool { return tagged(l4, "four") })
}
