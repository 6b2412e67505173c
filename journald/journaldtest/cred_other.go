//go:build !linux

package journaldtest

import (
	"errors"
	"net"
)

// journald runs on Linux only.
func credentials(int) []byte { return []byte{} }

func sendmsg(*net.UnixConn, []byte, []byte) error {
	return errors.New("journald runs on Linux only")
}
