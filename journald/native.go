package journald

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/journald/jfile"
)

// pollInterval is how often the native reader looks at the journal's
// files without being woken by a change: the truth when the watch misses
// one or cannot be set.
const pollInterval = time.Second

// scanInterval is how often the native reader lists the journal's
// directories when the watch reports no file created or removed.
const scanInterval = 10 * time.Second

// errFallback says that the native reader met a journal file of a format
// it does not read, and the source reads through journalctl instead.
var errFallback = errors.New("journal file format not supported by the native reader")

// journalDirs returns the directories of the journal the options select,
// or the globs of its files.
func (s *Source) journalDirs() (dirs, globs []string) {
	o := &s.opts
	switch {
	case len(o.Files) > 0:
		return nil, o.Files
	case o.Directory != "":
		return []string{o.Directory}, nil
	}
	mid := machineID()
	suffix := mid
	if o.Namespace != "" {
		suffix = mid + "." + o.Namespace
	}
	return []string{filepath.Join("/var/log/journal", suffix), filepath.Join("/run/log/journal", suffix)}, nil
}

func machineID() string {
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// nativeLoop reads the journal files itself until ctx ends or the
// consumer stops. With reader auto it returns true when a file needs
// journalctl (a format the native reader does not know) and journalctl is
// installed: the caller goes on with it from the same cursor.
func (r *run) nativeLoop() (fallback bool) {
	s := r.s
	pos, cursor, known := s.cp.ResumeCursor(s.key)
	r.pos, r.cursor = pos, cursor
	delay := s.opts.RestartDelay
	for r.ctx.Err() == nil && !r.stopped {
		before := r.pos
		err := r.native(&known)
		if r.stopped || r.ctx.Err() != nil {
			return false
		}
		if errors.Is(err, errFallback) {
			s.log.Warn("the native journal reader cannot read a journal file; reading through journalctl instead", "source", s.name, "err", err)
			return true
		}
		if r.pos > before {
			delay = s.opts.RestartDelay
		}
		r.failed(err, &delay)
	}
	return false
}

// native reads the journal's files from after r.cursor until an error, ctx
// ends or the consumer stops.
func (r *run) native(known *bool) error {
	s := r.s
	dirs, globs := s.journalDirs()
	var j *jfile.Journal
	if len(globs) > 0 {
		j = jfile.Files(globs...)
	} else {
		j = jfile.Directories(dirs...)
	}
	defer j.Close()
	// With reader auto a file of an unknown format hands the journal to
	// journalctl, when there is one; else it is skipped as with native.
	fallBack := s.opts.Reader == ReaderAuto
	if fallBack {
		_, err := exec.LookPath(s.opts.Journalctl)
		fallBack = err == nil
	}
	var unsupported error
	j.OnSkip = func(path string, err error) {
		s.stats.skipped.Add(1)
		var ue *jfile.UnsupportedError
		if errors.As(err, &ue) && unsupported == nil {
			unsupported = fmt.Errorf("%w: %w", errFallback, err)
		}
		s.log.Warn("skipping a journal file the native reader cannot read (damaged, or of a newer format): its entries are not read", "source", s.name, "file", path, "err", err)
	}
	w := newWatch(dirs, globs)
	defer w.close()
	if err := j.Scan(); err != nil {
		return err
	}
	if unsupported != nil && fallBack {
		return unsupported
	}
	s.cp.Touch(s.key, event.Fingerprint{}, s.path, 0)
	r.touched = time.Now()
	switch {
	case r.cursor != "":
		loc, err := jfile.ParseCursor(r.cursor)
		if err != nil {
			s.log.Warn("the checkpoint's journal cursor cannot be parsed; reading from the journal's oldest entry", "source", s.name, "err", err)
			r.resumeAt = r.cursor
		} else if !j.Seek(loc) {
			r.resumeAt = r.cursor // the gap is reported with the first entry read
		}
	case !*known && s.opts.StartAt == StartEnd:
		j.SeekTail()
		c := ""
		if last, ok := j.Last(); ok {
			c = last.Cursor()
		}
		s.cp.BeginCursor(s.key, s.path, r.pos, c)
		r.cursor, *known = c, true
	}
	flt := newFilter(&s.opts)
	n := &nativeRead{r: r, j: j, flt: flt}
	defer n.drop()
	lastScan := time.Now()
	for {
		more, err := n.read()
		if err != nil || r.stopped || r.ctx.Err() != nil {
			n.flush()
			return err
		}
		if unsupported != nil && fallBack {
			n.flush()
			return unsupported
		}
		if more {
			continue
		}
		// Caught up: yield a batch that is due, wait for a change.
		now := time.Now()
		wait := pollInterval
		if n.b != nil {
			if !now.Before(n.flushAt) {
				if !n.flush() {
					return nil
				}
				if !r.idle(s.opts.TickInterval) {
					return nil
				}
				continue
			}
			wait = min(wait, n.flushAt.Sub(now))
		} else {
			if !r.idle(s.opts.TickInterval) {
				return nil
			}
			if !s.noTicks && !r.lastData.IsZero() && s.cp.InFlight(s.name) > 0 {
				wait = min(wait, s.opts.TickInterval)
			}
		}
		scan := w.wait(r.ctx, wait)
		if r.ctx.Err() != nil {
			n.flush()
			return nil
		}
		if scan || w.w == nil || j.Pending() || time.Since(lastScan) >= scanInterval {
			if err := j.Scan(); err != nil {
				n.flush()
				return err
			}
			lastScan = time.Now()
		}
		j.Refresh()
	}
}

// idle is the step of a reader about to wait: the OnIdle call, keeping
// the checkpoint alive, and a tick while entries are unacknowledged (not
// within every of the last one). It reports whether reading goes on.
func (r *run) idle(every time.Duration) bool {
	s := r.s
	if r.yielded && s.onIdle != nil {
		s.onIdle()
	}
	r.yielded = false
	if time.Since(r.touched) >= touchInterval {
		s.cp.Touch(s.key, event.Fingerprint{}, s.path, 0)
		r.touched = time.Now()
	}
	if s.noTicks || r.lastData.IsZero() || s.cp.InFlight(s.name) == 0 || time.Since(r.lastTick) < every {
		return true
	}
	r.lastTick = time.Now()
	if !r.yield(&event.Batch{Source: s.name, Resource: s.res}) {
		r.stopped = true
		return false
	}
	return true
}

// nativeRead turns the journal's entries into batches.
type nativeRead struct {
	r       *run
	j       *jfile.Journal
	flt     *filter
	e       jfile.Entry
	b       *event.Batch
	start   int64
	flushAt time.Time
	entries int // entries in b, those filtered out included
	cursor  []byte
	boot    []byte
}

// read reads entries until the journal holds no more now (false), a batch
// is full and yielded (true), or the consumer stops.
func (n *nativeRead) read() (more bool, err error) {
	r, s := n.r, n.r.s
	for {
		f, ok := n.j.Next(&n.e)
		if !ok {
			return false, nil
		}
		n.cursor = n.e.AppendCursor(n.cursor[:0])
		if r.resumeAt != "" {
			r.gap(string(n.cursor))
			r.resumeAt = ""
		}
		size := int64(0)
		keep := true
		if n.flt != nil {
			keep, size = n.flt.match(f, &n.e)
		}
		now := time.Now()
		if n.b == nil {
			b := r.pool.Get()
			b.Source, b.Resource, b.Path = s.name, s.res, s.path
			b.File = event.FileID{Dev: s.key.Dev, Ino: s.key.Ino}
			n.b, n.start, n.flushAt, n.entries = b, r.pos, now.Add(s.opts.FlushTimeout), 0
		}
		n.entries++
		if keep {
			size = n.entry(f, now)
		}
		r.pos += max(size, 1)
		s.stats.entries.Add(1)
		s.stats.bytes.Add(uint64(max(size, 1)))
		// A batch is full by its records, or by the entries passed (most
		// filtered out): the position still advances.
		if len(n.b.Records) >= s.opts.MaxBatchRecords || n.b.Bytes() >= int(s.opts.MaxBatchBytes) || n.entries >= 16*s.opts.MaxBatchRecords {
			if !n.flush() {
				return false, nil
			}
			return true, nil
		}
	}
}

// entry appends the record of the entry n.e (of file f) to the batch and
// returns the bytes of its fields.
func (n *nativeRead) entry(f *jfile.File, now time.Time) int64 {
	r, s := n.r, n.r.s
	b := n.b
	rec := r.dec.begin(b, now.UnixNano())
	rec.Time = int64(n.e.Realtime) * 1000
	var size int64
	max := int(s.opts.MaxEntryBytes)
	for _, off := range n.e.Items {
		p, err := f.Data(off)
		if err != nil {
			s.stats.skipped.Add(1)
			s.log.Warn("skipping a field of a journal entry that cannot be read", "source", s.name, "file", f.Path(), "err", err)
			rec.Flags |= event.ParseError
			continue
		}
		size += int64(len(p))
		k, v, ok := cutField(p)
		if !ok || string(k) == fieldBootID {
			continue // the boot ID comes from the entry, as journalctl prints it
		}
		if len(v) > max {
			v = v[:max]
			rec.Flags |= event.Truncated
			s.stats.truncated.Add(1)
		}
		r.dec.field(b, rec, k, v)
	}
	n.boot = jfile.AppendID(n.boot[:0], n.e.BootID)
	r.dec.field(b, rec, []byte(fieldBootID), n.boot)
	return size
}

// cutField splits a DATA payload FIELD=value.
func cutField(p []byte) (k, v []byte, ok bool) {
	for i, c := range p {
		if c == '=' {
			return p[:i], p[i+1:], i > 0
		}
	}
	return nil, nil, false
}

// flush yields the batch being filled, registered under the cursor of its
// last entry. It reports whether reading goes on.
func (n *nativeRead) flush() bool {
	r, s := n.r, n.r.s
	if n.b == nil {
		return true
	}
	b := n.b
	n.b = nil
	r.cursor = string(n.cursor)
	ack, err := s.cp.TrackCursor(r.ctx, s.key, s.path, n.start, r.pos, r.cursor)
	if err != nil {
		b.Done()
		return false
	}
	b.SetAck(ack)
	if len(b.Records) == 0 {
		// Every entry filtered out: acknowledged at once, not yielded.
		b.Done()
		return true
	}
	r.yielded, r.lastData = true, time.Now()
	if !r.yield(b) {
		r.stopped = true
		return false
	}
	return true
}

func (n *nativeRead) drop() {
	if n.b != nil {
		n.b.Done()
		n.b = nil
	}
}

// watch wakes the native reader when a journal file changes: journald
// truncates a file to its own size after writing to it so that inotify
// reports the change.
type watch struct {
	w *fsnotify.Watcher
}

func newWatch(dirs, globs []string) *watch {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return &watch{}
	}
	added := 0
	for _, g := range globs {
		dirs = append(dirs, filepath.Dir(g))
	}
	for _, d := range dirs {
		if w.Add(d) == nil {
			added++
		}
		if sub, err := os.ReadDir(d); err == nil {
			for _, e := range sub {
				if e.IsDir() && len(e.Name()) == 32 && w.Add(filepath.Join(d, e.Name())) == nil {
					added++
				}
			}
		}
	}
	if added == 0 {
		w.Close()
		return &watch{}
	}
	return &watch{w: w}
}

func (w *watch) close() {
	if w.w != nil {
		w.w.Close()
	}
}

// wait waits up to d for a change, and reports whether files were created,
// removed or renamed (the directories need listing again).
func (w *watch) wait(ctx interface{ Done() <-chan struct{} }, d time.Duration) (scan bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	if w.w == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	case ev, ok := <-w.w.Events:
		if !ok {
			return false
		}
		scan = ev.Op&(fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0
	case <-w.w.Errors:
		scan = true // overflow: look at everything
	}
	// Take what else is queued: one wake-up for a burst of writes.
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return scan
			}
			scan = scan || ev.Op&(fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0
		case <-w.w.Errors:
			scan = true
		default:
			return scan
		}
	}
}
