// Package tailer finds log files by glob, follows them through rotation and
// truncation, and yields their lines as batches of records.
//
// A [Tailer] is one configured file source. Its [Tailer.Batches] iterator
// does all the reading in the goroutine that ranges over it: a periodic glob
// scan decides which files exist, directory watches (inotify) and polling
// only say when to look, and files with data are read in round-robin turns of
// at most one batch each. Every batch is registered with the checkpoint
// tracker before it is yielded; the tracker's in-flight cap is what stops
// reading when the pipeline has no room.
//
// Files are identified by device, inode and a fingerprint of their first
// bytes, never by path: a renamed file is drained through its open descriptor
// and not read again under its new name, a new file at an old path is read
// from its start, and a recycled inode is recognised by its content.
package tailer

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
)

// Checkpoints is what a tailer needs from the checkpoint tracker;
// *checkpoint.Tracker implements it.
type Checkpoints interface {
	Resume(k checkpoint.Key) (offset int64, fp event.Fingerprint, ok bool)
	Track(ctx context.Context, k checkpoint.Key, fp event.Fingerprint, path string, start, end int64) (func(), error)
	// Begin records where reading of a file starts; it never blocks.
	Begin(k checkpoint.Key, fp event.Fingerprint, path string, offset int64)
	Touch(k checkpoint.Key, fp event.Fingerprint, path string, size int64)
	Forget(k checkpoint.Key)
	// Move hands a file's committed offset and pending ranges to another
	// key (content that moved to another file) and returns where reading
	// of it goes on: the end of the last range tracked.
	Move(from, to checkpoint.Key, superseded bool) (next int64, ok bool)
	// Entries lists what is known of the source's files.
	Entries(source string) []checkpoint.Entry
	// Committed returns a file's acknowledged offset.
	Committed(k checkpoint.Key) (int64, bool)
	// Pending counts a file's ranges not yet acknowledged.
	Pending(k checkpoint.Key) int
	// Scanned records a scan of the source; LastScan returns the last one
	// recorded (saved, after a restart).
	Scanned(source string, now time.Time)
	LastScan(source string) time.Time
	// InFlight counts the source's ranges not yet acknowledged: while there
	// are any, something downstream may hold an open event, so ticks go on.
	InFlight(source string) int
}

// Attribute keys set on every record when enabled (OpenTelemetry semantic
// conventions).
const (
	AttrFilePath = "log.file.path"
	AttrFileName = "log.file.name"
)

// Tailer reads the files of one source. Create it with [New]; read with
// [Tailer.Batches]; [Tailer.Stats] may be called from any goroutine.
type Tailer struct {
	name string
	opts Options
	cp   Checkpoints
	res  *event.Resource
	log  *slog.Logger
	used atomic.Bool
	// noTicks: nothing after the tailer can hold an open event (DisableTicks).
	noTicks bool
	// onIdle is called when the tailer runs out of data (OnIdle).
	onIdle func()
	// newWatcher makes the directory watcher: inotify, or a test's.
	newWatcher newWatcherFunc
	// open opens a newly matched file: openFile, or a test's (the tests
	// run as root, whom no permission stops).
	open func(path string) (*os.File, error)

	mu    sync.Mutex // guards files and the path, state and fp of each file, for Stats
	files map[devIno]*file
	// unreadable holds the matched files that could not be opened
	// (permission denied), by path; guarded by mu.
	unreadable map[string]unreadable

	counters counters
}

type counters struct {
	lines, bytes, truncated, invalid, nulBytes atomic.Uint64
	rotations, truncations, deleted            atomic.Uint64
	pollFallbacks, overflows, ticks, errors    atomic.Uint64
	scans                                      atomic.Uint64
	copies                                     atomic.Uint64
	eagerRuns                                  atomic.Uint64
	recovered                                  atomic.Uint64
	// Bytes known lost, by reason (recover.go), and the files they were in.
	lostNotFound, lostTruncated, lostClosed, lostFiles atomic.Uint64
	forcedCloses                                       atomic.Uint64
	unreadable                                         atomic.Uint64
	open, watched, polledDirs                          atomic.Int64
}

// lost counts n bytes lost for reason.
func (c *counters) lost(reason string, n int64) {
	c.lostFiles.Add(1)
	if n <= 0 {
		return
	}
	switch reason {
	case LostNotFound:
		c.lostNotFound.Add(uint64(n))
	case LostTruncated:
		c.lostTruncated.Add(uint64(n))
	default:
		c.lostClosed.Add(uint64(n))
	}
}

type devIno struct{ dev, ino uint64 }

type skipped struct {
	size  int64
	mtime time.Time
	gen   uint64
	read  bool // read to its end (not only skipped): no search takes it
}

type fileState uint8

const (
	live     fileState = iota // matched by the last scan
	draining                  // renamed, unmatched or deleted: read to the end, then closed
)

