package tailer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// Rotation by rename: the writer keeps writing to the renamed file for a
// while (late writes through its old descriptor), then reopens the path. All
// lines arrive once, whether or not the rotated name matches the patterns.
func TestRenameRotation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern string
	}{
		{"rotated name unmatched", "app.log"},
		{"rotated name matched", "app.log*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.TempDir(t)
			path := filepath.Join(dir, "app.log")
			w := newWriter(t, path, "a")
			count := tailertest.NewCounter()
			h := startTailer(t, testOptions(filepath.Join(dir, tc.pattern)), testenv.TempDir(t), count)
			waitFor(t, func() bool { return len(h.tl.Stats().Files) == 1 })
			for i := range 5 {
				mustWrite(t, w, 300)
				if err := os.Rename(path, filepath.Join(dir, "app.log."+string(rune('1'+i)))); err != nil {
					t.Fatal(err)
				}
				mustWrite(t, w, 50) // late writes to the renamed file
				if err := w.Reopen(); err != nil {
					t.Fatal(err)
				}
				mustWrite(t, w, 100)
				// A file renamed away before any look at it under a matched
				// name cannot be found; the test rotates only seen files.
				h.waitCount(w.Written())
			}
			h.waitCount(w.Written())
			time.Sleep(300 * time.Millisecond) // time for duplicates to show
			h.stop()
			expect(t, count, map[string]int{"a": w.Written()}, 0)
			if st := h.tl.Stats(); st.Rotations == 0 && tc.pattern == "app.log" {
				t.Errorf("no rotation counted: %+v", st)
			}
		})
	}
}

// Copytruncate: the file is copied then truncated in place. When the
// tailer notices the truncation before the file grows back past its offset
// (the size is below its offset), it reads the file again from 0 with no
// duplicates. When the writer refills the file past the old offset first,
// the changed fingerprint gives it away: the file is read again from 0 and
// the duplicates are bounded by what the new content holds. Nothing is lost
// in either case (lines unread at the truncation are in the copy, not under
// test here).
func TestCopyTruncate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle bool // wait for the tailer to notice before refilling
	}{
		{"noticed before refill", true},
		{"refilled past the offset", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.TempDir(t)
			path := filepath.Join(dir, "app.log")
			w := newWriter(t, path, "a")
			count := tailertest.NewCounter()
			h := startTailer(t, testOptions(path), testenv.TempDir(t), count)
			for range 4 {
				mustWrite(t, w, 500)
				h.waitCount(w.Written())
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
				mustWrite(t, w, 10) // an O_APPEND writer continues at the new end
				if tc.settle {
					h.waitCount(w.Written())
				}
			}
			// Every line, not a count that duplicates can make up, and
			// the last truncation, noticed when the tailer next reads the
			// written file (within its write window).
			written := map[string]int{"a": w.Written()}
			deadline := time.Now().Add(15 * time.Second)
			for count.Result(written).Missing > 0 || h.tl.Stats().Truncations < 4 {
				if time.Now().After(deadline) {
					t.Fatalf("timed out: %v; stats %+v", count.Result(written), h.tl.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			h.stop()
			res := expect(t, count, written, 4*510)
			if tc.settle && res.Duplicated > 0 {
				t.Errorf("%d duplicates although every truncation was noticed", res.Duplicated)
			}
			if st := h.tl.Stats(); st.Truncations < 4 {
				t.Errorf("truncations = %d, want at least 4", st.Truncations)
			}
		})
	}
}

// Copytruncate while reading lags behind (an outage, a restart): the tailer
// has seen the file but read little or none of it when the file is copied,
// truncated and written again past the offset read, all before the tailer
// looks at it again. Its next read at that offset finds the new content's
// bytes; taken for the rest of the old content they were sent twice (again
// when the truncation was noticed and the file read from 0) and the old
// content's lines they stood for were lost (its copy was read from past
// them): the chaos suite's "16 missing, the same 16 twice". A read that ends
// below the size the content was seen to have, or a read from the start that
// finds another start than the content's, is a truncation: the old content's
// unread end comes from the copy, the new content from its start, every line
// once. No scan or directory event can notice the truncation first here:
// reading alone must.
func TestCopyTruncateRefilledWhileBehind(t *testing.T) {
	for _, tc := range []struct {
		name      string
		before    int  // lines in app.log when the tailer starts
		readFirst bool // the tailer reads a batch (10 lines) of app.log before it waits
		after     int  // lines written after the truncation
	}{
		{"10 of 100 read, 30 written again", 100, true, 30},
		{"none of 30 read, 100 written again", 30, false, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.TempDir(t)
			path := filepath.Join(dir, "app.log")
			w := newWriter(t, path, "a")
			mustWrite(t, w, tc.before)
			// Another file, first in turn, so that nothing of app.log's last
			// read is kept in the read buffer: its next read is a pread.
			otherPath := filepath.Join(dir, "a.log")
			other := newWriter(t, otherPath, "o")
			mustWrite(t, other, 1000)
			opts := testOptions(filepath.Join(dir, "*.log"))
			opts.Watch = false
			opts.ScanInterval = time.Hour // the first scan only
			opts.MaxBatchRecords = 10
			tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
			tl, err := New("app", opts, tracker, &event.Resource{}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			gateOn := otherPath
			if tc.readFirst {
				gateOn = path
			}
			count := tailertest.NewCounter()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			held, release := make(chan struct{}), make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				gated := false
				for b := range tl.Batches(ctx) {
					if !gated && b.Path == gateOn {
						// The tailer waits in yield, as behind a full
						// export queue.
						gated = true
						close(held)
						<-release
					}
					count.Add(b)
					b.Done()
				}
			}()
			<-held
			copyFile(t, path, path+".1")
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, w, tc.after)
			close(release)

			written := map[string]int{"a": w.Written(), "o": other.Written()}
			deadline := time.Now().Add(10 * time.Second)
			for count.Result(written).Missing > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			<-done
			if res := expect(t, count, written, 0); res.Missing > 0 {
				t.Logf("first missing: %v; stats %+v", res.FirstMissing, tl.Stats())
			}
			if st := tl.Stats(); st.Truncations != 1 {
				t.Errorf("truncations = %d, want 1", st.Truncations)
			}
		})
	}
}

