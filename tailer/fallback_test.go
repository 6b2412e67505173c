package tailer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// The kernel's inotify limits and event-queue overflow, forced through the
// tailer's newWatcher hook without changing system-wide limits. Each fake
// wraps the real inotify watcher: only the failure is simulated, the events
// that do come are real.

// limitedWatcher is the real watcher whose Add fails with ENOSPC (the
// max_user_watches limit) for the directories in full.
type limitedWatcher struct {
	dirWatcher
	full map[string]bool
}

func (w limitedWatcher) Add(dir string) error {
	if w.full[dir] {
		return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: syscall.ENOSPC}
	}
	return w.dirWatcher.Add(dir)
}

// lossyWatcher is the real watcher whose events can be lost, as when the
// kernel's queue overflows: between drop and overflow nothing is reported,
// then the overflow is.
type lossyWatcher struct {
	inner *hints // the real watcher reports here
	outer *hints // the tailer's
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	dropping bool
}

func newLossyWatcher(outer *hints) (*lossyWatcher, error) {
	inner, err := newHints(newInotify, DefaultOptions().WriteWindow)
	if err != nil {
		return nil, err
	}
	w := &lossyWatcher{inner: inner, outer: outer, stop: make(chan struct{}), done: make(chan struct{})}
	go w.forward()
	return w, nil
}

func (w *lossyWatcher) forward() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.inner.wake:
		}
		w.mu.Lock()
		dropping := w.dropping
		w.mu.Unlock()
		overflow := w.inner.take(func(name string, o op) {
			if !dropping {
				w.outer.event(name, o)
			}
		})
		if overflow {
			w.outer.overflowed()
		}
		w.outer.signal()
	}
}

func (w *lossyWatcher) drop() {
	w.mu.Lock()
	w.dropping = true
	w.mu.Unlock()
}

// overflow ends the loss and reports it, as the kernel's IN_Q_OVERFLOW does.
func (w *lossyWatcher) overflow() {
	w.mu.Lock()
	w.dropping = false
	w.mu.Unlock()
	w.outer.overflowed()
	w.outer.signal()
}

func (w *lossyWatcher) Add(dir string) error    { return w.inner.w.Add(dir) }
func (w *lossyWatcher) Remove(dir string) error { return w.inner.w.Remove(dir) }
func (w *lossyWatcher) Close() error {
	close(w.stop)
	<-w.done
	return w.inner.w.Close()
}

// logRecords keeps the records logged at warning level and above.
type logRecords struct {
	mu    sync.Mutex
	msgs  []string
	attrs []string // each record's attributes, key=value separated by spaces
	next  slog.Handler
}

func newLogRecords(t testing.TB) *logRecords {
	return &logRecords{next: testLogger(t).Handler()}
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.mu.Lock()
		l.msgs = append(l.msgs, r.Message)
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, "%s=%v ", a.Key, a.Value)
			return true
		})
		l.attrs = append(l.attrs, b.String())
		l.mu.Unlock()
	}
	if l.next.Enabled(ctx, r.Level) {
		return l.next.Handle(ctx, r)
	}
	return nil
}

// count returns how many warnings contained s.
func (l *logRecords) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// rotateByRename renames path to path+".1" (unmatched by the tests'
// patterns), writes late lines through the old descriptor, then reopens.
func rotateByRename(t *testing.T, w *tailertest.Writer, path string, late int) {
	t.Helper()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, late)
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
}

