package tailer

import (
	"slices"
	"strings"

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
		Scans: c.scans.Load(),
	}
	t.mu.Lock()
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
	slices.SortFunc(s.Files, func(a, b FileStats) int { return strings.Compare(a.Path, b.Path) })
	return s
}