// A file deleted while open is read to its end through the open descriptor,
// including what the writer adds after the deletion, then closed and its
// checkpoint forgotten.
func TestDeleteWhileOpen(t *testing.T) {
	testenv.SkipUnderWine(t, "a file deleted while another handle holds it (the writer) keeps its name until that handle closes")
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 100)
	count := tailertest.NewCounter()
	h := startTailer(t, testOptions(path), testenv.TempDir(t), count)
	h.waitCount(100)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, 100)
	h.waitCount(200)
	waitFor(t, func() bool { return len(h.tl.Stats().Files) == 0 })
	h.stop()
	expect(t, count, map[string]int{"a": 200}, 0)
	if st := h.tl.Stats(); st.Deleted != 1 {
		t.Errorf("deleted = %d, want 1", st.Deleted)
	}
}

// Restart: a second tailer over the same state directory resumes every file
// at its committed offset; lines written while stopped arrive, none twice.
func TestRestartResumes(t *testing.T) {
	dir, state := testenv.TempDir(t), testenv.TempDir(t)
	wa := newWriter(t, filepath.Join(dir, "a.log"), "a")
	wb := newWriter(t, filepath.Join(dir, "b.log"), "b")
	opts := testOptions(filepath.Join(dir, "*.log"))
	count := tailertest.NewCounter()
	for round := range 3 {
		mustWrite(t, wa, 1000)
		mustWrite(t, wb, 10)
		h := startTailer(t, opts, state, count)
		h.waitCount(wa.Written() + wb.Written())
		if round == 1 {
			// Truncated while running, and a partial line left at stop.
			wa.Write(5)
		}
		h.stop()
	}
	expect(t, count, map[string]int{"a": wa.Written(), "b": wb.Written()}, 0)
}

// A file rewritten in place (same inode, other content) while the agent was
// stopped is recognised by its fingerprint and read from the start.
func TestRestartRecycledInode(t *testing.T) {
	dir, state := testenv.TempDir(t), testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "old")
	mustWrite(t, w, 20)
	count := tailertest.NewCounter()
	h := startTailer(t, testOptions(path), state, count)
	h.waitCount(20)
	h.stop()
	st1, _ := os.Stat(path)

	// Same inode, new content longer than the old offset.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	w2 := newWriter(t, path, "new")
	mustWrite(t, w2, 40)
	st2, _ := os.Stat(path)
	if !os.SameFile(st1, st2) {
		t.Fatal("file was not rewritten in place")
	}
	count2 := tailertest.NewCounter()
	h2 := startTailer(t, testOptions(path), state, count2)
	h2.waitCount(40)
	h2.stop()
	expect(t, count2, map[string]int{"new": 40}, 0)
}

