package exepages

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release drops the process's mappings of its executable's read-only pages
// (see the package comment). It is safe to call at any time; it is meant to
// be called once, after start-up and before the pipeline runs.
func Release() (Stats, error) {
	var st Stats
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return st, fmt.Errorf("stat executable: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return st, fmt.Errorf("read mappings: %w", err)
	}
	st.RSSBefore = rssFile()
	for line := range strings.Lines(string(maps)) {
		m, ok := parseMapping(line)
		if !ok || m.writable || !m.private || m.inode != exe.Ino ||
			m.major != unix.Major(exe.Dev) || m.minor != unix.Minor(exe.Dev) {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED)
		if errno != 0 {
			return st, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		st.Mappings++
		st.Advised += int64(m.end - m.start)
	}
	st.RSSAfter = rssFile()
	return st, nil
}

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end   uintptr
	writable     bool
	private      bool
	major, minor uint32
	inode        uint64
}

// parseMapping reads "start-end perms offset major:minor inode [path]".
func parseMapping(line string) (mapping, bool) {
	var m mapping
	f := strings.Fields(line)
	if len(f) < 5 || len(f[1]) < 4 {
		return m, false
	}
	start, end, ok := strings.Cut(f[0], "-")
	if !ok {
		return m, false
	}
	lo, err1 := strconv.ParseUint(start, 16, 64)
	hi, err2 := strconv.ParseUint(end, 16, 64)
	major, minor, ok := strings.Cut(f[3], ":")
	maj, err3 := strconv.ParseUint(major, 16, 32)
	min, err4 := strconv.ParseUint(minor, 16, 32)
	ino, err5 := strconv.ParseUint(f[4], 10, 64)
	if !ok || err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || hi <= lo {
		return m, false
	}
	m.start, m.end = uintptr(lo), uintptr(hi)
	m.writable = f[1][1] == 'w'
	m.private = f[1][3] == 'p'
	m.major, m.minor, m.inode = uint32(maj), uint32(min), ino
	return m, true
}

// rssFile returns the process's resident file-backed bytes, or -1.
func rssFile() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
