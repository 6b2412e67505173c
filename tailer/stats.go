package tailer

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/logpump/logpump/event"
)

// Stats is a snapshot of a tailer's state, for /debug/pipeline and metrics.
type Stats struct {
	// Files lists every followed file, sorted by path.
	Files []FileStats
	// OpenFiles counts descriptors held for matched files; Draining counts
	// renamed or deleted files still open to be read to their end.
	OpenFiles, Draining int
	// WatchedDirs have a directory watch; PolledDirs could not get one and
	// their files are polled.
	WatchedDirs, PolledDirs int
	// Lines and Bytes read; Bytes includes line ends and skipped bytes.
	Lines, Bytes uint64
	// TruncatedLines were longer than max_line_bytes; InvalidUTF8Lines held
	// bytes that are not UTF-8; NULBytes were skipped at line starts (sparse
	// regions).
	TruncatedLines, InvalidUTF8Lines, NULBytes uint64
	// Rotations counts files that stopped matching (renamed, deleted, link
	// changed); Truncations files read again from the start; Deleted files
	// forgotten after deletion (or removed by delete_after_read).
	Rotations, Truncations, Deleted uint64
	// PollFallbacks counts directories that fell back to polling (failed
	// watch, or the watcher itself) and event-queue overflows.
	PollFallbacks, Overflows uint64
	// Ticks yielded; ReadErrors met (each retried); Scans of the include
	// patterns run.
	Ticks, ReadErrors, Scans uint64
	// Copies counts new files found to be copies of followed files
	// (copytruncate) and read from the offset already read of the original.
	Copies uint64
	// Recovered counts files found holding the unread end of a file that
	// rotation moved out of the patterns (renamed, copied, compressed), read
	// from the acknowledged offset (follow_rotated).
	Recovered uint64
	// LostBytes counts bytes known to have been on disk, never acknowledged,
	// and no longer readable, by reason (LostNotFound, LostTruncated,
	// LostClosed); LostFiles the files they were in.
	LostBytes map[string]uint64
	LostFiles uint64
	// EagerRuns counts passes of discovery made while reading waited for
	// the pipeline (backpressure); ForcedCloses files with unread bytes
	// closed to respect max_open_files.
	EagerRuns, ForcedCloses uint64
	// BehindBytes sums, over the followed files, the bytes on disk not yet
	// acknowledged; BehindSeconds is how long the oldest of them has been
	// on disk (at the resolution the tailer looks at sizes: about a second).
	BehindBytes   int64
	BehindSeconds float64
	// Oldest is the path of the file holding the oldest unacknowledged byte.
	Oldest string `json:",omitempty"`
	// Unreadable lists the matched files that cannot be opened now
	// (permission denied); UnreadableFiles counts every file ever found so
	// (each once until it is readable or gone).
	Unreadable      []UnreadableFile `json:",omitempty"`
	UnreadableFiles uint64
}

// FileStats is the state of one followed file.
type FileStats struct {
	Path string
	File event.FileID
	// Offset is the next byte to read; Size the size at the last look;
	// Lag = Size - Offset, bytes not read yet.
	Offset, Size, Lag int64
	// Open reports whether a descriptor is held; Draining that the file no
	// longer matches and is read to its end before it is closed.
	Open, Draining bool
	// InFlight counts batches not yet acknowledged (only with delete_after_read).
	InFlight int64
	// Committed is the acknowledged offset; Behind = Size - Committed,
	// bytes on disk not acknowledged yet, and BehindSince when the first of
	// them was seen on disk (zero when none).
	Committed, Behind int64
	BehindSince       time.Time `json:",omitzero"`
}