// A directory whose watch cannot be added (ENOSPC: max_user_watches) has
// its files polled; the other directory keeps its watch. Every line arrives
// once, through appends and a rename rotation in the polled directory, and
// the fallback is logged once and counted.
func TestWatchLimitFallsBackToPolling(t *testing.T) {
	root := testenv.TempDir(t)
	full, ok := filepath.Join(root, "full"), filepath.Join(root, "ok")
	for _, d := range []string{full, ok} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logs := newLogRecords(t)
	count := tailertest.NewCounter()
	opts := testOptions(filepath.Join(root, "*", "*.log"))
	h := startTailerWith(t, opts, testenv.TempDir(t), count, slog.New(logs), func(tl *Tailer) {
		tl.newWatcher = func(h *hints) (dirWatcher, error) {
			w, err := newInotify(h)
			return limitedWatcher{w, map[string]bool{full: true}}, err
		}
	})
	wFull := newWriter(t, filepath.Join(full, "app.log"), "full")
	wOK := newWriter(t, filepath.Join(ok, "app.log"), "ok")
	for round := range 5 {
		mustWrite(t, wFull, 200)
		mustWrite(t, wOK, 200)
		h.waitCount(wFull.Written() + wOK.Written())
		if round == 2 {
			rotateByRename(t, wFull, filepath.Join(full, "app.log"), 50)
			mustWrite(t, wFull, 100)
		}
	}
	h.waitCount(wFull.Written() + wOK.Written())
	time.Sleep(5 * opts.ScanInterval) // several scans: duplicates and repeated logs would show
	st := h.tl.Stats()
	h.stop()
	expect(t, count, map[string]int{"full": wFull.Written(), "ok": wOK.Written()}, 0)
	if st.PolledDirs != 1 || st.WatchedDirs != 2 || st.PollFallbacks != 1 {
		t.Errorf("stats: polled dirs %d, watched %d, poll fallbacks %d; want 1, 2 (root, ok), 1", st.PolledDirs, st.WatchedDirs, st.PollFallbacks)
	}
	if n := logs.count("cannot watch directories"); n != 1 {
		t.Errorf("fallback logged %d times, want once; warnings %q", n, logs.msgs)
	}
}

