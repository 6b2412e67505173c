package tailer

import (
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows a file's identity is the serial number of its volume and its
// 64-bit file index (NTFS's file reference number), the pair the system
// documents as unique while the file exists; with the fingerprint of its
// first bytes it survives the reuse of an index after deletion, as device
// and inode do on Linux. os.Stat does not return the index (os.SameFile
// reads it lazily and privately), so it is read from a handle.

// statID opens the file at path (following symlinks) for its attributes
// only, and returns its Stat and identity. The handle shares read, write
// and delete access: it never blocks a writer or a rotation.
func statID(path string) (os.FileInfo, devIno, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, devIno{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.FILE_READ_ATTRIBUTES,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return nil, devIno{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(h), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, devIno{}, err
	}
	return st, fileID(f, st), nil
}

// fileID is the identity of the open file fd; the zero devIno when the
// system cannot say.
func fileID(fd *os.File, _ os.FileInfo) devIno {
	var info windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(windows.Handle(fd.Fd()), &info); err != nil {
		return devIno{}
	}
	return devIno{
		dev: uint64(info.VolumeSerialNumber),
		ino: uint64(info.FileIndexHigh)<<32 | uint64(info.FileIndexLow),
	}
}

// fileStandardInfo is FILE_STANDARD_INFO.
type fileStandardInfo struct {
	AllocationSize, EndOfFile int64
	NumberOfLinks             uint32
	DeletePending, Directory  bool
}

// unlinked reports whether the open file fd was deleted: a file opened with
// FILE_SHARE_DELETE and deleted stays reachable through the handle, pending
// deletion (or, with POSIX delete semantics, without links).
func unlinked(fd *os.File, _ os.FileInfo) bool {
	var info fileStandardInfo
	err := windows.GetFileInformationByHandleEx(windows.Handle(fd.Fd()), windows.FileStandardInfo,
		(*byte)(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info)))
	return err == nil && (info.DeletePending || info.NumberOfLinks == 0)
}

// preader reads with os.File.ReadAt, which on Windows is one ReadFile at an
// offset (and restores the file pointer), and reports a short read as
// io.EOF.
type preader struct{ f *os.File }

func (p preader) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, off) }
