package checkpoint

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync writes f's data to stable storage, and of its metadata only what
// reading the data back needs (fdatasync): an overwrite in place of a file's
// allocated blocks leaves nothing else to write.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
