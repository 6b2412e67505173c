//go:build !linux && !windows

package tailer

import "os"

// openFile opens a followed file for reading.
func openFile(path string) (*os.File, error) { return os.Open(path) }
