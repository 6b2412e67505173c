// Package journald reads the systemd journal: a source that yields journal
// entries as batches of records, with the journal's cursor as its position.
//
// The journal is read by logpump itself (package jfile: no cgo, no
// journalctl, as in a container image) or through journalctl
// --output=json (Options.Reader); both map fields to records the same way
// and use the same cursors. A batch's acknowledgement advances the source's checkpoint to the cursor
// of its last entry ([checkpoint.Tracker.TrackCursor]); after a restart or a
// reload reading resumes after the last acknowledged entry (--cursor, the
// entry at the cursor dropped as read), first through every stored boot,
// then following new entries. An entry is never skipped for being unacknowledged; one that was
// read but not acknowledged before a stop is read again (at least once).
package journald

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
)

// Checkpoints is what a source needs of the checkpoint tracker.
type Checkpoints interface {
	ResumeCursor(k checkpoint.Key) (offset int64, cursor string, ok bool)
	TrackCursor(ctx context.Context, k checkpoint.Key, path string, start, end int64, cursor string) (func(), error)
	BeginCursor(k checkpoint.Key, path string, offset int64, cursor string)
	Touch(k checkpoint.Key, fp event.Fingerprint, path string, size int64)
	InFlight(source string) int
}

// Source reads one journal. Build it with [New], read it with
// [Source.Batches].
type Source struct {
	name    string
	opts    Options
	cp      Checkpoints
	res     *event.Resource
	log     *slog.Logger
	key     checkpoint.Key
	path    string
	onIdle  func()
	noTicks bool
	used    atomic.Bool
	stats   counters
}

type counters struct {
	entries, bytes, restarts, truncated, gaps, gapEntries, skipped atomic.Uint64
}

// Stats are a source's counters since it was built.
type Stats struct {
	// Entries and Bytes read (Bytes as journalctl printed them, or the
	// bytes of the entries' fields with the native reader).
	Entries, Bytes uint64
	// Restarts of journalctl after it failed or ended.
	Restarts uint64
	// Truncated entries, longer than max_entry_bytes.
	Truncated uint64
	// Gaps counts resumptions after an entry the journal no longer held
	// (vacuumed, rotated away, or the cursor of another journal): reading
	// went on at the first entry after it. GapEntries is how many entries
	// the journal numbered in between, when the cursors tell (same journal
	// writer); entries that the source's filters exclude are among them.
	Gaps, GapEntries uint64
	// Skipped counts journal files, and fields of entries, that the
	// native reader skipped as damaged or unreadable (each logged).
	Skipped uint64
}

// Stats returns the source's counters. Safe for concurrent use.
func (s *Source) Stats() Stats {
	return Stats{
		Entries: s.stats.entries.Load(), Bytes: s.stats.bytes.Load(),
		Restarts: s.stats.restarts.Load(), Truncated: s.stats.truncated.Load(),
		Gaps: s.stats.gaps.Load(), GapEntries: s.stats.gapEntries.Load(),
		Skipped: s.stats.skipped.Load(),
	}
}

