//go:build !linux

package testenv

import "testing"

// Qemu reports whether the process runs under qemu-user; only Linux
// binaries are run so.
func Qemu() bool { return false }

// SkipUnderQemuExec skips a test that runs its own binary as a child under
// qemu-user; only Linux binaries are run so.
func SkipUnderQemuExec(t testing.TB) {}
