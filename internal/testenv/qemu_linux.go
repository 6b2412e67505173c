package testenv

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
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
