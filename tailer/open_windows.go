package tailer

import (
	"os"

	"golang.org/x/sys/windows"
)

// openFile opens a followed file for reading, sharing read, write and delete
// access (os.Open does not share delete): an application may rename or
// delete the file while the agent holds it, as on Linux, and the agent
// reads the unread end through its handle. Renaming the file's directory
// is still refused while a file in it is open: Windows semantics.
func openFile(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}
