//go:build !windows

package checkpoint

import (
	"fmt"
	"os"
)

// replaceFile renames from to to, replacing to atomically.
func replaceFile(from, to string) error { return os.Rename(from, to) }

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir %s: %w", dir, err)
	}
	return nil
}