// Discovery: include and exclude patterns, "**", a file created while
// running and a file moved into the patterns are read from the beginning;
// a file moved out is read to its end and not read again.
func TestDiscovery(t *testing.T) {
	dir := testenv.TempDir(t)
	for _, d := range []string{"x", "x/y", "z"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := testOptions(filepath.Join(dir, "**", "*.log"))
	opts.Exclude = []string{filepath.Join(dir, "z", "*")}
	top := newWriter(t, filepath.Join(dir, "top.log"), "top")
	deep := newWriter(t, filepath.Join(dir, "x", "y", "deep.log"), "deep")
	excluded := newWriter(t, filepath.Join(dir, "z", "no.log"), "no")
	other := newWriter(t, filepath.Join(dir, "x", "other.txt"), "txt")
	for _, w := range []*tailertest.Writer{top, deep, excluded, other} {
		mustWrite(t, w, 10)
	}
	count := tailertest.NewCounter()
	h := startTailer(t, opts, testenv.TempDir(t), count)
	h.waitCount(20)

	// Created while running, in a new directory.
	if err := os.MkdirAll(filepath.Join(dir, "x", "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	late := newWriter(t, filepath.Join(dir, "x", "new", "late.log"), "late")
	mustWrite(t, late, 10)
	// Moved into the patterns.
	mustWrite(t, other, 5)
	if err := os.Rename(filepath.Join(dir, "x", "other.txt"), filepath.Join(dir, "x", "other.log")); err != nil {
		t.Fatal(err)
	}
	h.waitCount(45)
	// Moved out: lines written after the move still arrive (drained), once.
	if err := os.Rename(filepath.Join(dir, "top.log"), filepath.Join(dir, "top.old")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, top, 5)
	h.waitCount(50)
	time.Sleep(300 * time.Millisecond)
	h.stop()
	expect(t, count, map[string]int{"top": 15, "deep": 10, "late": 10, "txt": 15}, 0)
	if res := count.Result(map[string]int{"no": 10}); res.Delivered != 50 || res.Missing != 10 {
		t.Errorf("excluded file was read: %s", res)
	}
}

func TestMatch(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("its data are Linux paths: on Windows \\ is the separator, so * matches /")
	}
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/var/log/*.log", "/var/log/a.log", true},
		{"/var/log/*.log", "/var/log/x/a.log", false},
		{"/var/log/**/*.log", "/var/log/a.log", true},
		{"/var/log/**/*.log", "/var/log/x/y/a.log", true},
		{"/var/log/**", "/var/log/x/y/a.log", true},
		{"/var/log/**/x/*.log", "/var/log/a/b/x/c.log", true},
		{"/var/log/**/x/*.log", "/var/log/a/b/y/c.log", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.path); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

// Copytruncate by hand with the copy's name matched, the copy written in
// two steps while the tailer looks (a copy in progress is shorter than what
// was read of the original: the tailer waits instead of reading it from 0),
// and a file with the same first line that is not a copy (read whole).
func TestCopyOfFollowedFile(t *testing.T) {
	testenv.SkipUnderWine(t, "the copy's last write, the truncation and the new lines come back to back; Wine's ReadDirectoryChangesW notifications reach the tailer after all of them in about 1 run of 8, and the copy is then read whole")
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	count := tailertest.NewCounter()
	h := startTailer(t, testOptions(filepath.Join(dir, "app.log*")), testenv.TempDir(t), count)
	mustWrite(t, w, 500)
	h.waitCount(500)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.Create(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	if _, err := cp.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // the tailer finds the copy half written
	if _, err := cp.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	cp.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, 200)
	// Not a copy: same first line, then other lines.
	other := append(data[:bytes.IndexByte(data, '\n')+1:bytes.IndexByte(data, '\n')+1], "w=b seq=0 other\nw=b seq=1 other\n"...)
	writeFile(t, filepath.Join(dir, "app.log.other"), string(other))
	h.waitCount(700 + 3)
	time.Sleep(5 * testOptions().ScanInterval)
	st := h.tl.Stats()
	h.stop()
	res := count.Result(map[string]int{"a": 700, "b": 2})
	t.Logf("%s", res)
	// The other file's first line is a/0 again: one duplicate, by design.
	if res.Missing > 0 || res.Duplicated != 1 {
		t.Errorf("%s; want none missing and exactly one duplicate (the other file's copied first line)", res)
	}
	if st.Copies != 1 {
		t.Errorf("copies resumed: %d, want 1", st.Copies)
	}
}

// copytruncate's copy looked at after the original was truncated but before
// the tailer noticed: the original no longer holds what the copy is compared
// with. The truncation is noticed then and the copy read from the offset
// already read. The order is fixed (see quietEnv): the copy is found half
// written (it waits), the original is truncated and the copy completed
// without an event, and the end of the wait decides.
func TestCopyFoundBeforeTruncationNoticed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newQuietEnv(t, nil)
		data, err := os.ReadFile(e.path)
		if err != nil {
			t.Fatal(err)
		}
		half := len(data) / 2
		writeFile(t, e.path+".1", string(data[:half]))
		e.event("app.log.1", opCreate)
		if n := e.count.Count(); n != 500 {
			t.Fatalf("%d lines once the half copy was found, want 500: the copy was read", n)
		}
		if err := os.Truncate(e.path, 0); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, e.w, 50) // fewer bytes than were read
		cp, err := os.OpenFile(e.path+".1", os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cp.Write(data[half:]); err != nil {
			t.Fatal(err)
		}
		cp.Close()
		time.Sleep(e.opts.RotateWait)
		synctest.Wait()
		e.event("app.log", opWrite)
		time.Sleep(e.opts.FlushTimeout)
		synctest.Wait()
		if st := e.h.tl.Stats(); st.Truncations != 1 {
			t.Errorf("truncations %d, want 1", st.Truncations)
		}
		e.finish(1)
	})
}

