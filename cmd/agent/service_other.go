//go:build !windows

package main

import (
	"fmt"
	"io"
)

// defaultConfig is where `logpump run` reads its configuration unless
// -config says otherwise.
const defaultConfig = "/etc/logpump/config.yaml"

// runService: the service subcommand is for Windows; elsewhere the service
// manager is systemd (systemd/logpump.service) or launchd
// (packaging/macos/io.logpump.agent.plist).
func runService(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "logpump service: Windows only; use the systemd unit on Linux or the launchd plist on macOS")
	return 2
}