// file is the state of one file identity. Only the Batches goroutine
// touches it, except the atomics (read by Stats) and inflight (acks).
type file struct {
	id    devIno
	key   checkpoint.Key
	path  string
	attrs []event.KeyValue
	fd    *os.File
	gz    *gzReader // set for a gzip file read decompressed
	fp    event.Fingerprint
	cur   cursor
	state fileState

	size       int64     // size at the last stat
	maxSize    int64     // the largest size seen of the current content
	copied     bool      // a copy of it was found and not read (skipCopy)
	growth     growth    // when the file reached which size (Stats)
	scanSize   int64     // size at the last scan, to notice change
	scanTime   time.Time // modification time at the last scan
	gen        uint64
	queued     bool
	polled     bool // no directory watch reports its writes
	changed    bool // a write was reported since the file's last scan
	fresh      bool // found while running with no checkpoint: maybe a copy (copy.go)
	found      time.Time
	atEOF      bool
	flush      bool // the partial last line is due
	partial    int
	partialAt  time.Time // when the partial line last changed
	lastGrowth time.Time
	lastRead   time.Time
	errLogged  bool

	inflight atomic.Int64 // batches tracked and not yet acknowledged
	offset   atomic.Int64 // mirrors cur.offset for Stats
	statSize atomic.Int64
}

