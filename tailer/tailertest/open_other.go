//go:build !windows

package tailertest

import "os"

// openAppend opens path for appending, creating it.
func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}
