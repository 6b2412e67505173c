package journald

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
)

// How the journal is read (Options.Reader).
const (
	// ReaderAuto reads the journal files natively and switches to
	// journalctl when a file has a format the native reader does not know
	// and journalctl is installed.
	ReaderAuto = "auto"
	// ReaderNative reads the journal files natively only.
	ReaderNative = "native"
	// ReaderJournalctl runs journalctl --output=json.
	ReaderJournalctl = "journalctl"
)

// Where a journal read for the first time is read from.
const (
	StartEnd       = "end"
	StartBeginning = "beginning"
)

// Options are the settings of one journald source. Decode them from YAML
// with config.Decode over [DefaultOptions], then call [Options.Validate].
type Options struct {
	// Units, Identifiers and Matches select entries: journalctl's --unit,
	// --identifier and FIELD=value matches. The units listed are
	// alternatives, as are the identifiers and the matches of one field;
	// units, identifiers, priority and the matches of different fields must
	// all hold. None: every entry.
	Units       []string `yaml:"units"`
	Identifiers []string `yaml:"identifiers"`
	Matches     []string `yaml:"matches"`
	// Priority keeps entries of this priority or a more severe one: a
	// syslog name (emerg, alert, crit, err, warning, notice, info, debug)
	// or 0-7. Empty: every priority.
	Priority string `yaml:"priority"`
	// Namespace reads the journal of a journald namespace
	// (systemd-journald@NAME) instead of the default one.
	Namespace string `yaml:"namespace"`
	// Directory reads the journal files of a directory (the host's
	// /var/log/journal mounted into a container) instead of the system's.
	Directory string `yaml:"directory"`
	// Files reads these journal files (globs allowed: journalctl --file)
	// instead of the system's journal.
	Files []string `yaml:"files"`
	// Dmesg reads kernel messages only (the match _TRANSPORT=kernel, as
	// journalctl --dmesg, without the current-boot limit it implies).
	Dmesg bool `yaml:"dmesg"`
	// Fields, when set, are the only journal fields kept as attributes
	// (MESSAGE, the time and PRIORITY are always read). Empty: every field.
	Fields []string `yaml:"fields"`
	// StartAt is where a journal this source never read is read from:
	// "end" (default: entries written from now on) or "beginning" (every
	// stored entry). Afterwards reading resumes after the last
	// acknowledged entry, whatever StartAt says.
	StartAt string `yaml:"start_at"`
	// Reader is how the journal is read: "auto" (default: the native
	// reader, journalctl for files of a format it does not know), "native"
	// (journal files read by logpump itself, no journalctl needed) or
	// "journalctl".
	Reader string `yaml:"reader"`
	// Journalctl is the journalctl program. Default "journalctl" (found in
	// PATH).
	Journalctl string `yaml:"journalctl"`
	// MaxEntryBytes bounds one entry as journalctl prints it (JSON). A
	// longer entry becomes a record holding its first MaxEntryBytes bytes,
	// flagged truncated. Default 1MiB.
	MaxEntryBytes config.ByteSize `yaml:"max_entry_bytes"`
	// MaxBatchRecords and MaxBatchBytes bound one yielded batch. Defaults
	// 250 and 256KiB.
	MaxBatchRecords int             `yaml:"max_batch_records"`
	MaxBatchBytes   config.ByteSize `yaml:"max_batch_bytes"`
	// FlushTimeout is how long a batch that is not full waits for more
	// entries before it is yielded. Default 100ms.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// RestartDelay is the first wait before journalctl is started again
	// after it failed; the wait doubles up to a minute while it keeps
	// failing. Default 1s.
	RestartDelay time.Duration `yaml:"restart_delay"`
	// TickInterval: after yielding entries, an idle source yields an empty
	// tick batch this often while some of them are unacknowledged, so that
	// stages holding an open event (multiline) can flush it. Default 200ms.
	TickInterval time.Duration `yaml:"-"`
}

// DefaultOptions returns the defaults of every option.
func DefaultOptions() Options {
	return Options{
		StartAt:         StartEnd,
		Reader:          ReaderAuto,
		Journalctl:      "journalctl",
		MaxEntryBytes:   1 << 20,
		MaxBatchRecords: 250,
		MaxBatchBytes:   256 << 10,
		FlushTimeout:    100 * time.Millisecond,
		RestartDelay:    time.Second,
		TickInterval:    200 * time.Millisecond,
	}
}