// New validates opts and returns the source called name. It does no I/O.
// res is attached to every batch and must not change; log is used as given
// (nil discards).
func New(name string, opts Options, cp Checkpoints, res *event.Resource, log *slog.Logger) (*Source, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if cp == nil {
		return nil, fmt.Errorf("create journald source %s: no checkpoints", name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := "journal"
	switch {
	case opts.Namespace != "":
		path = "journal:" + opts.Namespace
	case opts.Directory != "":
		path = "journal:" + opts.Directory
	}
	return &Source{name: name, opts: opts, cp: cp, res: res, log: log, key: checkpoint.JournalKey(name), path: path}, nil
}

// DisableTicks stops the source from yielding idle ticks (nothing
// downstream holds an open event). Call it before Batches.
func (s *Source) DisableTicks() { s.noTicks = true }

// OnIdle sets f to be called by the goroutine ranging over Batches when the
// source, having yielded entries since the last call, has read all
// journalctl printed and is about to wait: a caller grouping batches into
// requests can send them now. Call it before Batches.
func (s *Source) OnIdle(f func()) { s.onIdle = f }

// Batches returns a single-use iterator over batches of journal entries.
// The goroutine ranging over it reads the journal files (or runs
// journalctl, Options.Reader) and blocks inside the iterator while there
// is nothing to read or the checkpoint tracker is at its in-flight cap.
//
// Every yielded batch holds entries in journal order (Source, File and Path
// set: File's device is that of [checkpoint.JournalKey], Path "journal" or
// "journal:NAMESPACE" or "journal:DIRECTORY"), carries the source's
// resource and is registered with the checkpoint tracker under the cursor
// of its last entry. A batch with no records is a tick (see
// Options.TickInterval); ticks carry no acknowledgement.
//
// When reading fails (the journal is missing or unreadable, journalctl is
// not installed) the error is logged and reading started again after
// RestartDelay, doubling up to a minute. When ctx is cancelled the iterator
// returns at the next batch boundary, stopping journalctl.
func (s *Source) Batches(ctx context.Context) iter.Seq[*event.Batch] {
	return func(yield func(*event.Batch) bool) {
		if !s.used.CompareAndSwap(false, true) {
			s.log.Error("journald: Batches ranged over twice; the second range yields nothing")
			return
		}
		r := &run{s: s, ctx: ctx, yield: yield, dec: newDecoder(s.res, s.opts.Fields...)}
		if s.opts.Reader == ReaderJournalctl || r.nativeLoop() {
			r.fellBack = s.opts.Reader != ReaderJournalctl
			r.loop()
		}
	}
}

// run is the state of one range over Batches.
type run struct {
	s     *Source
	ctx   context.Context
	yield func(*event.Batch) bool
	dec   *decoder
	pool  event.Pool

	pos    int64  // bytes read, continuing the checkpoint's offset
	cursor string // the cursor of the last entry yielded (or begun at)
	// resumeAt is the cursor journalctl was started at (--cursor), until
	// the first entry it prints is read: that entry is the one at the
	// cursor, already read, unless the journal no longer holds it.
	resumeAt string
	stopped  bool // the consumer stopped, or ctx ended
	fellBack bool // reader auto went on with journalctl
	yielded  bool // entries were yielded since the last idle call
	lastData time.Time
	lastTick time.Time // when the last tick was yielded
	touched  time.Time
}

const maxRestartDelay = time.Minute

// touchInterval is how often a quiet source tells the checkpoint tracker
// that its position is still in use.
const touchInterval = time.Minute

func (r *run) loop() {
	s := r.s
	pos, cursor, known := s.cp.ResumeCursor(s.key)
	r.pos, r.cursor = pos, cursor
	delay := s.opts.RestartDelay
	for r.ctx.Err() == nil && !r.stopped {
		if !known && s.opts.StartAt == StartEnd {
			c, err := r.lastCursor()
			if err != nil {
				r.failed(err, &delay)
				continue
			}
			// An empty journal: everything that comes is new.
			s.cp.BeginCursor(s.key, s.path, r.pos, c)
			r.cursor, known = c, true
		}
		before := r.pos
		// Catch up through every boot, then follow the current one
		// (journalctl --follow reads only the current boot).
		err := r.stream(false)
		if err == nil && !r.stopped && r.ctx.Err() == nil {
			err = r.stream(true)
		}
		if r.stopped || r.ctx.Err() != nil {
			return
		}
		if r.pos > before {
			delay = s.opts.RestartDelay
		}
		if err == nil {
			err = errors.New("journalctl --follow ended")
		}
		r.failed(err, &delay)
	}
}

// failed logs err and waits delay (doubled for the next time) or until ctx
// ends.
func (r *run) failed(err error, delay *time.Duration) {
	r.s.stats.restarts.Add(1)
	r.s.log.Warn("reading the journal failed; starting journalctl again", "err", err, "retry_in", delay.String())
	t := time.NewTimer(*delay)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
	case <-t.C:
	}
	*delay = min(2**delay, maxRestartDelay)
}

// reader names how the journal is read now.
func (r *run) reader() string {
	if r.s.opts.Reader == ReaderJournalctl || r.fellBack {
		return ReaderJournalctl
	}
	return ReaderNative
}

// args returns journalctl's arguments: the selection, then the position.
func (r *run) args(extra ...string) []string {
	o := &r.s.opts
	args := []string{"--output=json", "--all", "--no-pager", "--quiet"}
	switch {
	case o.Namespace != "":
		args = append(args, "--namespace="+o.Namespace)
	case o.Directory != "":
		args = append(args, "--directory="+o.Directory)
	}
	for _, f := range o.Files {
		args = append(args, "--file="+f)
	}
	if o.Priority != "" {
		p, _ := priority(o.Priority)
		args = append(args, "--priority="+strconv.Itoa(p))
	}
	for _, u := range o.Units {
		args = append(args, "--unit="+u)
	}
	for _, id := range o.Identifiers {
		args = append(args, "--identifier="+id)
	}
	args = append(args, extra...)
	args = append(args, o.Matches...)
	if o.Dmesg {
		args = append(args, "_TRANSPORT=kernel")
	}
	return args
}

// lastCursor returns the cursor of the last entry the source's selection
// holds now, "" for none: where a journal read with start_at: end starts.
func (r *run) lastCursor() (string, error) {
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.s.opts.Journalctl, r.args("--lines=1")...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitWriter{w: &stderr, n: 4096}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("find the journal's end: %w%s", err, stderrText(&stderr))
	}
	line := bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if len(line) == 0 {
		return "", nil
	}
	var b event.Batch
	if !r.dec.entry(&b, line, 0) {
		return "", fmt.Errorf("find the journal's end: journalctl printed no cursor: %.200q", line)
	}
	return string(r.dec.cursor), nil
}

