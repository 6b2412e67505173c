package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/logpump/logpump/event"
)

// Options configure a Tracker. Zero values take the defaults.
type Options struct {
	// MaxInFlightBytes caps the file bytes read but not yet acknowledged,
	// across all files. Track blocks at the cap: that is how a slow exporter
	// stops the readers. Default 16 MiB.
	MaxInFlightBytes int64
	// Retention drops the entry of a file not seen by a scan for this long.
	// Default 72h.
	Retention time.Duration
	// FlushInterval is how often Run writes changed offsets: at the first
	// acknowledgement at least FlushInterval after the last write, or, when
	// none comes, 2 × FlushInterval after it. Default 1s.
	FlushInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.MaxInFlightBytes <= 0 {
		o.MaxInFlightBytes = 16 << 20
	}
	if o.Retention <= 0 {
		o.Retention = 72 * time.Hour
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Key names one file of one source.
type Key struct {
	Source   string
	Dev, Ino uint64
}

// MovedKey names content that left its file: a file truncated in place
// (copytruncate) while it held bytes not yet acknowledged. Its identity is
// unknown (device 0, which no mounted file system has); the inode field
// holds the fingerprint's sum, so that the tailer can find the content
// again by its first bytes, in a copy or a compressed rotation, and resume
// at its committed offset.
func MovedKey(source string, fp event.Fingerprint) Key {
	return Key{Source: source, Dev: 0, Ino: fp.Sum}
}

// JournalKey names the position of a journal source. Its device, all ones,
// is no file's; its inode is 0.
func JournalKey(source string) Key { return Key{Source: source, Dev: ^uint64(0)} }

// Moved reports whether k is a [MovedKey].
func (k Key) Moved() bool { return k.Dev == 0 && k.Ino != 0 }

// scannedKey names the entry recording when a source last scanned: device
// and inode 0, no fingerprint, no offset.
func scannedKey(source string) Key { return Key{Source: source} }

// Scanned records that source scanned its files at now. It is saved with the
// next flush, but does not make one: a restart knows that content rotated
// before then was seen. Cheap enough for every scan.
func (t *Tracker) Scanned(source string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fileLocked(scannedKey(source)).seen = now
}

// fileLocked returns the entry of k, made if there is none. The caller
// holds t.mu.
func (t *Tracker) fileLocked(k Key) *file {
	f := t.files[k]
	if f == nil {
		f = &file{key: k}
		t.files[k] = f
		t.dirty = true
	}
	return f
}

// setAsideLocked keeps the entry at k, when it is of other content than fp
// and ranges of it are still in flight, under its content's [MovedKey]: k
// is about to name other content (file systems hand out a deleted file's
// inode again), and until those ranges are acknowledged a restart must find
// their content by its first bytes. The caller holds t.mu.
func (t *Tracker) setAsideLocked(k Key, fp event.Fingerprint) {
	old := t.files[k]
	if old == nil || old.fp == fp || old.fp.Len == 0 || k.Moved() || old.ep == nil || len(old.ep.spans) == 0 {
		return
	}
	mk := MovedKey(k.Source, old.fp)
	if t.files[mk] != nil {
		return
	}
	delete(t.files, k)
	old.key, old.superseded = mk, true
	t.files[mk] = old
	t.dirty = true
}

// LastScan returns when source last scanned, as recorded by Scanned and
// saved; zero if never.
func (t *Tracker) LastScan(source string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.files[scannedKey(source)]; f != nil {
		return f.seen
	}
	return time.Time{}
}

// Tracker follows the acknowledgement of every byte range handed out by the
// readers and keeps, per file, the committed offset: the end of the longest
// prefix of ranges that are all acknowledged. It is safe for concurrent use:
// readers call Track, exporters' goroutines call the acks it returns.
type Tracker struct {
	store *Store
	log   *slog.Logger
	opts  Options
	sem   *semaphore.Weighted

	// due asks Run to flush now: an acknowledgement found a flush due, so
	// the write happens while the agent is awake for the acknowledgement
	// rather than on a timer of its own.
	due chan struct{}

	flushMu sync.Mutex // serialises Flush so an older snapshot never overwrites a newer one
	entries []Entry    // the snapshot being saved, reused; guarded by flushMu

	mu        sync.Mutex
	files     map[Key]*file
	dirty     bool
	lastFlush time.Time
	lastTry   time.Time // when Flush last started
	// writeErr is the error of the last flush when it failed, and
	// failingSince the first failure of that run of failures.
	writeErr     error
	failingSince time.Time
}

type file struct {
	key       Key // where the file is in Tracker.files (Move changes it)
	fp        event.Fingerprint
	path      string
	committed int64
	cursor    string // the position of a journal matching committed (see TrackCursor)
	size      int64  // largest size seen or tracked
	seen      time.Time
	ep        *epoch
	// superseded: another entry took over this content (a copy found
	// before the truncation was noticed); drop it once nothing of it is
	// pending.
	superseded bool
}

// epoch is one continuous reading of a file. Truncation starts a new epoch:
// acknowledgements of the old one then no longer move the offset.
type epoch struct {
	spans      []span // pending ranges in file order; spans[0] is the oldest
	first      uint64 // sequence number of spans[0]
	lastEnd    int64
	lastCursor string
	// rewound: Rewind gave up on the epoch's pending ranges and released
	// their share of the in-flight cap; an acknowledgement that still comes
	// moves nothing and releases nothing.
	rewound bool
}

type span struct {
	end    int64
	cursor string
	size   int64
	done   bool
}

// NewTracker returns a tracker persisting to store. It does no I/O: call Load.
func NewTracker(store *Store, log *slog.Logger, opts Options) *Tracker {
	opts.defaults()
	return &Tracker{
		store: store, log: log, opts: opts,
		sem:   semaphore.NewWeighted(opts.MaxInFlightBytes),
		files: map[Key]*file{},
		due:   make(chan struct{}, 1),
	}
}

// Load reads the committed offsets from the store.
func (t *Tracker) Load() error {
	entries, err := t.store.Load()
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range entries {
		k := Key{e.Source, e.Dev, e.Ino}
		t.files[k] = &file{
			key:       k,
			fp:        event.Fingerprint{Len: e.FingerprintLen, Sum: e.FingerprintSum},
			path:      e.Path,
			committed: e.Offset,
			cursor:    e.Cursor,
			size:      e.Size,
			seen:      e.Seen,
		}
	}
	return nil
}

// Resume returns where reading of a file resumes, and the fingerprint
// recorded for it: the committed offset, or, while ranges of it are still
// in flight (a reader replaced by a reload, a file followed again), the end
// of the last range tracked: those ranges are acknowledged by whoever holds
// them, and reading them again would send them twice. The caller compares
// the fingerprint with the file's content to tell the same file from a
// recycled inode.
func (t *Tracker) Resume(k Key) (offset int64, fp event.Fingerprint, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[k]
	if f == nil {
		return 0, event.Fingerprint{}, false
	}
	if f.ep != nil && len(f.ep.spans) > 0 {
		return f.ep.lastEnd, f.fp, true
	}
	return f.committed, f.fp, true
}

// Forget drops what is known of a file (its inode was reused, or it was
// deleted after being read). Pending acknowledgements of it become no-ops.
func (t *Tracker) Forget(k Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.files[k]; ok {
		delete(t.files, k)
		t.dirty = true
	}
}

// Touch records that a scan saw the file at path with size bytes, keeping
// its entry from expiring, and updates its fingerprint (which grows with a
// young file).
func (t *Tracker) Touch(k Key, fp event.Fingerprint, path string, size int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[k]
	if f == nil {
		return
	}
	f.seen = t.opts.Now()
	if f.fp != fp || f.path != path || size > f.size {
		f.fp, f.path = fp, path
		f.size = max(f.size, size)
		t.dirty = true
	}
}

// Begin records offset as a file's committed position without tracking a
// range: where reading of a file starts (start_at: end, a copy of a file
// read up to there). Unlike Track it never blocks, so that finding files
// does not wait for acknowledgements.
func (t *Tracker) Begin(k Key, fp event.Fingerprint, path string, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setAsideLocked(k, fp)
	f := t.fileLocked(k)
	f.fp, f.path, f.seen = fp, path, t.opts.Now()
	f.ep = &epoch{lastEnd: offset}
	f.committed = offset
	f.superseded = false
	f.size = max(f.size, offset)
	t.dirty = true
}

// Move hands what is known of from (its committed offset and the ranges
// pending in its current epoch) to the key to; from is forgotten.
// Acknowledgements of the moved ranges then advance to. The tailer moves a
// file truncated in place to its [MovedKey], and from there to the copy
// that holds the content, once found. With superseded, the entry at to is
// dropped as soon as nothing of it is pending: another entry already covers
// its content.
func (t *Tracker) Move(from, to Key, superseded bool) (next int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[from]
	if f == nil {
		return 0, false
	}
	next = f.committed
	if f.ep != nil {
		next = f.ep.lastEnd
	}
	delete(t.files, from)
	f.key, f.superseded = to, superseded
	t.dirty = true
	if superseded && (f.ep == nil || len(f.ep.spans) == 0) {
		return next, true
	}
	t.setAsideLocked(to, f.fp)
	t.files[to] = f
	return next, true
}

// Entries returns the entries of one source as they would be saved now.
func (t *Tracker) Entries(source string) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Entry
	for k, f := range t.files {
		if k.Source == source && k != scannedKey(source) {
			out = append(out, f.entry(k))
		}
	}
	return out
}

func (f *file) entry(k Key) Entry {
	return Entry{
		Source: k.Source, Dev: k.Dev, Ino: k.Ino,
		FingerprintLen: f.fp.Len, FingerprintSum: f.fp.Sum,
		Offset: f.committed, Size: max(f.size, f.committed), Path: f.path, Seen: f.seen.UTC().Truncate(time.Second),
		Cursor: f.cursor,
	}
}

// Track registers the bytes [start, end) of a file, read in file order, and
// returns the function that acknowledges them (call it once). It blocks while
// the bytes in flight exceed the cap, and returns ctx.Err() if ctx ends first.
//
// A start below the previous range's end means the file was truncated: a new
// epoch begins at start. A start past the previous end (a skip) moves the
// offset forward once everything before it is acknowledged.
func (t *Tracker) Track(ctx context.Context, k Key, fp event.Fingerprint, path string, start, end int64) (ack func(), err error) {
	return t.track(ctx, k, fp, path, start, end, "")
}

// TrackCursor is Track for a source whose position is a cursor rather than
// a file offset (a journal): start and end count the bytes the source read,
// continuing from the offset [Tracker.ResumeCursor] returned, and cursor
// names the last entry of the range. Once the range and every range before
// it are acknowledged, cursor is the committed cursor saved with the
// offset.
func (t *Tracker) TrackCursor(ctx context.Context, k Key, path string, start, end int64, cursor string) (ack func(), err error) {
	return t.track(ctx, k, event.Fingerprint{}, path, start, end, cursor)
}

// BeginCursor records cursor as a position that needs no acknowledgement
// (where a journal is first read from with start_at: end) at offset. It
// never blocks.
func (t *Tracker) BeginCursor(k Key, path string, offset int64, cursor string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.fileLocked(k)
	f.path, f.seen = path, t.opts.Now()
	f.ep = &epoch{lastEnd: offset, lastCursor: cursor}
	f.committed, f.cursor = offset, cursor
	t.dirty = true
}

// ResumeCursor is Resume for a source tracked with TrackCursor: the
// committed offset and cursor, or, while ranges are in flight (a reader
// replaced by a reload), the end and cursor of the last range tracked. An
// empty cursor with ok means the source never got past its start.
func (t *Tracker) ResumeCursor(k Key) (offset int64, cursor string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[k]
	if f == nil {
		return 0, "", false
	}
	if f.ep != nil && len(f.ep.spans) > 0 {
		return f.ep.lastEnd, f.ep.lastCursor, true
	}
	return f.committed, f.cursor, true
}

func (t *Tracker) track(ctx context.Context, k Key, fp event.Fingerprint, path string, start, end int64, cursor string) (ack func(), err error) {
	size := min(max(end-start, 1), t.opts.MaxInFlightBytes)
	if err := t.sem.Acquire(ctx, size); err != nil {
		return nil, fmt.Errorf("track %s [%d,%d): %w", path, start, end, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[k]
	if f == nil {
		f = &file{key: k, committed: start}
		t.files[k] = f
	}
	f.fp, f.path, f.seen = fp, path, t.opts.Now()
	f.size = max(f.size, end)
	ep := f.ep
	switch {
	case ep == nil, start < ep.lastEnd:
		// A new reading of the key (a new file on a recycled inode gets
		// the key of one deleted with ranges pending: it is not dropped).
		ep = &epoch{lastEnd: start}
		f.ep = ep
		f.committed = start
		f.superseded = false
	case len(ep.spans) == 0 && start != f.committed:
		f.committed = start
	}
	t.dirty = true
	seq := ep.first + uint64(len(ep.spans))
	ep.spans = append(ep.spans, span{end: end, cursor: cursor, size: size})
	ep.lastEnd = end
	if cursor != "" {
		ep.lastCursor = cursor
	}
	return func() { t.ack(f, ep, seq) }, nil
}

func (t *Tracker) ack(f *file, ep *epoch, seq uint64) {
	t.mu.Lock()
	i := seq - ep.first
	if i >= uint64(len(ep.spans)) || ep.spans[i].done {
		t.mu.Unlock()
		panic("checkpoint: range acknowledged twice")
	}
	ep.spans[i].done = true
	size := ep.spans[i].size
	if ep.rewound {
		t.mu.Unlock()
		return
	}
	live := f.ep == ep && t.files[f.key] == f
	n := 0
	for n < len(ep.spans) && ep.spans[n].done {
		if live {
			f.committed = ep.spans[n].end
			if c := ep.spans[n].cursor; c != "" {
				f.cursor = c
			}
			t.dirty = true
		}
		n++
	}
	if n > 0 && live && t.opts.Now().Sub(t.lastTry) >= t.opts.FlushInterval {
		select {
		case t.due <- struct{}{}:
		default:
		}
	}
	if n > 0 {
		clear(ep.spans[:n])
		ep.spans = ep.spans[n:]
		ep.first += uint64(n)
		if len(ep.spans) == 0 {
			ep.spans = ep.spans[:0:0] // let the old array go
			if live && f.superseded {
				delete(t.files, f.key)
			}
		}
	}
	t.mu.Unlock()
	t.sem.Release(size)
}

// Rewind gives up on the ranges of source's files still in flight: some
// will never be acknowledged (their exporter was abandoned by a reload, or
// the batches holding them were never handed to one). Reading of each file
// then resumes at its committed offset (see Resume), so that those ranges
// are read and sent again; ranges acknowledged after all are sent twice.
// Their share of the in-flight cap is released at once. It returns the
// bytes given up on.
func (t *Tracker) Rewind(source string) int64 {
	t.mu.Lock()
	var released, bytes int64
	for k, f := range t.files {
		if k.Source != source || f.ep == nil || len(f.ep.spans) == 0 {
			continue
		}
		ep := f.ep
		start := f.committed
		for _, sp := range ep.spans {
			if !sp.done {
				released += sp.size
			}
		}
		bytes += max(ep.lastEnd-start, 0)
		ep.rewound = true
		f.ep = nil
		t.dirty = true
		if f.superseded {
			// Another entry covers its content, and is rewound with it.
			delete(t.files, k)
		}
	}
	t.mu.Unlock()
	if released > 0 {
		t.sem.Release(released)
	}
	return bytes
}

// Committed returns the committed offset of a file, for tests and debugging.
func (t *Tracker) Committed(k Key) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[k]
	if f == nil {
		return 0, false
	}
	return f.committed, true
}

// Pending returns how many ranges of a file wait for acknowledgement.
func (t *Tracker) Pending(k Key) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.files[k]; f != nil && f.ep != nil {
		return len(f.ep.spans)
	}
	return 0
}

// Flush writes the committed offsets if they changed since the last flush,
// dropping entries not seen for the retention period.
func (t *Tracker) Flush() error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.mu.Lock()
	now := t.opts.Now()
	t.lastTry = now
	if !t.dirty {
		t.lastFlush = now // the file on disk is current
		t.mu.Unlock()
		return nil
	}
	entries := t.entries[:0]
	for k, f := range t.files {
		if now.Sub(f.seen) > t.opts.Retention && (f.ep == nil || len(f.ep.spans) == 0) {
			delete(t.files, k)
			continue
		}
		entries = append(entries, f.entry(k))
	}
	t.dirty = false
	t.mu.Unlock()
	err := t.store.Save(entries)
	clear(entries) // drop the strings until the next flush
	t.entries = entries[:0]
	if err != nil {
		err = writeError{err}
		t.mu.Lock()
		t.dirty = true
		first := t.writeErr == nil
		if first {
			t.failingSince = now
		}
		t.writeErr = err
		t.mu.Unlock()
		if first {
			t.log.Warn("checkpoint write failed; offsets stay in memory and the write is retried (a restart now would send again the lines acknowledged since the last write)", "err", err.Error())
		}
		return err
	}
	t.mu.Lock()
	t.lastFlush = now
	failed, since := t.writeErr != nil, t.failingSince
	t.writeErr = nil
	t.mu.Unlock()
	if failed {
		t.log.Info("checkpoint write works again", "failing_since", since)
	}
	return nil
}

