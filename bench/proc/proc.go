// Package proc reads a running process's CPU time and memory from /proc.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ).
var clockTick = func() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if hz, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && hz > 0 {
		return time.Second / time.Duration(hz)
	}
	return 10 * time.Millisecond // USER_HZ is 100 on every Linux port Go supports
}()

// CPU returns the user and system time the process pid has used so far,
// all threads included, at the resolution of USER_HZ (usually 10 ms).
func CPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start at
	// field 3 (state). utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut) * clockTick, time.Duration(st) * clockTick, nil
}

// Memory returns the process's resident set size now (VmRSS) and at its
// peak so far (VmHWM), in bytes.
func Memory(pid int) (rss, peak int64, err error) {
	v, err := status(pid, "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}

// Anon returns the process's anonymous resident memory now (RssAnon): its
// heap, stacks and other private pages, without the pages of its executable
// and libraries, which the page cache shares with other processes.
func Anon(pid int) (int64, error) {
	v, err := status(pid, "RssAnon")
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// Resident returns the process's resident set size now (VmRSS) and the
// anonymous part of it (RssAnon), in bytes, from one read of its status.
func Resident(pid int) (rss, anon int64, err error) {
	v, err := status(pid, "VmRSS", "RssAnon")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}

// status reads the named "NAME: N kB" fields of /proc/PID/status, in bytes,
// in the order of names.
func status(pid int, names ...string) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	v := make([]int64, len(names))
	found := 0
	for line := range strings.Lines(string(b)) {
		name, val, ok := strings.Cut(line, ":")
		i := slices.Index(names, name)
		if !ok || i < 0 {
			continue
		}
		f := strings.Fields(val) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("parse /proc/%d/status: %s", pid, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/%d/status: %w", pid, err)
		}
		v[i] = kb << 10
		found++
	}
	if found < len(names) {
		return nil, fmt.Errorf("/proc/%d/status lacks one of %v", pid, names)
	}
	return v, nil
}