// stream runs journalctl once, from after r.cursor (from the start when
// there is none), and yields what it prints until it ends, fails, ctx ends
// or the consumer stops. With follow it waits for new entries.
func (r *run) stream(follow bool) error {
	s := r.s
	var extra []string
	if r.cursor != "" {
		// --cursor, not --after-cursor: journalctl --after-cursor skips
		// the first entry it finds whether or not it is the one at the
		// cursor, so an entry after one that was vacuumed (or any first
		// entry, given another journal's cursor) would be lost unseen.
		// The entry at the cursor, when there, is dropped in read.
		extra = append(extra, "--cursor="+r.cursor)
		r.resumeAt = r.cursor
	}
	if follow {
		extra = append(extra, "--follow", "--no-tail")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start journalctl: %w", err)
	}
	cmd := exec.Command(s.opts.Journalctl, r.args(extra...)...)
	var stderr bytes.Buffer
	cmd.Stdout = pw
	cmd.Stderr = &limitWriter{w: &stderr, n: 4096}
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("start journalctl: %w", err)
	}
	pw.Close()
	s.cp.Touch(s.key, event.Fingerprint{}, s.path, 0)
	r.touched = time.Now()

	// The read deadline wakes the reader to yield a batch that is not full
	// (flush timeout), to tick, and to stop: once ctx ends every deadline is
	// the past.
	var dmu sync.Mutex
	setDeadline := func(t time.Time) {
		dmu.Lock()
		defer dmu.Unlock()
		if r.ctx.Err() != nil {
			t = time.Unix(1, 0)
		}
		pr.SetReadDeadline(t)
	}
	stop := context.AfterFunc(r.ctx, func() { setDeadline(time.Time{}) })
	defer stop()

	rd := &reader{pr: pr, buf: make([]byte, 0, 64<<10), max: int(s.opts.MaxEntryBytes)}
	readErr := r.read(rd, setDeadline)
	cmd.Process.Signal(syscall.SIGTERM)
	pr.Close()
	waitErr := cmd.Wait()
	if readErr != nil {
		return readErr
	}
	if waitErr != nil && !r.stopped && r.ctx.Err() == nil {
		return fmt.Errorf("journalctl %s: %w%s", cmdLine(cmd.Args[1:]), waitErr, stderrText(&stderr))
	}
	return nil
}

