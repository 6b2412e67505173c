package jfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/logpump/logpump/internal/testenv"
)

// TestPermissionDeniedNamesTheCause: a journal directory the agent may not
// read is an error naming the directory and what grants access. The
// reader runs as nobody (a child process of this test, which runs as
// root).
func TestPermissionDeniedNamesTheCause(t *testing.T) {
	if dir := os.Getenv("LOGPUMP_JFILE_SCAN"); dir != "" {
		err := Directories(dir).Scan()
		fmt.Printf("scan error: %v\n", err)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as nobody")
	}
	testenv.SkipUnderQemuExec(t)
	top := t.TempDir()
	dir := filepath.Join(top, "journal")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The child runs a copy of this test binary that nobody may execute.
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(top, "jfile.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^TestPermissionDeniedNamesTheCause$", "-test.v")
	cmd.Env = append(os.Environ(), "LOGPUMP_JFILE_SCAN="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	for _, want := range []string{dir, "permission denied", "systemd-journal", "CAP_DAC_READ_SEARCH"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}
}