// Past max_watches the directories are polled, not watched: every line
// arrives once, and the limit is logged once with the option to raise.
func TestMaxWatchesPollsTheRest(t *testing.T) {
	root := testenv.TempDir(t)
	var ws []*tailertest.Writer
	for i := range 4 {
		d := filepath.Join(root, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, newWriter(t, filepath.Join(d, "app.log"), fmt.Sprintf("w%d", i)))
	}
	logs := newLogRecords(t)
	count := tailertest.NewCounter()
	opts := testOptions(filepath.Join(root, "*", "*.log"))
	opts.MaxWatches = 2
	h := startTailerWith(t, opts, testenv.TempDir(t), count, slog.New(logs), nil)
	want := map[string]int{}
	total := 0
	for range 3 {
		for i, w := range ws {
			mustWrite(t, w, 100)
			want[fmt.Sprintf("w%d", i)] = w.Written()
			total += 100
		}
		h.waitCount(total)
	}
	time.Sleep(3 * opts.ScanInterval)
	st := h.tl.Stats()
	h.stop()
	expect(t, count, want, 0)
	if st.WatchedDirs != 2 || st.PolledDirs != 3 {
		t.Errorf("stats: watched %d, polled %d; want 2 (max_watches) and 3 (the rest of root and 4 dirs)", st.WatchedDirs, st.PolledDirs)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if n := len(logs.msgs); n != 1 || !strings.Contains(logs.msgs[0], "cannot watch directories") || !strings.Contains(logs.attrs[0], "raise max_watches") {
		t.Errorf("warnings %q %q: want one, about max_watches", logs.msgs, logs.attrs)
	}
}

// No watcher at all (EMFILE: max_user_instances): every file is polled, new
// files are found by the scan, and nothing is lost or read twice.
func TestWatcherLimitPollsEverything(t *testing.T) {
	dir := testenv.TempDir(t)
	logs := newLogRecords(t)
	count := tailertest.NewCounter()
	opts := testOptions(filepath.Join(dir, "*.log"))
	h := startTailerWith(t, opts, testenv.TempDir(t), count, slog.New(logs), func(tl *Tailer) {
		tl.newWatcher = func(*hints) (dirWatcher, error) {
			return nil, os.NewSyscallError("inotify_init1", syscall.EMFILE)
		}
	})
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	written := map[string]int{}
	seen := 0
	for round := range 4 {
		mustWrite(t, w, 300)
		// A file renamed away before any scan saw it cannot be found: rotate
		// only what was seen.
		h.waitCount(seen + 300)
		if round == 1 {
			rotateByRename(t, w, path, 50)
		}
		other := newWriter(t, filepath.Join(dir, fmt.Sprintf("new%d.log", round)), fmt.Sprintf("n%d", round))
		mustWrite(t, other, 20)
		written[other.Stream] = 20
		seen = w.Written() + 20*(round+1)
		h.waitCount(seen)
	}
	written["a"] = w.Written()
	total := 0
	for _, n := range written {
		total += n
	}
	h.waitCount(total)
	time.Sleep(5 * opts.ScanInterval)
	st := h.tl.Stats()
	h.stop()
	expect(t, count, written, 0)
	if st.WatchedDirs != 0 || st.PollFallbacks != 1 {
		t.Errorf("stats: watched dirs %d, poll fallbacks %d; want 0, 1", st.WatchedDirs, st.PollFallbacks)
	}
	if n := logs.count("cannot watch directories; polling every file"); n != 1 {
		t.Errorf("fallback logged %d times, want once; warnings %q", n, logs.msgs)
	}
}

// Events lost to a queue overflow: while they are dropped, lines are
// appended, the file is rotated by rename (late lines through the old
// descriptor) and a new file appears. The scans in between trust the
// (silent) watch, so nothing shows up; the overflow report makes the tailer
// rescan everything and check every open file, and every line then arrives
// once. A second overflow is counted but not logged again.
func TestEventOverflowRescans(t *testing.T) {
	dir := testenv.TempDir(t)
	logs := newLogRecords(t)
	count := tailertest.NewCounter()
	opts := testOptions(filepath.Join(dir, "*.log"))
	opts.ScanInterval = 500 * time.Millisecond // full scans every 15 s: the overflow must trigger the rescan
	var lossy *lossyWatcher
	h := startTailerWith(t, opts, testenv.TempDir(t), count, slog.New(logs), func(tl *Tailer) {
		tl.newWatcher = func(h *hints) (dirWatcher, error) {
			w, err := newLossyWatcher(h)
			lossy = w
			return w, err
		}
	})
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 100)
	h.waitCount(100)
	time.Sleep(2 * opts.ScanInterval) // the directory is clean: its listing is trusted

	written := map[string]int{}
	for round := range 2 {
		lossy.drop()
		mustWrite(t, w, 200)
		rotateByRename(t, w, path, 50)
		mustWrite(t, w, 100)
		n := newWriter(t, filepath.Join(dir, fmt.Sprintf("new%d.log", round)), fmt.Sprintf("n%d", round))
		mustWrite(t, n, 30)
		written[n.Stream] = 30
		written["a"] = w.Written()
		before := count.Count()
		time.Sleep(3 * opts.ScanInterval)
		if got := count.Count(); got != before {
			t.Logf("round %d: %d lines arrived while events were dropped", round, got-before)
		}
		begin := time.Now()
		lossy.overflow()
		total := 0
		for _, n := range written {
			total += n
		}
		h.waitCount(total)
		t.Logf("round %d: caught up %v after the overflow", round, time.Since(begin).Round(time.Millisecond))
		if err := os.Remove(path + ".1"); err != nil { // the next rotation renames to the same name
			t.Fatal(err)
		}
		time.Sleep(2 * opts.ScanInterval)
	}
	time.Sleep(2 * opts.ScanInterval)
	st := h.tl.Stats()
	h.stop()
	expect(t, count, written, 0)
	if st.Overflows != 2 || st.PollFallbacks != 2 {
		t.Errorf("stats: overflows %d, poll fallbacks %d; want 2, 2", st.Overflows, st.PollFallbacks)
	}
	if n := logs.count("overflowed"); n != 1 {
		t.Errorf("overflow logged %d times, want once; warnings %q", n, logs.msgs)
	}
}