// gap reports that journalctl, started at r.resumeAt, began with the entry
// at cursor: the journal no longer holds the entry at r.resumeAt.
func (r *run) gap(cursor string) {
	s := r.s
	s.stats.gaps.Add(1)
	n, known := cursorDistance(r.resumeAt, cursor)
	if known {
		s.stats.gapEntries.Add(n)
	}
	s.log.Warn("the journal no longer holds the entry after which reading resumes (vacuumed, rotated away, or another journal's cursor): reading goes on at the oldest entry after it; entries removed before they were read are lost",
		"source", s.name, "entries_between", map[bool]any{true: n, false: "unknown"}[known])
}

// cursorDistance returns how many entries the journal numbered between the
// entries at cursors a and b (exclusive), when both come from the same
// writer (their seqnum IDs, s=, are equal) and b is after a.
func cursorDistance(a, b string) (uint64, bool) {
	field := func(c, key string) string {
		for len(c) > 0 {
			var kv string
			kv, c, _ = strings.Cut(c, ";")
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
	if sa, sb := field(a, "s"), field(b, "s"); sa == "" || sa != sb {
		return 0, false
	}
	ia, err1 := strconv.ParseUint(field(a, "i"), 16, 64)
	ib, err2 := strconv.ParseUint(field(b, "i"), 16, 64)
	if err1 != nil || err2 != nil || ib <= ia {
		return 0, false
	}
	return ib - ia - 1, true
}

// read yields batches of what journalctl prints until it ends (nil), the
// pipe fails, ctx ends or the consumer stops.
func (r *run) read(rd *reader, setDeadline func(time.Time)) error {
	s := r.s
	var b *event.Batch
	var start int64 // r.pos where b starts
	var hasCursor bool
	flush := func() bool {
		if b == nil {
			return true
		}
		batch := b
		b = nil
		// A batch of entries without a cursor (cut at max_entry_bytes)
		// keeps the previous one: a restart reads them again.
		cursor := r.cursor
		if hasCursor {
			cursor = string(r.dec.cursor)
		}
		ack, err := s.cp.TrackCursor(r.ctx, s.key, s.path, start, r.pos, cursor)
		if err != nil {
			batch.Done()
			return false
		}
		batch.SetAck(ack)
		r.cursor = cursor
		r.yielded, r.lastData = true, time.Now()
		if !r.yield(batch) {
			r.stopped = true
			return false
		}
		return true
	}
	defer func() {
		if b != nil {
			b.Done()
		}
	}()
	idle := func() bool { return r.idle(0) }
	var flushAt time.Time
	for {
		switch {
		case b != nil:
			setDeadline(flushAt)
		case !s.noTicks && !r.lastData.IsZero() && s.cp.InFlight(s.name) > 0:
			setDeadline(time.Now().Add(s.opts.TickInterval))
		default:
			// Wake up now and then to keep the checkpoint from expiring
			// (checkpoints.retention) while the journal is quiet.
			setDeadline(time.Now().Add(touchInterval))
		}
		err := rd.fill()
		now := time.Now()
		for {
			line, n, truncated, ok := rd.next()
			if !ok {
				break
			}
			if b == nil {
				b = r.pool.Get()
				b.Source, b.Resource, b.Path = s.name, s.res, s.path
				b.File = event.FileID{Dev: s.key.Dev, Ino: s.key.Ino}
				start, hasCursor = r.pos, false
				flushAt = now.Add(s.opts.FlushTimeout)
			}
			r.pos += int64(n)
			s.stats.entries.Add(1)
			s.stats.bytes.Add(uint64(n))
			if truncated {
				s.stats.truncated.Add(1)
				rec := b.Next()
				rec.Observed = now.UnixNano()
				rec.Body = event.String(b.Copy(line))
				rec.Flags |= event.Truncated | event.ParseError
			} else if r.dec.entry(b, line, now.UnixNano()) {
				hasCursor = true
				if r.resumeAt != "" {
					if string(r.dec.cursor) == r.resumeAt {
						b.Records = b.Records[:len(b.Records)-1] // read before
					} else {
						r.gap(string(r.dec.cursor))
					}
				}
			}
			r.resumeAt = "" // only the first entry can be the one at the cursor
			if len(b.Records) == 0 {
				// Nothing new: no batch (the range read is skipped).
				b.Done()
				b = nil
				continue
			}
			if len(b.Records) >= s.opts.MaxBatchRecords || b.Bytes() >= int(s.opts.MaxBatchBytes) {
				if !flush() {
					return nil
				}
			}
		}
		// A batch due at flushAt goes now, without another read (which
		// would time out at once: the deadline is not moved by data).
		if b != nil && !now.Before(flushAt) && !flush() {
			return nil
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if r.ctx.Err() != nil {
				flush()
				return nil
			}
			if b != nil && !now.Before(flushAt) {
				if !flush() {
					return nil
				}
				if !idle() {
					return nil
				}
			} else if b == nil && !idle() {
				return nil
			}
		case errors.Is(err, io.EOF):
			// journalctl ended: what it printed in full is yielded; a
			// partial last line is read again from the cursor.
			flush()
			return nil
		default:
			flush()
			return fmt.Errorf("read journalctl output: %w", err)
		}
		if r.stopped || r.ctx.Err() != nil {
			flush()
			return nil
		}
	}
}

// reader splits journalctl's output into lines, bounding each.
type reader struct {
	pr   *os.File
	buf  []byte
	off  int // start of the unread part of buf
	max  int
	skip bool // inside a line longer than max, already returned
	// skipped counts the bytes of that line dropped so far.
	skipped int
}

// fill reads once more from the pipe.
func (rd *reader) fill() error {
	if rd.off > 0 && rd.off == len(rd.buf) {
		rd.buf, rd.off = rd.buf[:0], 0
	}
	if len(rd.buf) == cap(rd.buf) {
		if rd.off > 0 {
			rd.buf = rd.buf[:copy(rd.buf, rd.buf[rd.off:])]
			rd.off = 0
		} else {
			rd.buf = append(rd.buf, make([]byte, cap(rd.buf))...)[:len(rd.buf)]
		}
	}
	n, err := rd.pr.Read(rd.buf[len(rd.buf):cap(rd.buf)])
	rd.buf = rd.buf[:len(rd.buf)+n]
	return err
}

// next returns the next complete line (without its newline) and how many
// bytes of output it accounts for. A line longer than max is returned once
// cut to max bytes, with truncated; the rest of it is counted with its end.
// The line is valid until the next fill.
func (rd *reader) next() (line []byte, n int, truncated, ok bool) {
	rest := rd.buf[rd.off:]
	i := bytes.IndexByte(rest, '\n')
	if rd.skip {
		if i < 0 {
			// Drop what was read of the long line, count it with its end.
			rd.skipped += len(rest)
			rd.off = len(rd.buf)
			return nil, 0, false, false
		}
		n, rd.skip, rd.skipped = rd.skipped+i+1, false, 0
		rd.off += i + 1
		return nil, n, false, true // counted, no record: already returned
	}
	if i < 0 {
		if len(rest) < rd.max {
			return nil, 0, false, false
		}
		rd.skip, rd.skipped = true, len(rest)-rd.max
		rd.off = len(rd.buf)
		return rest[:rd.max], rd.max, true, true
	}
	rd.off += i + 1
	if i > rd.max {
		return rest[:rd.max], i + 1, true, true
	}
	return rest[:i], i + 1, false, true
}

// limitWriter keeps the first n bytes written to it.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(l.n, len(p))
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func stderrText(b *bytes.Buffer) string {
	if t := bytes.TrimSpace(b.Bytes()); len(t) > 0 {
		return ": " + string(t)
	}
	return ""
}

func cmdLine(args []string) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
	return b.String()
}