var priorities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// Validate checks the options; the error names each bad key (config.Fieldf).
func (o Options) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, config.Fieldf(key, format, args...))
	}
	for _, list := range []struct {
		key    string
		values []string
	}{{"units", o.Units}, {"identifiers", o.Identifiers}} {
		for i, v := range list.values {
			if v == "" || strings.ContainsAny(v, "\n") {
				bad(list.key+"."+strconv.Itoa(i), "must be a non-empty single-line name; got %q", v)
			}
		}
	}
	for i, m := range o.Matches {
		if err := checkMatch(m); err != nil {
			bad("matches."+strconv.Itoa(i), "%v", err)
		}
	}
	if o.Priority != "" {
		if _, ok := priority(o.Priority); !ok {
			bad("priority", "must be one of %s or 0-7; got %q", strings.Join(priorities, ", "), o.Priority)
		}
	}
	if strings.ContainsAny(o.Namespace, "/\n") {
		bad("namespace", "must be a namespace name; got %q", o.Namespace)
	}
	if o.Directory != "" && !filepath.IsAbs(o.Directory) {
		bad("directory", "must be an absolute path; got %q", o.Directory)
	}
	if o.Directory != "" && o.Namespace != "" {
		bad("directory", "give either directory or namespace, not both")
	}
	for i, f := range o.Files {
		if !filepath.IsAbs(f) {
			bad("files."+strconv.Itoa(i), "must be an absolute path or glob; got %q", f)
		}
	}
	if len(o.Files) > 0 && (o.Directory != "" || o.Namespace != "") {
		bad("files", "give one of files, directory and namespace")
	}
	for i, f := range o.Fields {
		if err := checkMatch(f + "=x"); err != nil {
			bad("fields."+strconv.Itoa(i), "%v", err)
		}
	}
	switch o.StartAt {
	case StartEnd, StartBeginning:
	default:
		bad("start_at", "must be %q or %q; got %q", StartEnd, StartBeginning, o.StartAt)
	}
	switch o.Reader {
	case ReaderAuto, ReaderNative, ReaderJournalctl:
	default:
		bad("reader", "must be %q, %q or %q; got %q", ReaderAuto, ReaderNative, ReaderJournalctl, o.Reader)
	}
	if o.Journalctl == "" {
		bad("journalctl", "must not be empty")
	}
	if o.MaxEntryBytes < 64 || o.MaxEntryBytes > 1<<30 {
		bad("max_entry_bytes", "must be between 64B and 1GiB; got %v", o.MaxEntryBytes)
	}
	if o.MaxBatchRecords < 1 {
		bad("max_batch_records", "must be at least 1; got %d", o.MaxBatchRecords)
	}
	if o.MaxBatchBytes < 1 {
		bad("max_batch_bytes", "must be at least 1B; got %v", o.MaxBatchBytes)
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"flush_timeout", o.FlushTimeout}, {"restart_delay", o.RestartDelay}, {"tick_interval", o.TickInterval}} {
		if d.d <= 0 {
			bad(d.key, "must be positive; got %v", d.d)
		}
	}
	return errors.Join(errs...)
}

// checkMatch checks a journalctl match FIELD=value: the field is upper
// case letters, digits and underscores, not starting with a digit.
func checkMatch(m string) error {
	field, _, ok := strings.Cut(m, "=")
	if !ok || field == "" {
		return errors.New("must be FIELD=value, e.g. _SYSTEMD_UNIT=nginx.service; got " + strconv.Quote(m))
	}
	for i, c := range field {
		if !(c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9' && i > 0) {
			return errors.New("field " + strconv.Quote(field) + ": only A-Z, 0-9 and _ (not first a digit) are journal field names")
		}
	}
	if strings.ContainsRune(m, '\n') {
		return errors.New("must be one line; got " + strconv.Quote(m))
	}
	return nil
}

// priority parses a priority name or number.
func priority(s string) (int, bool) {
	for i, p := range priorities {
		if s == p {
			return i, true
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && n <= 7
}
