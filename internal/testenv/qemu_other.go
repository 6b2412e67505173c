//go:build !linux

package testenv

// Qemu reports whether the process runs under qemu-user; only Linux
// binaries are run so.
func Qemu() bool { return false }
