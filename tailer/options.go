package tailer

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
)

// Options are the settings of one file source. Decode them from YAML with
// config.Decode over [DefaultOptions], then call [Options.Validate].
type Options struct {
	// Include lists the glob patterns of the files to read. Patterns use
	// filepath.Match syntax on absolute paths; a path element "**" also
	// matches zero or more directories (e.g. /var/log/**/*.log). Symbolic
	// links are followed: a file is identified by what it points to.
	// Required.
	Include []string `yaml:"include"`
	// Exclude lists patterns (same syntax) of paths not to read even when
	// they match Include.
	Exclude []string `yaml:"exclude"`
	// StartAt is where a file found by the first scan is read from when no
	// checkpoint knows it and this source has no checkpoint for any matched
	// file (a first run): "end" (default) or "beginning". Files that appear
	// later, or that are new after a restart, are read from the beginning.
	StartAt string `yaml:"start_at"`
	// ScanInterval is the period of the glob scan, the source of truth for
	// which files exist. A new file is found within one interval (sooner when
	// a directory watch reports it). Default 1s.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// PollInterval is how often files that no directory watch covers
	// (renamed or deleted files still being drained, directories whose watch
	// failed) are checked for growth. Default 250ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// FlushTimeout is how long a last line without a newline waits for the
	// rest; after it the partial line is emitted flagged Unterminated.
	// Default 500ms.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// RotateWait is how long a file that was renamed, deleted or no longer
	// matches is kept open after it was read to its end, for writers that
	// still write through an old descriptor. Default 5s.
	RotateWait time.Duration `yaml:"rotate_wait"`
	// TickInterval: when the tailer has yielded data and then finds nothing
	// to read for this long, it yields one empty tick batch so that stages
	// holding an open event (multiline) can flush it. Default 200ms.
	TickInterval time.Duration `yaml:"tick_interval"`
	// WriteWindow is the least time between two reads of the directory
	// watches' write events. The first write after a quiet period is read
	// at once; the writes during the window after it are read together at
	// its end, so that files receiving a trickle of lines are read once per
	// window each, in one pass, instead of once per line. It adds at most
	// this much latency to a line; a backlog is read without waiting (a
	// file is read on until its end). 0 reads every event as it comes.
	// Default 1s.
	WriteWindow time.Duration `yaml:"write_window"`
	// MaxLineBytes bounds a line, counted in file bytes. A longer line keeps
	// its first MaxLineBytes bytes, is flagged Truncated, and the rest of it
	// is skipped. Default 1MiB.
	MaxLineBytes config.ByteSize `yaml:"max_line_bytes"`
	// MaxBatchRecords and MaxBatchBytes bound one yielded batch.
	// Defaults 250 and 256KiB: exporters group batches into requests of
	// their own size, and batches this small keep less parsed data waiting
	// in export queues (6 MiB less peak RSS on JSON lines than 1000).
	MaxBatchRecords int             `yaml:"max_batch_records"`
	MaxBatchBytes   config.ByteSize `yaml:"max_batch_bytes"`
	// FingerprintBytes is how many leading bytes identify a file's content
	// together with its device and inode. Default 1024.
	FingerprintBytes int `yaml:"fingerprint_bytes"`
	// MaxOpenFiles bounds the descriptors held for matched files; idle files
	// are closed and reopened when they change. Files being drained after a
	// rename or deletion are never closed early and are not counted.
	// Default 1024.
	MaxOpenFiles int `yaml:"max_open_files"`
	// Encoding of the files: utf-8 (default), utf-16le, utf-16be, latin-1.
	// Bodies are always UTF-8.
	Encoding string `yaml:"encoding"`
	// IncludeFilePath and IncludeFileName add the attributes log.file.path
	// and log.file.name to every record. Only the name by default, as the
	// OpenTelemetry Collector's filelog receiver does: the path is some 60
	// bytes more per record on the wire and in the backend.
	IncludeFilePath bool `yaml:"include_file_path"`
	IncludeFileName bool `yaml:"include_file_name"`
	// ExcludeOlderThan skips files whose modification time is older than
	// this when they are first found; 0 (default) reads them all.
	ExcludeOlderThan time.Duration `yaml:"exclude_older_than"`
	// Watch uses directory watches (inotify) to notice writes and new files
	// at once. Without it every open file is polled each PollInterval and
	// new files are found by the scan; use false on network filesystems,
	// where watches report nothing. Default true.
	Watch bool `yaml:"watch"`
	// MaxWatches bounds the directories one source watches; past it the
	// files of further directories are polled and a warning says so (the
	// kernel's fs.inotify.max_user_watches is shared by every program of
	// the user). Default 8192.
	MaxWatches int `yaml:"max_watches"`
	// AllowPseudoFilesystems lets patterns reach /proc, /sys and /dev
	// (refused otherwise: "/**" would walk and watch every process and
	// device of the host).
	AllowPseudoFilesystems bool `yaml:"allow_pseudo_filesystems"`
	// Compression says what to do with compressed files the patterns match
	// (rotated logs compressed by logrotate, archives), in the formats known
	// by their first bytes: gzip, zstd, xz, bzip2. "none" (default) skips
	// them; "gzip" reads those named *.gz, decompressed; "auto" reads every
	// one, decompressed. A compressed file is read once, as a complete file,
	// and checkpointed by identity like the others; one whose content starts
	// like a file already read (logrotate's compress of a followed file) is
	// read from the offset already read of that file.
	Compression string `yaml:"compression"`
	// DeleteAfterRead removes a file once it was read to its end, stayed
	// unchanged for RotateWait and every line of it was acknowledged. Only
	// for files that are complete when they appear (spool directories).
	DeleteAfterRead bool `yaml:"delete_after_read"`
	// FollowRotated finds the unread end of a file wherever rotation moved
	// it out of the patterns: renamed to a name no pattern matches, copied
	// (copytruncate) or compressed (gzip). It is looked for in the
	// directories the patterns lead to and in RotatedDirs, by identity
	// (device and inode) or by the fingerprint of its first bytes, after a
	// restart and when a file is truncated before it was read to its end.
	// Only the bytes past the acknowledged offset are read, whatever
	// Exclude and Compression say of the rotated name. Default true.
	FollowRotated bool `yaml:"follow_rotated"`
	// RotatedDirs are more directories rotated files are moved to
	// (logrotate's olddir), absolute. Used with FollowRotated.
	RotatedDirs []string `yaml:"rotated_dirs"`
}

