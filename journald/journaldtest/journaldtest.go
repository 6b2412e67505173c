// Package journaldtest runs a real systemd-journald for tests: a standalone
// instance serving its own journal namespace, fed through its native
// protocol socket.
package journaldtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Binary is where Debian installs systemd-journald.
const Binary = "/lib/systemd/systemd-journald"

// Journald is a running systemd-journald serving Namespace.
type Journald struct {
	Namespace string
	conn      *net.UnixConn
	socket    string
	dirs      []string // where journald keeps the namespace's files: persistent, or volatile
	skip      func(format string, args ...any)
}

// RemoteBinary is where Debian's systemd-journal-remote installs the
// program that writes journal files from the export format.
const RemoteBinary = "/lib/systemd/systemd-journal-remote"

// AddEarlierBoot adds a journal file to the namespace holding one entry
// per message (with SYSLOG_IDENTIFIER identifier), of another boot than the current one and older than every
// entry journald wrote: what a journal holds of the boot before a reboot.
// It skips the test (or fails it, see Start) without systemd-journal-remote.
func (j *Journald) AddEarlierBoot(t testing.TB, bootID, identifier string, messages ...string) {
	t.Helper()
	if _, err := os.Stat(RemoteBinary); err != nil {
		j.skip("systemd-journal-remote not installed: %v", err)
	}
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	start := time.Now().Add(-time.Hour).UnixMicro()
	for i, m := range messages {
		fmt.Fprintf(&export, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_MACHINE_ID=%s\nSYSLOG_IDENTIFIER=%s\nMESSAGE=%s\n\n",
			start+int64(i), 1000+i, bootID, strings.TrimSpace(string(mid)), identifier, m)
	}
	dir := j.Dir(t)
	cmd := exec.Command(RemoteBinary, "-o", filepath.Join(dir, "remote-earlier.journal"), "-")
	cmd.Stdin = &export
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v: %s", err, out)
	}
}

// Start runs systemd-journald for a new namespace until the test ends, and
// removes the namespace's journal files then. It skips the test when
// journald or journalctl is missing or the test does not run as root
// (journald writes under /var/log/journal), unless LOGPUMP_REQUIRE_JOURNALD
// is set, when it fails instead.
func Start(t testing.TB) *Journald {
	t.Helper()
	return StartEnv(t)
}

// StartEnv is Start with environment variables added to journald's, e.g.
// SYSTEMD_JOURNAL_COMPACT=0 for journal files in the regular layout.
func StartEnv(t testing.TB, env ...string) *Journald {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("LOGPUMP_REQUIRE_JOURNALD") != "" {
		skip = t.Fatalf
	}
	if _, err := os.Stat(Binary); err != nil {
		skip("systemd-journald not installed: %v", err)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		skip("journalctl not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		skip("systemd-journald needs root")
	}
	var id [4]byte
	rand.Read(id[:])
	ns := "lptest" + hex.EncodeToString(id[:])
	// No rate limit: tests send thousands of entries at once.
	conf := "/etc/systemd/journald@" + ns + ".conf"
	if err := os.WriteFile(conf, []byte("[Journal]\nRateLimitBurst=0\n"), 0o644); err != nil {
		t.Fatalf("write %s: %v", conf, err)
	}
	t.Cleanup(func() { os.Remove(conf) })
	cmd := exec.Command(Binary, ns)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start systemd-journald: %v", err)
	}
	runDir := "/run/systemd/journal." + ns
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, d := range []string{"/var/log/journal", "/run/log/journal"} {
		dirs = append(dirs, filepath.Join(d, strings.TrimSpace(string(mid))+"."+ns))
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(runDir)
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	})
	socket := filepath.Join(runDir, "socket")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-journald %s did not create %s in 10s: %s", ns, socket, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatalf("connect to journald: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Journald{Namespace: ns, conn: conn, socket: socket, dirs: dirs, skip: skip}
}

// Dir returns the directory holding the namespace's journal files (the
// persistent one when journald created it, else the volatile one).
func (j *Journald) Dir(t testing.TB) string {
	t.Helper()
	// journald creates its directory after its socket (Start waits for
	// that): wait for it in turn.
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, d := range j.dirs {
			if _, err := os.Stat(d); err == nil {
				return d
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("journald keeps no journal in %v after 10s", j.dirs)
	return ""
}

// Rotate makes journald archive its journal file and start a new one.
func (j *Journald) Rotate(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("journalctl", "--namespace="+j.Namespace, "--rotate").CombinedOutput(); err != nil {
		t.Fatalf("journalctl --rotate: %v: %s", err, out)
	}
}

// Send writes one entry with the given fields (FIELD, value pairs) through
// the native protocol. Values may hold newlines.
func (j *Journald) Send(t testing.TB, fields ...string) {
	t.Helper()
	j.send(t, nil, fields...)
}

// SendAs is Send with the sender's credentials claimed to be uid's (the
// test runs as root, which may claim any): journald writes the entries of
// a uid of 1000 or more to user-UID.journal.
func (j *Journald) SendAs(t testing.TB, uid int, fields ...string) {
	t.Helper()
	j.send(t, credentials(uid), fields...)
}

func (j *Journald) send(t testing.TB, oob []byte, fields ...string) {
	t.Helper()
	if len(fields)%2 != 0 {
		t.Fatalf("Send: odd number of arguments")
	}
	var b bytes.Buffer
	for i := 0; i < len(fields); i += 2 {
		k, v := fields[i], fields[i+1]
		if !strings.Contains(v, "\n") {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			continue
		}
		b.WriteString(k + "\n")
		var n [8]byte
		for i := range 8 {
			n[i] = byte(uint64(len(v)) >> (8 * i))
		}
		b.Write(n[:])
		b.WriteString(v + "\n")
	}
	write := func() error {
		if oob == nil {
			_, err := j.conn.Write(b.Bytes())
			return err
		}
		return sendmsg(j.conn, b.Bytes(), oob)
	}
	for attempt := 0; ; attempt++ {
		err := write()
		if err == nil {
			return
		}
		// The socket's queue is full while journald writes: wait.
		if attempt > 1000 {
			t.Fatalf("send to journald: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Count returns how many entries journalctl finds with field=value: how a
// test waits until journald wrote what it was sent.
func (j *Journald) Count(t testing.TB, match string) int {
	t.Helper()
	out, err := exec.Command("journalctl", "--namespace="+j.Namespace, "--output=json", "--no-pager", "--quiet", match).Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	return bytes.Count(out, []byte("\n"))
}

// WaitFor waits until journalctl finds n entries with match (FIELD=value).
func (j *Journald) WaitFor(t testing.TB, match string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := j.Count(t, match)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("journald holds %d entries with %s after 30s, want %d", got, match, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RotateAndVacuum makes journald start a new journal file (journalctl
// --rotate) and deletes every archived one (--vacuum-files=1): the entries
// written so far are gone, as a vacuum by size or age removes them.
func (j *Journald) RotateAndVacuum(t testing.TB) {
	t.Helper()
	for _, args := range [][]string{{"--rotate"}, {"--vacuum-files=1"}} {
		cmd := exec.Command("journalctl", append([]string{"--namespace=" + j.Namespace}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("journalctl %v: %v: %s", args, err, out)
		}
	}
}
