package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTempDirRemoved: the directory and what a test wrote in it are gone
// once the test ends, under Wine as elsewhere.
func TestTempDirRemoved(t *testing.T) {
	var dir string
	t.Run("writer", func(t *testing.T) {
		dir = TempDir(t)
		for _, p := range []string{"a/b/c", "a/d", "e"} {
			if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p, "f.log"), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s after the test: %v, want it removed", dir, err)
	}
}
