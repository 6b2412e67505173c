// Package testenv tells a test which emulator runs it, so that a test whose
// subject the emulator cannot show skips itself and names the emulator's
// limit. The Windows test binaries run under Wine and the linux/arm64 ones
// under qemu-user in CI (.ci/platforms.sh): a skip there must be a limit of
// the emulator, seen in its failure, and a failure a real one.
package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// SkipUnderWine skips the test when it runs under Wine; limit says what
// Wine does not do that the test checks.
func SkipUnderWine(t testing.TB, limit string) {
	t.Helper()
	if Wine() {
		t.Skip("under Wine: " + limit)
	}
}

// SkipUnderQemu skips the test when it runs under qemu-user (a binary of
// another architecture than the kernel's); limit says what qemu-user does
// not do that the test checks.
func SkipUnderQemu(t testing.TB, limit string) {
	t.Helper()
	if Qemu() {
		t.Skip("under qemu-user: " + limit)
	}
}

// TempDir is t.TempDir, except under Wine: Wine's os.RemoveAll fails
// ("unlinkat ...: Invalid function") after the test's own checks, so there
// the directory is removed file by file and what is left is logged, not
// failed.
func TempDir(t testing.TB) string {
	t.Helper()
	if !Wine() {
		return t.TempDir()
	}
	name := strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 64 {
		name = name[:64]
	}
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	t.Cleanup(func() {
		if err := removeTree(dir); err != nil {
			t.Logf("under Wine: %s left behind: %v", dir, err)
		}
	})
	return dir
}

// removeTree removes dir's files, then its directories deepest first, one
// os.Remove each (Wine implements those, not os.RemoveAll).
func removeTree(dir string) error {
	var dirs []string
	var first error
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			if first == nil {
				first = err
			}
		case d.IsDir():
			dirs = append(dirs, path)
		default:
			if err := os.Remove(path); err != nil && first == nil {
				first = err
			}
		}
		return nil
	})
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && first == nil {
			first = err
		}
	}
	return first
}