// maxWriteWindow bounds Options.WriteWindow: the latency it adds.
const maxWriteWindow = 5 * time.Second

// Start positions for Options.StartAt.
const (
	StartEnd       = "end"
	StartBeginning = "beginning"
)

// Encodings accepted by Options.Encoding.
var encodings = []string{"utf-8", "utf-16le", "utf-16be", "latin-1"}

// DefaultOptions returns the options with every default set.
func DefaultOptions() Options {
	return Options{
		StartAt:          StartEnd,
		ScanInterval:     time.Second,
		PollInterval:     250 * time.Millisecond,
		FlushTimeout:     500 * time.Millisecond,
		RotateWait:       5 * time.Second,
		TickInterval:     200 * time.Millisecond,
		WriteWindow:      time.Second,
		MaxLineBytes:     1 << 20,
		MaxBatchRecords:  250,
		MaxBatchBytes:    256 << 10,
		FingerprintBytes: 1024,
		MaxOpenFiles:     1024,
		Encoding:         "utf-8",
		Compression:      CompressionNone,
		IncludeFilePath:  false,
		IncludeFileName:  true,
		Watch:            true,
		MaxWatches:       8192,
		FollowRotated:    true,
	}
}

// Validate reports every invalid option as a config.Fieldf error, joined.
func (o Options) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, config.Fieldf(key, format, args...))
	}
	if len(o.Include) == 0 {
		bad("include", "at least one pattern is required")
	}
	for _, list := range []struct {
		key      string
		patterns []string
	}{{"include", o.Include}, {"exclude", o.Exclude}} {
		for i, p := range list.patterns {
			key := list.key + "." + strconv.Itoa(i)
			switch {
			case !filepath.IsAbs(p):
				bad(key, "pattern %q must be an absolute path", p)
			case strings.Contains(p, "**") && !doubleStarOK(p):
				bad(key, "pattern %q: \"**\" must be a whole path element", p)
			case list.key == "include" && !o.AllowPseudoFilesystems && reachesPseudoFS(p) != "":
				bad(key, "pattern %q reaches %s, a pseudo filesystem (every process or device of the host); narrow it, or set allow_pseudo_filesystems: true", p, reachesPseudoFS(p))
			default:
				if _, err := filepath.Match(p, ""); err != nil {
					bad(key, "pattern %q: %v", p, err)
				}
			}
		}
	}
	for i, d := range o.RotatedDirs {
		if !filepath.IsAbs(d) {
			bad("rotated_dirs."+strconv.Itoa(i), "directory %q must be an absolute path", d)
		}
	}
	switch o.StartAt {
	case StartEnd, StartBeginning:
	default:
		bad("start_at", "must be %q or %q; got %q", StartEnd, StartBeginning, o.StartAt)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be positive; got %v", d)
		}
	}
	atLeast := func(key string, d, floor time.Duration) {
		if d < floor {
			bad(key, "must be at least %v; got %v", floor, d)
		}
	}
	atLeast("scan_interval", o.ScanInterval, minInterval)
	atLeast("poll_interval", o.PollInterval, minInterval)
	if o.MaxWatches < 1 {
		bad("max_watches", "must be at least 1; got %d", o.MaxWatches)
	}
	positive("flush_timeout", o.FlushTimeout)
	positive("tick_interval", o.TickInterval)
	if o.RotateWait < 0 {
		bad("rotate_wait", "must not be negative; got %v", o.RotateWait)
	}
	if o.WriteWindow < 0 || o.WriteWindow > maxWriteWindow {
		bad("write_window", "must be between 0 and %v; got %v", maxWriteWindow, o.WriteWindow)
	}
	if o.ExcludeOlderThan < 0 {
		bad("exclude_older_than", "must not be negative; got %v", o.ExcludeOlderThan)
	}
	if o.MaxLineBytes < 16 || o.MaxLineBytes > 1<<30 {
		bad("max_line_bytes", "must be between 16B and 1GiB; got %v", o.MaxLineBytes)
	}
	if o.MaxBatchRecords < 1 {
		bad("max_batch_records", "must be at least 1; got %d", o.MaxBatchRecords)
	}
	if o.MaxBatchBytes < 1 {
		bad("max_batch_bytes", "must be at least 1B; got %v", o.MaxBatchBytes)
	}
	if o.FingerprintBytes < 16 || o.FingerprintBytes > 1<<20 {
		bad("fingerprint_bytes", "must be between 16 and 1048576; got %d", o.FingerprintBytes)
	}
	if o.MaxOpenFiles < 1 {
		bad("max_open_files", "must be at least 1; got %d", o.MaxOpenFiles)
	}
	if o.DeleteAfterRead && o.StartAt == StartEnd {
		bad("delete_after_read", "needs start_at: %s (a file skipped to its end would be deleted unread)", StartBeginning)
	}
	switch o.Compression {
	case CompressionNone, CompressionGzip, CompressionAuto:
	default:
		bad("compression", "must be %s, %s or %s; got %q", CompressionNone, CompressionGzip, CompressionAuto, o.Compression)
	}
	known := false
	for _, e := range encodings {
		known = known || o.Encoding == e
	}
	if !known {
		bad("encoding", "must be one of %s; got %q", strings.Join(encodings, ", "), o.Encoding)
	}
	return errors.Join(errs...)
}