// New validates opts and returns a tailer for the source called name. It
// does no I/O. res is attached to every batch and must not change. log is
// used as given (scope it to the source); nil discards.
func New(name string, opts Options, cp Checkpoints, res *event.Resource, log *slog.Logger) (*Tailer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if cp == nil {
		return nil, fmt.Errorf("create tailer %s: no checkpoints", name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tailer{
		name: name, opts: opts, cp: cp, res: res,
		log:        log,
		files:      map[devIno]*file{},
		newWatcher: newInotify, open: openFile,
	}, nil
}

// DisableTicks stops the tailer from yielding ticks: the caller knows that
// nothing it hands batches to can hold an open event (a pipeline without
// processors). An idle source then costs no wake-up per TickInterval while
// its lines are being exported. Call it before Batches.
func (t *Tailer) DisableTicks() { t.noTicks = true }

// OnIdle sets f to be called by the goroutine ranging over Batches whenever
// the tailer, having yielded data since the last call, has read everything
// it knows of and is about to wait (for a write event, a poll, a scan or a
// deadline). Every batch yielded before the call has been handed on, so a
// caller that groups batches into requests can send what it holds instead
// of waiting for more: with write events read once per WriteWindow, nothing
// more comes from this source before the next window. f must not block for
// long. Call OnIdle before Batches.
func (t *Tailer) OnIdle(f func()) { t.onIdle = f }

// Batches returns a single-use iterator over batches read from every matched
// file; ranging over it a second time yields nothing. The goroutine ranging
// over it does the reading and blocks inside the iterator while there is
// nothing to read or the checkpoint tracker is at its in-flight cap.
//
// Every yielded batch covers [Start, End) of one file (Source, File, Path set),
// holds its lines in file order (Body a string without the line end,
// Observed, Offset, Flags and the file attributes set), carries the
// tailer's resource, and is registered with the checkpoint tracker: its
// acknowledgement fires when the receiver, who owns its one reference, and
// any holders it retains for call Done. Batches of one file are yielded in
// file order with contiguous ranges.
//
// A batch with no records and a zero File is a tick: after yielding data, a
// tailer with nothing to read yields one tick per TickInterval of idleness,
// for as long as some of what it yielded is not acknowledged, so that stages
// holding an open event (multiline) can flush it on their own timeout. Once
// everything is acknowledged an idle tailer stops ticking. Ticks carry no ack.
//
// When ctx is cancelled the iterator returns at the next batch boundary;
// whatever was read but not yielded is read again on the next start.
func (t *Tailer) Batches(ctx context.Context) iter.Seq[*event.Batch] {
	return func(yield func(*event.Batch) bool) {
		if !t.used.CompareAndSwap(false, true) {
			t.log.Error("tailer: Batches ranged over twice; the second range yields nothing")
			return
		}
		r := &run{
			t: t, ctx: ctx, opts: &t.opts,
			lr:      newLineReader(t.opts.Encoding, int(t.opts.MaxLineBytes)),
			fpBuf:   make([]byte, t.opts.FingerprintBytes),
			glob:    globber{dirs: map[string]struct{}{}},
			clean:   map[string]bool{},
			byPath:  map[string]*file{},
			skipped: map[devIno]skipped{},
			lim:     limits{records: t.opts.MaxBatchRecords, bytes: int(t.opts.MaxBatchBytes)},
		}
		r.glob.clean = func(dir string) bool { return !r.full && r.clean[dir] }
		r.back = make(chan struct{}, 1)
		r.eagerTimer = time.AfterFunc(time.Hour, r.eager)
		r.eagerTimer.Stop()
		r.mu.Lock()
		defer r.close()
		r.loop(yield)
	}
}

// run is the state of one range over Batches.
//
// Discovery is eager, reading is lazy: the goroutine ranging over Batches
// does everything while it runs, but when it waits in the pipeline (in
// Track at the checkpoint tracker's in-flight cap, or in yield while the
// export queue is full) for longer than eagerGrace, another goroutine
// (eager) goes on finding and opening files, noticing renames, truncations
// and deletions, without reading: a file created and rotated away during
// an outage is held open, and its lines are read once the pipeline has
// room. mu is the state: held by whichever goroutine works on it.
type run struct {
	t    *Tailer
	ctx  context.Context
	opts *Options
	lr   *lineReader
	pool event.Pool
	lim  limits

	mu         sync.Mutex    // the run's state and its files
	away       atomic.Bool   // the reader waits in the pipeline without mu
	eagerOn    atomic.Bool   // an eager goroutine runs
	back       chan struct{} // wakes the eager goroutine: the reader is back
	eagerTimer *time.Timer   // starts eager eagerGrace after the reader left
	closed     bool          // the range ended; eager must not start

	fpBuf []byte
	glob  globber
	hints *hints
	// clean are the watched directories whose listing is still true: watched
	// before it was taken, no names changed since (see scan).
	clean           map[string]bool
	byPath          map[string]*file // live files by the path the scan found them at
	polls           []*file          // files no watch covers, from the last scan
	truncs          []truncation     // recent truncations, for their copies
	cmpBuf, cmpBuf2 []byte           // scratch for comparing file contents
	headBuf         []byte           // scratch for the searches of rotated content
	rawHead         []byte           // scratch: a file's first bytes as stored (compressed or not)
	// known indexes the checkpoints loaded at the start, until the first
	// scan has matched them with files (recover.go).
	known *known
	since time.Time // the last scan of the run before (recover.go)
	// moved is content truncated before it was read to its end, whose copy
	// is looked for (recover.go).
	moved []*movedContent
	// skipped are compressed files not read, with their size and time: a
	// change (a recycled inode) makes the file looked at again.
	skipped map[devIno]skipped

	ready []*file // files with data, in turn order
	head  int

	gen       uint64
	full      bool // the scan running is a full one
	nextFull  time.Time
	nextScan  time.Time
	scanSoon  bool
	lastScan  time.Time
	nextMaint time.Time // the next deadline of a file (flush, drain, delete)
	nextPoll  time.Time

	warned map[string]bool // fallbacks logged at warning level, by message

	yielded  bool // data yielded since the last tick
	idleOwed bool // data yielded since onIdle was last called
	woken    bool // the last wait ended with write events (see scanSlack)
	lastData time.Time
	timer    *time.Timer
}

// fallback logs a fallback to polling or rescanning: the first of each kind
// at warning level, later ones at debug level (all are counted in Stats).
func (r *run) fallback(msg string, args ...any) {
	if r.warned[msg] {
		r.t.log.Debug(msg, args...)
		return
	}
	if r.warned == nil {
		r.warned = map[string]bool{}
	}
	r.warned[msg] = true
	r.t.log.Warn(msg+" (logged once; see the poll_fallbacks and overflows counters)", args...)
}

// rescanDelay is the least time between two scans triggered by directory
// events, so that a burst of creations costs one scan.
const rescanDelay = 50 * time.Millisecond

func (r *run) loop(yield func(*event.Batch) bool) {
	if !r.opts.Watch {
		// Polling only, by configuration.
	} else if h, err := newHints(r.t.newWatcher, r.opts.WriteWindow); err != nil {
		r.fallback("cannot watch directories; polling every file", "err", err, "poll_interval", r.opts.PollInterval)
		r.t.counters.pollFallbacks.Add(1)
	} else {
		h.max = r.opts.MaxWatches
		r.hints = h
	}
	r.start()
	for r.ctx.Err() == nil {
		now := time.Now()
		if r.hints != nil {
			select {
			case <-r.hints.wake:
				r.takeHints()
			default:
			}
		}
		r.housekeep(now)
		if f := r.pop(); f != nil {
			if !r.turn(f, now, yield) {
				return
			}
			continue
		}
		if r.yielded && !now.Before(r.lastData.Add(r.opts.TickInterval)) {
			// Tick again later while a stage or an exporter still holds
			// something of this source.
			r.yielded = r.t.cp.InFlight(r.t.name) > 0
			r.lastData = now
			r.t.counters.ticks.Add(1)
			if !r.yield(yield, event.NewBatch()) {
				return
			}
			continue
		}
		if r.idleOwed {
			r.idleOwed = false
			r.t.onIdle()
		}
		r.wait(now)
	}
}

// housekeep runs what is due of the scan, the polls and the maintenance of
// files (flushes, drains, copy checks): everything but reading.
func (r *run) housekeep(now time.Time) {
	scanAt := r.nextScan
	if r.woken {
		// Awake for written files anyway: a scan due soon runs now
		// rather than waking the agent again for itself.
		scanAt = scanAt.Add(-r.scanSlack())
		r.woken = false
	}
	if !now.Before(scanAt) || (r.scanSoon && now.Sub(r.lastScan) >= rescanDelay) {
		due := r.nextScan
		r.scan(now, false)
		if now.Before(due) && !now.Before(scanAt) {
			r.nextScan = due.Add(r.opts.ScanInterval) // early, not more often
		}
	}
	if len(r.polls) > 0 && !now.Before(r.nextPoll) {
		r.poll(now)
	}
	if !now.Before(r.nextMaint) {
		r.maintain(now)
	}
}

// deadline is the earliest time housekeep has something to do.
func (r *run) deadline() time.Time {
	at := r.nextScan
	if r.scanSoon {
		at = earliest(at, r.lastScan.Add(rescanDelay))
	}
	at = earliest(at, r.nextMaint)
	if len(r.polls) > 0 {
		at = earliest(at, r.nextPoll)
	}
	return at
}

// wait blocks until the earliest deadline, a directory event or the end of ctx.
func (r *run) wait(now time.Time) {
	at := r.deadline()
	if r.yielded {
		at = earliest(at, r.lastData.Add(r.opts.TickInterval))
	}
	d := at.Sub(now)
	if d <= 0 {
		return
	}
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d)
	}
	var wake <-chan struct{}
	if r.hints != nil {
		wake = r.hints.wake
	}
	r.mu.Unlock()
	select {
	case <-r.ctx.Done():
	case <-r.timer.C:
	case <-wake:
		r.mu.Lock()
		r.takeHints()
		r.woken = true
		return
	}
	r.mu.Lock()
}

