package journaldtest

import (
	"net"
	"os"
	"syscall"
)

// credentials returns the control message claiming uid as the sender.
func credentials(uid int) []byte {
	return syscall.UnixCredentials(&syscall.Ucred{Pid: int32(os.Getpid()), Uid: uint32(uid), Gid: uint32(uid)})
}

// sendmsg sends b with the control message oob on the connected datagram
// socket c (which takes no WriteMsgUnix).
func sendmsg(c *net.UnixConn, b, oob []byte) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), b, oob, nil, 0)
		return serr != syscall.EAGAIN
	}); err != nil {
		return err
	}
	return serr
}
