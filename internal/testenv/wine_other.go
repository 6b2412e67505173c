//go:build !windows

package testenv

// Wine reports whether the process runs under Wine; only Windows binaries
// do.
func Wine() bool { return false }