// Stats returns a snapshot. It is safe to call from any goroutine, while
// Batches runs.
func (t *Tailer) Stats() Stats {
	c := &t.counters
	s := Stats{
		WatchedDirs: int(c.watched.Load()), PolledDirs: int(c.polledDirs.Load()),
		Lines: c.lines.Load(), Bytes: c.bytes.Load(),
		TruncatedLines: c.truncated.Load(), InvalidUTF8Lines: c.invalid.Load(), NULBytes: c.nulBytes.Load(),
		Rotations: c.rotations.Load(), Truncations: c.truncations.Load(), Deleted: c.deleted.Load(),
		PollFallbacks: c.pollFallbacks.Load(), Overflows: c.overflows.Load(),
		Ticks: c.ticks.Load(), ReadErrors: c.errors.Load(), Copies: c.copies.Load(),
		Scans: c.scans.Load(), Recovered: c.recovered.Load(),
		LostBytes: map[string]uint64{
			LostNotFound: c.lostNotFound.Load(), LostTruncated: c.lostTruncated.Load(), LostClosed: c.lostClosed.Load(),
		},
		LostFiles: c.lostFiles.Load(), EagerRuns: c.eagerRuns.Load(), ForcedCloses: c.forcedCloses.Load(),
		UnreadableFiles: c.unreadable.Load(),
	}
	now := time.Now()
	var oldest time.Time
	t.mu.Lock()
	s.Unreadable = t.unreadableFiles()
	s.Files = make([]FileStats, 0, len(t.files))
	for _, f := range t.files {
		fs := FileStats{
			Path:     f.path,
			File:     event.FileID{Dev: f.id.dev, Ino: f.id.ino, Fingerprint: f.fp},
			Offset:   f.offset.Load(),
			Size:     f.statSize.Load(),
			Open:     f.fd != nil,
			Draining: f.state == draining,
			InFlight: f.inflight.Load(),
		}
		fs.Lag = max(fs.Size-fs.Offset, 0)
		fs.Committed = fs.Offset
		if off, ok := t.cp.Committed(f.key); ok && off <= fs.Offset {
			fs.Committed = off
		}
		fs.Behind = max(fs.Size-fs.Committed, 0)
		if fs.Behind > 0 {
			fs.BehindSince = f.growth.since(fs.Committed, now)
			s.BehindBytes += fs.Behind
			if oldest.IsZero() || fs.BehindSince.Before(oldest) {
				oldest, s.Oldest = fs.BehindSince, fs.Path
			}
		}
		if fs.Open {
			if fs.Draining {
				s.Draining++
			} else {
				s.OpenFiles++
			}
		}
		s.Files = append(s.Files, fs)
	}
	t.mu.Unlock()
	if !oldest.IsZero() {
		s.BehindSeconds = now.Sub(oldest).Seconds()
	}
	slices.SortFunc(s.Files, func(a, b FileStats) int { return strings.Compare(a.Path, b.Path) })
	return s
}

// growth remembers when a file reached which size, at most one sample per
// growthEvery, so that Stats can tell how long the oldest unacknowledged
// byte has been on disk. Bounded: when full, the newest sample is
// overwritten, which keeps the estimate on the side of older.
type growth struct {
	// last is the newest sample, read and written by the tailer's
	// goroutines only (under the run's state), to skip the lock when no
	// sample is due.
	last    sizeAt
	mu      sync.Mutex
	samples [8]sizeAt
	n       int
}

type sizeAt struct {
	size int64
	at   time.Time
}

const growthEvery = time.Second

// note records that the file had size bytes at now. Cheap when nothing is
// due: one comparison, no lock (the caller is the only writer).
func (g *growth) note(size int64, now time.Time) {
	if size <= g.last.size || now.Sub(g.last.at) < growthEvery {
		return
	}
	g.last = sizeAt{size, now}
	g.mu.Lock()
	if g.n == len(g.samples) {
		g.n--
	}
	g.samples[g.n] = sizeAt{size, now}
	g.n++
	g.mu.Unlock()
}

// forget drops the samples (the file was truncated: its sizes start over).
func (g *growth) forget() {
	g.last = sizeAt{}
	g.mu.Lock()
	g.n = 0
	g.mu.Unlock()
}

// since returns when the byte at offset was first seen on disk: the time
// of the first sample past it, or now when none is (seen since the last
// sample). Samples at or below offset are dropped.
func (g *growth) since(offset int64, now time.Time) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := 0
	for i < g.n && g.samples[i].size <= offset {
		i++
	}
	if i > 0 && i < g.n {
		// Keep the last sample at or below offset out: the next one is
		// the first past it.
		copy(g.samples[:], g.samples[i:g.n])
		g.n -= i
		i = 0
	}
	if i < g.n {
		return g.samples[i].at
	}
	return now
}
