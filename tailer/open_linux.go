package tailer

import (
	"errors"
	"os"
	"syscall"
)

// openFile opens a followed file for reading without updating its access
// time where the kernel allows it (the file's owner, or CAP_FOWNER; others
// get EPERM and open it plainly). A file being written has a modification
// time after its access time, so under relatime every read of new lines
// would otherwise write its inode.
func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOATIME, 0)
	if errors.Is(err, syscall.EPERM) {
		return os.Open(path)
	}
	return f, err
}