// minInterval is the smallest scan_interval and poll_interval: shorter
// ones spend the CPU on stat calls and find nothing sooner.
const minInterval = 10 * time.Millisecond

// pseudoFS are the directories of kernel pseudo filesystems, which hold no
// logs and are huge to walk.
var pseudoFS = []string{"/proc", "/sys", "/dev"}

// reachesPseudoFS returns the pseudo filesystem directory pattern p (an
// absolute pattern) could match or walk into, or "": p is one of them or
// below one, "/" itself, or its first element is "**" or a wildcard
// matching one of them ("/*/x.log" lists /proc).
func reachesPseudoFS(p string) string {
	p = filepath.Clean(p)
	if p == "/" {
		return "/ (and so /proc, /sys, /dev)"
	}
	for _, d := range pseudoFS {
		if p == d || strings.HasPrefix(p, d+"/") {
			return d
		}
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	for _, d := range pseudoFS {
		if first == "**" {
			return d
		}
		if ok, _ := filepath.Match(first, d[1:]); ok {
			return d
		}
	}
	return ""
}

// doubleStarOK reports whether every "**" in p is a whole path element.
func doubleStarOK(p string) bool {
	for _, elem := range strings.Split(p, string(filepath.Separator)) {
		if strings.Contains(elem, "**") && elem != "**" {
			return false
		}
	}
	return true
}
