package testenv

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// kernelArch lists, per GOARCH, the machines (uname -m) whose kernel runs
// its binaries natively.
var kernelArch = map[string][]string{
	"amd64":   {"x86_64"},
	"386":     {"i386", "i486", "i586", "i686", "x86_64"},
	"arm64":   {"aarch64", "aarch64_be", "arm64"},
	"arm":     {"armv6l", "armv7l", "armv8l", "aarch64"},
	"riscv64": {"riscv64"},
	"ppc64le": {"ppc64le"},
	"s390x":   {"s390x"},
}

// Qemu reports whether the process runs under qemu-user: the kernel's
// architecture (/proc/sys/kernel/arch, which qemu-user does not emulate,
// unlike uname) is not one that runs GOARCH's binaries. False where the
// kernel does not say (before Linux 6.1) or GOARCH is not listed.
var Qemu = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/sys/kernel/arch")
	native, listed := kernelArch[runtime.GOARCH]
	if err != nil || !listed {
		return false
	}
	return !slices.Contains(native, strings.TrimSpace(string(b)))
})

// SkipUnderQemuExec skips a test that runs its own binary as a child (the
// logpump command of testscript, a re-executed test binary) when qemu-user
// runs it and the kernel cannot execute that binary: without a binfmt_misc
// handler for the emulated architecture, exec fails with "exec format
// error". With a handler registered, the test runs.
func SkipUnderQemuExec(t testing.TB) {
	t.Helper()
	if Qemu() && !canExecSelf() {
		t.Skip("under qemu-user without binfmt_misc: the test executes its own " + runtime.GOARCH +
			" binary as a child, which the kernel cannot exec (exec format error)")
	}
}

var canExecSelf = sync.OnceValue(func() bool {
	exe, err := os.Executable()
	if err == nil {
		err = exec.Command(exe, "-test.run=^$").Run()
	}
	return !errors.Is(err, syscall.ENOEXEC)
})