// quietEnv is a tailer following dir/app.log* that learns of changes only
// from the events the test reports (a watcher that watches nothing) and
// scans only at its start and after such events: the order in which it
// looks at files is the test's. Run it in a synctest bubble.
type quietEnv struct {
	t     *testing.T
	dir   string
	path  string // app.log, holding 500 lines read when newQuietEnv returns
	w     *tailertest.Writer
	opts  Options
	count *tailertest.Counter
	h     *harness
	hs    *hints
}

func newQuietEnv(t *testing.T, modify func(*Options)) *quietEnv {
	dir := testenv.TempDir(t)
	e := &quietEnv{t: t, dir: dir, path: filepath.Join(dir, "app.log"), count: tailertest.NewCounter()}
	e.w = newWriter(t, e.path, "a")
	mustWrite(t, e.w, 500)
	e.opts = testOptions(filepath.Join(dir, "app.log*"))
	e.opts.ScanInterval = time.Hour
	if modify != nil {
		modify(&e.opts)
	}
	e.h = startTailerWith(t, e.opts, testenv.TempDir(t), e.count, testLogger(t), func(tl *Tailer) {
		tl.newWatcher = func(h *hints) (dirWatcher, error) {
			e.hs = h
			return quietWatcher{}, nil
		}
	})
	synctest.Wait()
	if n := e.count.Count(); n != 500 {
		t.Fatalf("read %d lines at the start, want 500", n)
	}
	// The first event's scan (not before rescanDelay after the startup
	// scan) finds the directory watched: from then on only events and
	// scans tell of changes to app.log.
	time.Sleep(rescanDelay)
	return e
}

// event reports o on name in the directory and waits until the tailer is idle.
func (e *quietEnv) event(name string, o op) {
	e.t.Helper()
	e.hs.eventIn(e.dir, []byte(name), o)
	e.hs.signal()
	synctest.Wait()
}

// finish stops the tailer and checks that every line came once and that
// copies files were found to be copies.
func (e *quietEnv) finish(copies uint64) {
	e.t.Helper()
	st := e.h.tl.Stats()
	e.h.stop()
	res := e.count.Result(map[string]int{"a": e.w.Written()})
	e.t.Logf("%s", res)
	if res.Missing > 0 || res.Duplicated > 0 {
		e.t.Errorf("%s; want none missing or duplicated", res)
	}
	if st.Copies != copies {
		e.t.Errorf("copies resumed %d, want %d", st.Copies, copies)
	}
}
