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
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	// utime and stime are fields 14 and 15.
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

// Descendants returns the processes pid started that are alive now, their
// children, and so on (from /proc/PID/task/*/children), parents first.
func Descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}

// TreeCPU returns the user and system time of pid and of every process it
// started: its descendants alive now, and the children each of them (pid
// included) has waited for (cutime, cstime). A child that has ended but
// was not yet waited for is missed. The second value is the part of the
// total spent outside pid itself.
func TreeCPU(pid int) (user, sys, children time.Duration, err error) {
	for i, p := range append([]int{pid}, Descendants(pid)...) {
		f, err := statFields(p)
		if err != nil {
			if i == 0 {
				return 0, 0, 0, err
			}
			continue // ended meanwhile
		}
		var t [4]time.Duration // utime, stime, cutime, cstime: fields 14-17
		for j := range t {
			v, err := strconv.ParseInt(f[11+j], 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("parse /proc/%d/stat: field %d %q", p, 14+j, f[11+j])
			}
			t[j] = time.Duration(v) * clockTick
		}
		user += t[0] + t[2]
		sys += t[1] + t[3]
		if i == 0 {
			children += t[2] + t[3]
		} else {
			children += t[0] + t[1] + t[2] + t[3]
		}
	}
	return user, sys, children, nil
}

// TreeMemory returns the sum over pid and its descendants alive now of the
// resident set size now (VmRSS), of its peak so far (VmHWM: the peaks of
// different processes need not have coincided, so this bounds the peak of
// the sum from above) and of the anonymous part (RssAnon), in bytes.
func TreeMemory(pid int) (rss, peak, anon int64, err error) {
	for i, p := range append([]int{pid}, Descendants(pid)...) {
		v, err := status(p, "VmRSS", "VmHWM", "RssAnon")
		if err != nil {
			if i == 0 {
				return 0, 0, 0, err
			}
			continue
		}
		rss, peak, anon = rss+v[0], peak+v[1], anon+v[2]
	}
	return rss, peak, anon, nil
}

// statFields returns the fields of /proc/PID/stat after the command name,
// starting at field 3 (state).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name (field 2) may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}