// checkCopies decides, for the files found since reading began to wait,
// whether they are copies (copytruncate, compress) of content being read:
// a copy is recognised by what was read of its original and by recent
// truncations, which would be forgotten by the time reading goes on.
func (r *run) checkCopies(now time.Time) {
	for _, f := range r.t.files {
		if f.fresh && f.cur.offset == 0 && f.fd != nil {
			if f.gz == nil && r.compressed(f) {
				continue
			}
			r.copyCheck(f, now)
		}
	}
}

// eagerGrace is how long the reader waits in the pipeline before discovery
// goes on without it: longer than a batch's usual hand-off, short enough
// that a file created and renamed away during an outage is still seen
// (created files are looked at as their directory event is read).
const eagerGrace = 50 * time.Millisecond

// leave lets discovery go on while the reader waits in the pipeline (Track,
// yield): it gives up mu and starts the eager goroutine after eagerGrace.
func (r *run) leave() {
	r.away.Store(true)
	r.mu.Unlock()
	r.eagerTimer.Reset(eagerGrace)
}

// come back takes mu again, stopping the eager goroutine.
func (r *run) comeBack() {
	r.eagerTimer.Stop()
	r.away.Store(false)
	select {
	case r.back <- struct{}{}:
	default:
	}
	r.mu.Lock()
}

// yield hands b on, letting discovery go on while the consumer waits.
func (r *run) yield(yield func(*event.Batch) bool, b *event.Batch) bool {
	r.leave()
	ok := yield(b)
	r.comeBack()
	return ok
}

// eager finds and opens files while the reader waits in the pipeline (see
// run). It runs on the eager timer's goroutine and returns when the reader
// is back or the range ends.
func (r *run) eager() {
	for r.eagerOn.CompareAndSwap(false, true) {
		r.eagerLoop()
		r.eagerOn.Store(false)
		if !r.away.Load() {
			return
		}
		// The reader left again while this goroutine was on its way out.
	}
}

func (r *run) eagerLoop() {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	woke := false
	for {
		r.mu.Lock()
		if r.closed || !r.away.Load() || r.ctx.Err() != nil {
			r.mu.Unlock()
			return
		}
		now := time.Now()
		if woke {
			r.takeHints()
			r.woken = true
			woke = false
		}
		r.t.counters.eagerRuns.Add(1)
		r.housekeep(now)
		r.checkCopies(now)
		d := max(r.deadline().Sub(now), time.Millisecond)
		var wake <-chan struct{}
		if r.hints != nil {
			wake = r.hints.wake
		}
		r.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C:
		case <-wake:
			woke = true
		case <-r.back:
		}
	}
}

