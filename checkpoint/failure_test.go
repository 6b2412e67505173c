package checkpoint

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
)

// levels counts the records logged, by level.
type levels struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levels) WithGroup(string) slog.Handler            { return l }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Level]++
	return nil
}

// A checkpoint file that cannot be written: every flush fails with
// ErrWrite and keeps the offsets, one warning for the whole run of failures
// (not one per attempt), WriteError says since when; once the file can be
// written, one line says so, the offsets are saved and WriteError clears.
func TestWriteFailureWarnsOncePerChange(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log := &levels{n: map[slog.Level]int{}}
	s := NewStore(testenv.TempDir(t))
	tr := NewTracker(s, slog.New(log), Options{Now: func() time.Time { return now }})
	// A directory where the file goes: no open, create or rename succeeds,
	// whatever the user's privileges.
	if err := os.Mkdir(s.Path(), 0o755); err != nil {
		t.Fatal(err)
	}
	start := now
	for i := range 5 {
		track(t, tr, int64(i*10), int64(i*10+10))()
		err := tr.Flush()
		if !errors.Is(err, ErrWrite) {
			t.Fatalf("flush %d: %v, want ErrWrite", i, err)
		}
		now = now.Add(time.Second)
	}
	if since, err := tr.WriteError(); err == nil || !since.Equal(start) {
		t.Errorf("WriteError = %v, %v; want the error since %v", since, err, start)
	}
	if log.n[slog.LevelWarn] != 1 {
		t.Errorf("%d warnings for 5 failed writes, want 1", log.n[slog.LevelWarn])
	}
	if off := committed(t, tr); off != 50 {
		t.Errorf("committed %d in memory, want 50", off)
	}
	os.Remove(s.Path())
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.WriteError(); err != nil {
		t.Errorf("WriteError after a good write = %v, want nil", err)
	}
	if log.n[slog.LevelWarn] != 1 || log.n[slog.LevelInfo] != 1 {
		t.Errorf("logged %v, want one warning and one info line", log.n)
	}
	restarted := NewTracker(s, slog.New(slog.DiscardHandler), Options{})
	if err := restarted.Load(); err != nil {
		t.Fatal(err)
	}
	if off, _, ok := restarted.Resume(key); !ok || off != 50 {
		t.Errorf("saved offset %d, %v; want 50", off, ok)
	}
}