// ErrWrite marks the errors of [Tracker.Flush] that come from writing the
// checkpoint file: the offsets stay in memory, nothing is lost, and lines
// acknowledged since the last write are sent again after a restart.
var ErrWrite = errors.New("checkpoint write failed")

type writeError struct{ error }

func (e writeError) Is(target error) bool { return target == ErrWrite }
func (e writeError) Unwrap() error        { return e.error }

// WriteError returns since when checkpoint writes fail and the error of
// the last one, or a nil error when the last one succeeded.
func (t *Tracker) WriteError() (since time.Time, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failingSince, t.writeErr
}

// LastFlush returns when the checkpoint file was last known to be current
// (written, or nothing to write); zero if never.
func (t *Tracker) LastFlush() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastFlush
}

// Run flushes until ctx ends, then flushes once more. It flushes when an
// acknowledgement moves an offset at least FlushInterval after the last
// flush, so that under a steady stream the write joins the wake-up of an
// acknowledgement instead of costing one of its own; and 2 × FlushInterval
// after the last flush when no acknowledgement came (changes from scans, or
// the last acknowledgements of a stream that stopped).
func (t *Tracker) Run(ctx context.Context) error {
	fallback := 2 * t.opts.FlushInterval
	timer := time.NewTimer(fallback)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return t.Flush()
		case <-t.due:
		case <-timer.C:
		}
		_ = t.Flush() // a failure is logged once per change of state, and retried
		timer.Reset(fallback)
	}
}

// InFlight returns how many ranges of a source's files wait for
// acknowledgement. A reload waits for zero before a replacement reader
// resumes from the committed offsets, so that nothing is read twice.
func (t *Tracker) InFlight(source string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, f := range t.files {
		if k.Source == source && f.ep != nil {
			n += len(f.ep.spans)
		}
	}
	return n
}