// scanSlack is how early a scan may run when the tailer is awake for write
// events anyway: a scan due within it is run then instead of on its own
// wake-up. It is the write window (at most half the scan interval),
// so that a steady trickle of writes, read once per window, always meets
// the scan's time within one window and scans never wake the agent.
func (r *run) scanSlack() time.Duration {
	return min(r.opts.WriteWindow, r.opts.ScanInterval/2)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// takeHints turns directory events into ready files and scan requests.
func (r *run) takeHints() {
	now := time.Now()
	overflow := r.hints.take(func(name string, op op) {
		f := r.byPath[name]
		if f != nil && op&opWrite != 0 {
			f.changed = true
			r.markReady(f)
		}
		if op&(opCreate|opRename|opRemove) != 0 || (f == nil && r.matched(name)) {
			// Names changed, or a file not followed (skipped, or not seen
			// yet) was written: the directory is listed again.
			delete(r.clean, filepath.Dir(name))
		}
		if op&(opRename|opRemove) != 0 && r.hints.dirs[name] {
			r.hints.lost(name)
			delete(r.clean, name)
		}
		if op&opCreate != 0 {
			r.created(name, now) // maybe a new file where a renamed one was
		}
		if op&(opCreate|opRename|opRemove) != 0 {
			r.scanSoon = true
		}
	})
	if overflow {
		r.t.counters.overflows.Add(1)
		r.t.counters.pollFallbacks.Add(1)
		r.fallback("directory events overflowed; rescanning and checking every open file",
			"overflows", r.t.counters.overflows.Load())
		clear(r.clean)
		r.nextFull = now // the next scan lists and stats everything
		r.scanSoon = true
		for _, f := range r.t.files {
			if f.fd != nil {
				r.markReady(f)
			}
		}
	}
}

func (r *run) markReady(f *file) {
	if !f.queued {
		f.queued = true
		r.ready = append(r.ready, f)
	}
}

func (r *run) pop() *file {
	for r.head < len(r.ready) {
		f := r.ready[r.head]
		r.ready[r.head] = nil
		r.head++
		if r.head > 64 && r.head*2 > len(r.ready) {
			n := copy(r.ready, r.ready[r.head:])
			clear(r.ready[n:])
			r.ready = r.ready[:n]
			r.head = 0
		}
		if f.queued { // a forgotten file is dequeued without a turn
			f.queued = false
			return f
		}
	}
	r.ready, r.head = r.ready[:0], 0
	return nil
}

// turn reads at most one batch from f, tracks it and yields it. It returns
// false when the range must end.
func (r *run) turn(f *file, now time.Time, yield func(*event.Batch) bool) bool {
	if f.fd == nil && !r.reopen(f, now) {
		return true
	}
	if f.cur.offset == 0 && f.gz == nil && r.compressed(f) {
		return true
	}
	if f.fresh && f.cur.offset == 0 && !r.copyCheck(f, now) {
		return true // maybe a copy still being written
	}
	if f.fd == nil {
		return true // a compressed copy found read already
	}
	b := r.pool.Get()
	b.Source, b.Path, b.Resource = r.t.name, f.path, r.t.res
	flush := f.flush
	f.flush = false
	var start int64
	var res readResult
	for retried := false; ; retried = true {
		if retried && f.cur.offset == 0 && f.gz == nil && r.compressed(f) {
			b.Done()
			return true
		}
		start = f.cur.offset
		before := f.cur
		var err error
		if f.gz != nil {
			res, err = f.gz.lr.read(f.gz, &f.cur, b, r.lim, flush, now.UnixNano(), f.attrs)
		} else {
			r.lr.use(f.id)
			res, err = r.lr.read(preader{f.fd}, &f.cur, b, r.lim, flush, now.UnixNano(), f.attrs)
		}
		if err != nil {
			b.Done()
			r.t.counters.errors.Add(1)
			if !f.errLogged {
				r.t.log.Error("read file; will retry", "path", f.path, "err", err)
				f.errLogged = true
			}
			f.cur.offset = start
			r.closeFile(f)
			return true
		}
		if !retried && f.gz == nil && r.replaced(f, start, res) {
			// What was just read is another content's: the file was
			// truncated and written again past the offset before the
			// tailer looked (copytruncate while reading lagged behind:
			// an outage, a restart). Taken for the rest of the old
			// content, it would be sent twice (again from 0 once the
			// truncation is noticed) and as many of the old content's
			// lines lost (its copy read from past them). Drop it; the
			// old content goes on from where its reading stopped, the
			// file from 0.
			b.Done()
			b = r.pool.Get()
			b.Source, b.Path, b.Resource = r.t.name, f.path, r.t.res
			f.cur = before
			size := int64(-1)
			if res.sawEnd {
				size = res.endAt
			}
			r.truncated(f, size)
			flush = false
			continue
		}
		if f.cur.offset > start || len(b.Records) > 0 || retried || f.gz != nil {
			break
		}
		// Nothing new. Only now is the size worth a look: below the offset,
		// the file was truncated (copytruncate) and is read again from 0.
		st, err := f.fd.Stat()
		if err != nil {
			break
		}
		f.statSize.Store(st.Size())
		if st.Size() >= f.cur.offset {
			f.maxSize = max(f.maxSize, st.Size())
			break
		}
		r.truncated(f, st.Size())
		flush = false
	}
	f.errLogged = false
	f.flush = flush && res.partial > 0 // a flush that did not fit is still owed
	r.count(res)
	end := f.cur.offset
	f.offset.Store(end)
	if res.eof {
		f.statSize.Store(end + int64(res.partial))
	} else if f.statSize.Load() < end {
		f.statSize.Store(end)
	}
	f.maxSize = max(f.maxSize, end+int64(res.partial))
	f.growth.note(f.maxSize, now)
	f.lastRead = now
	if end > start {
		f.lastGrowth = now
	}
	if f.fp.Len < r.opts.FingerprintBytes && end > int64(f.fp.Len) {
		r.refingerprint(f)
	}
	f.atEOF = res.eof
	if res.eof {
		if res.partial != f.partial {
			f.partial, f.partialAt = res.partial, now
		}
		if f.partial > 0 {
			r.nextMaint = earliest(r.nextMaint, f.partialAt.Add(r.opts.FlushTimeout))
		}
		if f.state == draining || r.opts.DeleteAfterRead {
			r.nextMaint = earliest(r.nextMaint, f.lastGrowth.Add(r.opts.RotateWait))
		}
	} else {
		f.partial = 0
		r.markReady(f)
	}
	done := f.gz != nil && f.gz.complete && res.eof && res.partial == 0
	if f.gz != nil && f.gz.complete && res.partial > 0 {
		f.flush = true // a complete file: its last line has no more to wait for
		r.markReady(f)
	}
	if len(b.Records) == 0 && end == start {
		b.Done()
		if done {
			r.finishCompressed(f)
		}
		return true
	}
	b.File = event.FileID{Dev: f.id.dev, Ino: f.id.ino, Fingerprint: f.fp}
	b.Start, b.End = start, end
	key, fp, path := f.key, f.fp, f.path
	r.leave()
	ack, err := r.t.cp.Track(r.ctx, key, fp, path, start, end)
	r.comeBack()
	if err != nil {
		b.Done() // not tracked: read again on the next start
		return false
	}
	if r.opts.DeleteAfterRead {
		f.inflight.Add(1)
		b.SetAck(func() { ack(); f.inflight.Add(-1) })
	} else {
		b.SetAck(ack)
	}
	if !r.yield(yield, b) {
		return false
	}
	r.yielded, r.lastData = !r.t.noTicks, now
	r.idleOwed = r.t.onIdle != nil
	if done {
		r.finishCompressed(f)
	}
	return true
}

// replaced reports whether a read of f from start found the bytes of other
// content than f's, which it would take for the rest of f's: the file ends
// below the size its content was seen to have (a file only shrinks by
// truncation), or a read from the start finds another start than f's
// fingerprint (one pread, once per content: a file seen and not read
// before it was truncated and written again).
func (r *run) replaced(f *file, start int64, res readResult) bool {
	// A read that found nothing past start is left to turn's look at the
	// size (size below the offset).
	if res.sawEnd && res.endAt > start && res.endAt < f.maxSize {
		return true
	}
	if start == 0 && f.cur.offset > 0 && f.fp.Len > 0 {
		same, err := sameStart(f.fd, f.fp, r.fpBuf)
		return err == nil && !same
	}
	return false
}

// finishCompressed closes a compressed file read to its end. It is not read
// again: its checkpoint is at its end, and the scans skip it while its size
// and time stay the same.
func (r *run) finishCompressed(f *file) {
	r.t.log.Debug("read compressed file", "path", f.path, "bytes", f.cur.offset)
	if st, err := f.fd.Stat(); err == nil {
		r.skipped[f.id] = skipped{st.Size(), st.ModTime(), r.gen, true}
	}
	r.closeFile(f)
	r.forget(f, false)
}

// compressed stops following a file that turns out to be compressed
// (logrotate creates the .gz empty, then fills it).
func (r *run) compressed(f *file) bool {
	var magic [magicLen]byte
	if n, _ := f.fd.ReadAt(magic[:], 0); formatOf(magic[:n]) == formatNone {
		return false
	}
	if r.opts.readsGzip(f.path) {
		f.gz = newGzReader(f.fd, r.opts, f.id)
		return false
	}
	r.t.log.Debug("skipping compressed file", "path", f.path)
	if st, err := f.fd.Stat(); err == nil {
		r.skipped[f.id] = skipped{st.Size(), st.ModTime(), r.gen, false}
	}
	r.closeFile(f)
	r.forget(f, false)
	r.t.cp.Forget(f.key)
	return true
}

func (r *run) count(res readResult) {
	c := &r.t.counters
	c.lines.Add(uint64(res.lines))
	c.bytes.Add(uint64(res.bytes))
	if res.truncated > 0 {
		c.truncated.Add(uint64(res.truncated))
	}
	if res.invalid > 0 {
		c.invalid.Add(uint64(res.invalid))
	}
	if res.nulBytes > 0 {
		c.nulBytes.Add(uint64(res.nulBytes))
	}
}

// truncated restarts f at offset 0: it was truncated (copytruncate) or its
// content was replaced. The tracker starts a new epoch for it.
func (r *run) truncated(f *file, size int64) {
	r.t.log.Info("file truncated; reading it from the start", "path", f.path, "offset", f.cur.offset, "size", size)
	r.t.counters.truncations.Add(1)
	now := time.Now()
	var m *movedContent
	if f.fp.Len > 0 && f.gz == nil {
		// The content read so far, and its ranges in flight, go to the
		// content's own key: a copy that holds it takes them over, and
		// until then a crash leaves them where a restart looks for them.
		mk := checkpoint.MovedKey(r.t.name, f.fp)
		prev := max(f.maxSize, f.statSize.Load())
		unread := prev > f.cur.offset // seen, not read: in the copy only
		if f.cur.offset > 0 || unread {
			r.t.cp.Move(f.key, mk, !unread)
		}
		if unread || r.opts.FollowRotated {
			// Lines written since the file was last looked at may be in
			// the copy too (copytruncate): it is looked for whether or
			// not unread bytes were seen; a loss is reported only for
			// those that were.
			m = &movedContent{fp: f.fp, path: f.path, offset: f.cur.offset, size: prev, at: now}
		}
	}
	r.noteGone(f, now, m)
	if m != nil {
		r.moved = append(r.moved, m)
		r.findMoved(now)
	}
	f.maxSize = max(size, 0)
	f.growth.forget()
	r.lr.use(f.id)
	r.lr.drop()
	f.cur = cursor{}
	f.offset.Store(0)
	f.partial, f.flush = 0, false
	r.t.mu.Lock()
	f.fp = event.Fingerprint{}
	r.t.mu.Unlock()
	r.refingerprint(f)
}

func (r *run) refingerprint(f *file) {
	fp, err := fingerprint(f.fd, r.opts.FingerprintBytes, r.fpBuf)
	if err != nil || fp.Len < f.fp.Len {
		return
	}
	r.t.mu.Lock()
	f.fp = fp
	r.t.mu.Unlock()
}

// reopen opens a file closed to respect max_open_files, checking that the
// path still leads to the same content.
func (r *run) reopen(f *file, now time.Time) bool {
	if f.state != live {
		return false
	}
	fd, err := openFile(f.path)
	if err != nil {
		r.scanSoon = true
		return false
	}
	st, err := fd.Stat()
	if err != nil || fileID(fd, st) != f.id {
		fd.Close()
		r.scanSoon = true
		return false
	}
	r.t.mu.Lock()
	f.fd = fd
	r.t.mu.Unlock()
	r.t.counters.open.Add(1)
	if f.gz != nil {
		f.gz.f, f.gz.broken = fd, true // decompress again up to the offset
	}
	if same, err := sameStart(fd, f.fp, r.fpBuf); err == nil && !same {
		r.truncated(f, st.Size()) // same inode, other content: recycled or rewritten
	}
	r.evict(now, f)
	return true
}

func (r *run) closeFile(f *file) {
	if f.fd == nil {
		return
	}
	f.fd.Close()
	r.t.mu.Lock()
	f.fd = nil
	r.t.mu.Unlock()
	if f.state == live {
		r.t.counters.open.Add(-1)
	}
}

// evict closes the least recently read live files while more than
// MaxOpenFiles are open, never keep (the file about to be read).
func (r *run) evict(now time.Time, keep *file) {
	limit := r.opts.MaxOpenFiles
	if int(r.t.counters.open.Load()) <= limit {
		return
	}
	var cands []*file
	for _, f := range r.t.files {
		if f.fd != nil && f.state == live && f != keep && f.partial == 0 {
			cands = append(cands, f)
		}
	}
	// Idle files first, then the least recently read.
	slices.SortFunc(cands, func(a, b *file) int {
		if a.queued != b.queued {
			if a.queued {
				return 1
			}
			return -1
		}
		return a.lastRead.Compare(b.lastRead)
	})
	target := limit - limit/8
	for _, f := range cands {
		if int(r.t.counters.open.Load()) <= target {
			break
		}
		if f.queued || !f.atEOF {
			// Unread bytes: found again by path when their turn comes, or
			// by identity or content if the file moves meanwhile.
			r.t.counters.forcedCloses.Add(1)
			r.fallback("max_open_files closes files with unread bytes; if they rotate before they are reopened, their unread end is looked for outside the patterns",
				"max_open_files", limit, "path", f.path, "unread", max(f.maxSize-f.cur.offset, 0))
		}
		r.closeFile(f)
	}
}

// poll checks the files no watch covers (polled, draining) for a size other
// than what was read.
func (r *run) poll(now time.Time) {
	r.nextPoll = now.Add(r.opts.PollInterval)
	for _, f := range r.polls {
		if f.fd == nil || f.queued || !(f.polled || f.state == draining) {
			continue
		}
		if st, err := f.fd.Stat(); err == nil && st.Size() != f.cur.offset+int64(f.partial) {
			f.statSize.Store(st.Size())
			if st.Size() > f.cur.offset {
				f.maxSize = max(f.maxSize, st.Size())
				f.growth.note(f.maxSize, now)
				if f.fp.Len < r.opts.FingerprintBytes && int64(f.fp.Len) < st.Size() && f.gz == nil {
					// Unread while the pipeline waits: its content is
					// recognised by this fingerprint if it is compressed.
					r.refingerprint(f)
					r.t.cp.Touch(f.key, f.fp, f.path, f.maxSize)
				}
			}
			r.markReady(f)
		}
	}
}

// maintain flushes due partial lines, closes drained files and deletes read
// ones; it sets the next time it is needed.
func (r *run) maintain(now time.Time) {
	next := now.Add(time.Hour)
	for _, f := range r.t.files {
		if f.fresh && !f.queued && f.cur.offset == 0 {
			if due := f.found.Add(r.opts.RotateWait); !now.Before(due) {
				r.markReady(f) // a copy check that waited: decide now
			}
		}
		if f.queued || !f.atEOF {
			continue
		}
		if f.partial > 0 && f.gz != nil {
			continue // a compressed file's last line is flushed when its stream is complete
		}
		if f.partial > 0 {
			if due := f.partialAt.Add(r.opts.FlushTimeout); !now.Before(due) {
				f.flush = true
				r.markReady(f)
			} else {
				next = earliest(next, due)
			}
			continue
		}
		switch {
		case f.state == draining && f.fd != nil:
			if due := f.lastGrowth.Add(r.opts.RotateWait); now.Before(due) {
				next = earliest(next, due)
			} else {
				r.retire(f)
			}
		case r.opts.DeleteAfterRead && f.state == live:
			if due := f.lastGrowth.Add(r.opts.RotateWait); now.Before(due) {
				next = earliest(next, due)
			} else if f.inflight.Load() > 0 {
				next = earliest(next, now.Add(r.opts.PollInterval)) // wait for the acknowledgements
			} else {
				r.deleteRead(f)
			}
		}
	}
	r.nextMaint = next
}

// retire closes a drained file. A deleted file's checkpoint is forgotten;
// a renamed one's is kept in case it is matched again (it expires if not).
func (r *run) retire(f *file) {
	deleted := false
	if st, err := f.fd.Stat(); err == nil {
		deleted = unlinked(f.fd, st)
	}
	r.t.log.Debug("closing drained file", "path", f.path, "offset", f.cur.offset, "deleted", deleted)
	if deleted {
		r.noteGone(f, time.Now(), nil) // a compressed copy may follow
	}
	r.closeFile(f)
	if deleted && f.copied {
		// Its content lives on in a copy that has no checkpoint of its
		// own: keep this one (it expires after the retention).
		r.t.counters.deleted.Add(1)
		r.forget(f, false)
		return
	}
	r.forget(f, deleted)
}

func (r *run) forget(f *file, dropCheckpoint bool) {
	f.queued = false
	r.t.mu.Lock()
	delete(r.t.files, f.id)
	r.t.mu.Unlock()
	if r.byPath[f.path] == f {
		delete(r.byPath, f.path)
	}
	if dropCheckpoint {
		// Dropped once its ranges in flight are acknowledged: until then a
		// restart finds the content wherever it went (compressed).
		r.t.counters.deleted.Add(1)
		r.t.cp.Move(f.key, f.key, true)
	}
}

// deleteRead removes a file that was read to its end, stayed unchanged for
// RotateWait and whose every batch was acknowledged (delete_after_read).
func (r *run) deleteRead(f *file) {
	if f.fd != nil {
		st, err := f.fd.Stat()
		if err != nil || st.Size() != f.cur.offset {
			r.markReady(f)
			return
		}
	}
	if err := os.Remove(f.path); err != nil {
		r.t.log.Warn("delete read file", "path", f.path, "err", err)
		return
	}
	r.t.log.Debug("deleted read file", "path", f.path, "offset", f.cur.offset)
	r.closeFile(f)
	r.forget(f, true)
}

// close ends the range; the caller holds mu, which close gives up.
func (r *run) close() {
	r.closed = true
	r.eagerTimer.Stop()
	for r.eagerOn.Load() {
		// An eager goroutine on its way: it sees closed and returns.
		select {
		case r.back <- struct{}{}:
		default:
		}
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.hints != nil {
		r.hints.close()
	}
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	for _, f := range r.t.files {
		if f.fd != nil {
			f.fd.Close()
			f.fd = nil
		}
	}
	r.t.counters.open.Store(0)
}

func fileAttrs(o *Options, path string) []event.KeyValue {
	var attrs []event.KeyValue
	if o.IncludeFilePath {
		attrs = append(attrs, event.KeyValue{Key: AttrFilePath, Value: event.String(path)})
	}
	if o.IncludeFileName {
		attrs = append(attrs, event.KeyValue{Key: AttrFileName, Value: event.String(filepath.Base(path))})
	}
	return attrs
}
