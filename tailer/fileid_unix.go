//go:build unix

package tailer

import (
	"io"
	"os"
	"syscall"
)

// idOf is the device and inode number of a file.
func idOf(st os.FileInfo) devIno {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return devIno{}
	}
	return devIno{dev: uint64(sys.Dev), ino: sys.Ino}
}

// statID stats the file at path (following symlinks) and returns its
// identity with it.
func statID(path string) (os.FileInfo, devIno, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, devIno{}, err
	}
	return st, idOf(st), nil
}

// fileID is the identity of the open file fd, whose Stat is st.
func fileID(_ *os.File, st os.FileInfo) devIno { return idOf(st) }

// unlinked reports whether the open file fd, whose Stat is st, has no name
// left (it was deleted while open).
func unlinked(_ *os.File, st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && sys.Nlink == 0
}

// preader reads a file with one pread per call: a read that returns fewer
// bytes than asked is at the end of the file (regular files are not read
// short otherwise), and says so with io.EOF instead of a second pread that
// os.File.ReadAt would make to find out.
type preader struct{ f *os.File }

func (p preader) ReadAt(b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return p.f.ReadAt(b, off)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Pread(int(fd), b, off)
			if rerr != syscall.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr != nil:
		return 0, &os.PathError{Op: "read", Path: p.f.Name(), Err: rerr}
	case n < len(b):
		return max(n, 0), io.EOF
	}
	return n, nil
}
