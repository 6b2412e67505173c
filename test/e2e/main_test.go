package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// agentBin is the logpump binary built once by TestMain.
var agentBin string

// TestMain builds the agent from the repository root (its own go.mod, so the
// binary under test is the one users get, not one linked against this
// module's dependency versions) and runs the tests. LOGPUMP_E2E_BIN names a
// binary to test instead.
func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	if bin := os.Getenv("LOGPUMP_E2E_BIN"); bin != "" {
		// A binary built elsewhere (a release build, a packaged one).
		agentBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "logpump-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	agentBin = filepath.Join(dir, "logpump")
	// Built as the Makefile and the packages build it: without cgo, so that
	// the agent can set the timer slack of its threads (TestTimerSlack).
	build := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-o", agentBin, "github.com/logpump/logpump/cmd/agent")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build the agent in %s: %v\n", root, err)
		return 1
	}
	return m.Run()
}
