package tailer

import (
	"compress/gzip"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// gzipFile compresses src into dst and removes src, as logrotate's compress
// does.
func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	in.Close() // Windows removes no file this process holds without sharing delete
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
}

// copyFile copies src to dst, as logrotate's copytruncate does before it
// truncates src.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(data))
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// waitAll waits until every written line was counted (duplicates do not
// make up for a missing one), then a little more for stragglers.
func (h *harness) waitAll(written map[string]int) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.count.Result(written).Missing > 0 {
		if time.Now().After(deadline) {
			res := h.count.Result(written)
			h.t.Fatalf("timed out: %v, first missing %v; stats %+v", res, res.FirstMissing, h.tl.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
}

// Discovery never waits for the pipeline: while the consumer takes nothing
// (an export queue that is full during an outage), files are still found
// and opened, so that files created and rotated away meanwhile — renamed
// out of the patterns, deleted, compressed, copied and truncated — lose
// nothing once the consumer takes batches again. The pattern is the one
// users write, `*.log`, which matches none of the rotated names.
func TestDiscoveryWhileBlocked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rotate func(t *testing.T, w *tailertest.Writer, path string)
	}{
		{"renamed twice", func(t *testing.T, w *tailertest.Writer, path string) {
			mustRename(t, path, path+".1")
			mustWrite(t, w, 50) // late lines through the old descriptor
			reopen(t, w)
			mustWrite(t, w, 300)
			time.Sleep(150 * time.Millisecond)
			mustRename(t, path+".1", path+".2")
			mustRename(t, path, path+".1")
			reopen(t, w)
		}},
		{"deleted", func(t *testing.T, w *tailertest.Writer, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, w, 30)
			reopen(t, w)
		}},
		{"renamed then compressed", func(t *testing.T, w *tailertest.Writer, path string) {
			mustRename(t, path, path+".1")
			reopen(t, w)
			mustWrite(t, w, 200)
			time.Sleep(150 * time.Millisecond)
			gzipFile(t, path+".1", path+".1.gz")
		}},
		{"copytruncate", func(t *testing.T, w *tailertest.Writer, path string) {
			copyFile(t, path, path+".1")
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"copytruncate then compressed", func(t *testing.T, w *tailertest.Writer, path string) {
			copyFile(t, path, path+".1")
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(150 * time.Millisecond)
			gzipFile(t, path+".1", path+".1.gz")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.TempDir(t)
			path := filepath.Join(dir, "app.log")
			w := newWriter(t, path, "a")
			mustWrite(t, w, 100)
			count := tailertest.NewCounter()
			opts := testOptions(filepath.Join(dir, "*.log"))
			h := startTailer(t, opts, testenv.TempDir(t), count)
			h.waitCount(100)

			h.hold.Lock()
			mustWrite(t, w, 2000) // more than the consumer will take before it stops
			time.Sleep(200 * time.Millisecond)
			// A file created while blocked, written, then rotated away
			// before the consumer takes anything more.
			path2 := filepath.Join(dir, "new.log")
			w2 := newWriter(t, path2, "b")
			mustWrite(t, w2, 500)
			// Seen by the discovery that goes on while reading waits (a
			// few of its passes, at the tests' 100 ms scan interval).
			time.Sleep(500 * time.Millisecond)
			tc.rotate(t, w, path)
			tc.rotate(t, w2, path2)
			mustWrite(t, w, 100)
			mustWrite(t, w2, 100)
			time.Sleep(3 * opts.ScanInterval)
			st := h.tl.Stats()
			h.hold.Unlock()

			written := map[string]int{"a": w.Written(), "b": w2.Written()}
			h.waitAll(written)
			h.stop()
			expect(t, count, written, 0)
			if st.EagerRuns == 0 {
				t.Errorf("no discovery while the consumer was blocked: %+v", st)
			}
		})
	}
}

func reopen(t *testing.T, w *tailertest.Writer) {
	t.Helper()
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
}

// A restart finds the unread end of a file wherever rotation put it while
// the agent was stopped — renamed out of the patterns, compressed, copied
// and truncated — and reads only what was not delivered before the stop,
// with patterns that match the rotated names and with patterns that do not.
// Nothing is missing and, the stop being clean, nothing comes twice.
func TestRestartFindsRotatedContent(t *testing.T) {
	rotations := []struct {
		name   string
		rotate func(t *testing.T, w *tailertest.Writer, path string)
	}{
		{"renamed", func(t *testing.T, w *tailertest.Writer, path string) {
			mustRename(t, path, path+".1")
			reopen(t, w)
		}},
		{"renamed and compressed", func(t *testing.T, w *tailertest.Writer, path string) {
			mustRename(t, path, path+".1")
			gzipFile(t, path+".1", path+".1.gz")
			reopen(t, w)
		}},
		{"renamed twice, compressed, dateext", func(t *testing.T, w *tailertest.Writer, path string) {
			mustRename(t, path, path+"-20261207")
			reopen(t, w)
			mustWrite(t, w, 300)
			mustRename(t, path+"-20261207", path+"-20261206")
			gzipFile(t, path+"-20261206", path+"-20261206.gz")
			mustRename(t, path, path+"-20261207")
			reopen(t, w)
		}},
		{"kubelet, then compressed", func(t *testing.T, w *tailertest.Writer, path string) {
			// kubelet renames 0.log to 0.log.<timestamp>, and compresses
			// the older ones.
			mustRename(t, path, path+".20261207-101500")
			reopen(t, w)
			mustWrite(t, w, 100)
			mustRename(t, path, path+".20261207-101503")
			gzipFile(t, path+".20261207-101500", path+".20261207-101500.gz")
			reopen(t, w)
		}},
		{"copytruncate", func(t *testing.T, w *tailertest.Writer, path string) {
			copyFile(t, path, path+".1")
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"copytruncate and compressed", func(t *testing.T, w *tailertest.Writer, path string) {
			copyFile(t, path, path+".1")
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			gzipFile(t, path+".1", path+".1.gz")
		}},
		{"olddir", func(t *testing.T, w *tailertest.Writer, path string) {
			old := filepath.Join(filepath.Dir(path), "..", "old")
			mustRename(t, path, filepath.Join(old, "app.log.1"))
			gzipFile(t, filepath.Join(old, "app.log.1"), filepath.Join(old, "app.log.1.gz"))
			reopen(t, w)
		}},
	}
	for _, patterns := range []struct {
		name        string
		include     []string
		compression string
	}{
		{"only *.log", []string{"*.log"}, CompressionNone},
		{"rotated names too", []string{"*.log", "*.log.*", "*.log-*"}, CompressionAuto},
	} {
		for _, rot := range rotations {
			t.Run(patterns.name+"/"+rot.name, func(t *testing.T) {
				root, state := testenv.TempDir(t), testenv.TempDir(t)
				dir := filepath.Join(root, "logs")
				for _, d := range []string{dir, filepath.Join(root, "old")} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				path := filepath.Join(dir, "app.log")
				w := newWriter(t, path, "a")
				opts := testOptions()
				for _, p := range patterns.include {
					opts.Include = append(opts.Include, filepath.Join(dir, p))
				}
				opts.Compression = patterns.compression
				opts.RotatedDirs = []string{filepath.Join(root, "old")}
				count := tailertest.NewCounter()
				mustWrite(t, w, 1000)
				h := startTailer(t, opts, state, count)
				h.waitCount(1000)
				h.stop()

				mustWrite(t, w, 500) // never read before the rotation
				rot.rotate(t, w, path)
				mustWrite(t, w, 200)

				h2 := startTailer(t, opts, state, count)
				written := map[string]int{"a": w.Written()}
				h2.waitAll(written)
				h2.stop()
				expect(t, count, written, 0)
				if st := h2.tl.Stats(); st.LostFiles != 0 {
					t.Errorf("lost files %d (%v), want 0", st.LostFiles, st.LostBytes)
				}
			})
		}
	}
}

// What cannot be found is counted and logged, never silent: a file deleted
// with bytes that were never read, while the agent was stopped.
func TestLostIsCounted(t *testing.T) {
	testenv.SkipUnderWine(t, "a file deleted while another handle holds it (the writer) keeps its name until that handle closes, so the restart finds it again")
	dir, state := testenv.TempDir(t), testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 100)
	opts := testOptions(filepath.Join(dir, "*.log"))
	opts.WriteWindow = 50 * time.Millisecond
	count := tailertest.NewCounter()
	h := startTailer(t, opts, state, count)
	h.waitCount(100)
	// Written and seen by a scan, never read: the consumer holds.
	h.hold.Lock()
	mustWrite(t, w, 1) // a batch for the consumer to block on
	time.Sleep(100 * time.Millisecond)
	mustWrite(t, w, 99)
	time.Sleep(3 * opts.ScanInterval)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	before := h.tl.Stats()
	h.cancel() // stop at the held batch: the 99 lines stay unread
	h.hold.Unlock()
	h.stop()
	entries := h.tracker.Entries("app")
	if len(entries) != 1 || entries[0].Size != st.Size() || entries[0].Offset >= st.Size() {
		t.Fatalf("checkpoint entries %+v: want one, with the size seen (%d) past the offset", entries, st.Size())
	}
	if before.BehindBytes == 0 || before.Oldest != path {
		t.Errorf("BehindBytes %d, oldest %q while the consumer held a batch", before.BehindBytes, before.Oldest)
	}
	// The file goes, with lines the agent did not read.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	logs := newLogRecords(t)
	count2 := tailertest.NewCounter()
	h2 := startTailerWith(t, opts, state, count2, slog.New(logs), nil)
	time.Sleep(3 * opts.ScanInterval)
	h2.stop()
	got := h2.tl.Stats()
	want := uint64(entries[0].Size - entries[0].Offset)
	if got.LostFiles != 1 || got.LostBytes[LostNotFound] != want {
		t.Errorf("lost files %d, bytes %v; want 1 file, %d bytes not found", got.LostFiles, got.LostBytes, want)
	}
	if n := logs.count("unread end of a rotated file not found"); n != 1 {
		t.Errorf("%d warnings naming the lost range, want 1", n)
	}
	if e := h2.tracker.Entries("app"); len(e) != 0 {
		t.Errorf("entries after the loss was reported: %+v, want none (reported once)", e)
	}
}

// start_at: end applies to a source's first run only: after a restart, a
// file that appeared while the agent was stopped is read from its start,
// whether or not a file that had a checkpoint is still there.
func TestStartAtEndOnlyOnFirstRun(t *testing.T) {
	for _, keepOld := range []bool{true, false} {
		name := map[bool]string{true: "old file still there", false: "old file rotated away"}[keepOld]
		t.Run(name, func(t *testing.T) {
			dir, state := testenv.TempDir(t), testenv.TempDir(t)
			old := newWriter(t, filepath.Join(dir, "old.log"), "old")
			mustWrite(t, old, 50) // before the first run: skipped by start_at: end
			opts := testOptions(filepath.Join(dir, "*.log"))
			opts.StartAt = StartEnd
			count := tailertest.NewCounter()
			h := startTailer(t, opts, state, count)
			time.Sleep(3 * opts.ScanInterval)
			mustWrite(t, old, 10)
			waitLines(t, count, map[string]int{"old": 60}, 10)
			h.stop()

			if !keepOld {
				mustRename(t, filepath.Join(dir, "old.log"), filepath.Join(dir, "old.log.1"))
			}
			nw := newWriter(t, filepath.Join(dir, "new.log"), "new")
			mustWrite(t, nw, 30)
			h2 := startTailer(t, opts, state, count)
			waitLines(t, count, map[string]int{"new": 30}, 30)
			h2.stop()
		})
	}
}

// waitLines waits until the last n of written lines arrived.
func waitLines(t *testing.T, count *tailertest.Counter, written map[string]int, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := count.Result(written)
		if res.Written-res.Missing >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %v, want the last %d lines", res, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A new file that starts like a file read before (a header longer than the
// fingerprint) is not taken for that file's rotated content: it is read
// from its start, after a restart and while running.
func TestSharedHeaderIsNotAContinuation(t *testing.T) {
	header := "# " + strings.Repeat("banner ", 20) + "\n"
	for _, restart := range []bool{true, false} {
		t.Run(map[bool]string{true: "restart", false: "running"}[restart], func(t *testing.T) {
			dir, state := testenv.TempDir(t), testenv.TempDir(t)
			path := filepath.Join(dir, "app.log")
			writeFile(t, path, header)
			w := newWriter(t, path, "old")
			mustWrite(t, w, 100)
			opts := testOptions(filepath.Join(dir, "*.log"))
			opts.FingerprintBytes = 64
			count := tailertest.NewCounter()
			h := startTailer(t, opts, state, count)
			h.waitCount(100)
			if restart {
				h.stop()
			}
			mustRename(t, path, path+".1")
			time.Sleep(3 * opts.ScanInterval)
			if err := os.Remove(path + ".1"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * opts.ScanInterval)
			writeFile(t, path, header)
			nw := newWriter(t, path, "new")
			mustWrite(t, nw, 200) // longer than the old file: no truncation to notice
			if restart {
				h = startTailer(t, opts, state, count)
			}
			waitLines(t, count, map[string]int{"old": 100, "new": 200}, 300)
			h.stop()
			expect(t, count, map[string]int{"old": 100, "new": 200}, 0)
		})
	}
}

// copytruncate right after lines the tailer has not looked at yet (written
// within the write window): they are in the copy only, which no pattern
// matches. The copy is looked for at every truncation.
func TestCopyTruncateAfterUnseenLines(t *testing.T) {
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	opts := testOptions(filepath.Join(dir, "*.log"))
	opts.WriteWindow = time.Second
	count := tailertest.NewCounter()
	h := startTailer(t, opts, testenv.TempDir(t), count)
	for range 3 {
		mustWrite(t, w, 100)
		h.waitCount(w.Written())
		time.Sleep(50 * time.Millisecond) // the next write waits for the window
		mustWrite(t, w, 50)
		copyFile(t, path, path+".1")
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		mustRename(t, path+".1", path+".2") // out of the way of the next rotation
		time.Sleep(1500 * time.Millisecond)
	}
	written := map[string]int{"a": w.Written()}
	h.waitAll(written)
	h.stop()
	expect(t, count, written, 0)
	if st := h.tl.Stats(); st.LostFiles != 0 {
		t.Errorf("lost files %d, want 0", st.LostFiles)
	}
}

// A file found while reading waits, renamed away before any of it was read,
// with the agent stopped before it was read and restarted after its last
// scan: the restart finds its content (by identity: it has a checkpoint from
// the moment it was found) and reads it from its start.
func TestRestartFindsFileNeverRead(t *testing.T) {
	dir, state := testenv.TempDir(t), testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 100)
	opts := testOptions(filepath.Join(dir, "*.log"))
	count := tailertest.NewCounter()
	h := startTailer(t, opts, state, count)
	h.waitCount(100)
	h.hold.Lock()
	mustWrite(t, w, 1) // a batch for the consumer to block on
	time.Sleep(100 * time.Millisecond)
	// Renamed, created again, written while reading waits; then rotated
	// once more (logrotate's create), its lines never read.
	mustRename(t, path, path+".1")
	reopen(t, w)
	mustWrite(t, w, 200)
	time.Sleep(3 * opts.ScanInterval)
	mustRename(t, path+".1", path+".2")
	mustRename(t, path, path+".1")
	reopen(t, w)
	mustWrite(t, w, 50)
	// Scans go on (recording the source's last scan) until the rotated
	// files are older than that by more than the second it is kept to.
	time.Sleep(2500 * time.Millisecond)
	if st := h.tl.Stats(); st.EagerRuns == 0 {
		t.Fatalf("no discovery while the consumer held a batch: %+v", st)
	}
	h.cancel()
	h.hold.Unlock()
	h.stop()

	h2 := startTailer(t, opts, state, count)
	written := map[string]int{"a": w.Written()}
	h2.waitAll(written)
	h2.stop()
	expect(t, count, written, 1) // the held batch, if it was not acknowledged before the stop
}

// A file created and rotated away while the agent was stopped, on an inode
// a checkpoint still names for other content (a deleted rotation's: file
// systems hand freed inodes out again, logrotate's compress frees one right
// before its create takes one): the restart reads it from its start. The
// identity alone is not the content.
func TestRestartRotatedFileOnRecycledInode(t *testing.T) {
	dir, state := testenv.TempDir(t), testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 100)
	opts := testOptions(filepath.Join(dir, "*.log"))
	count := tailertest.NewCounter()
	h := startTailer(t, opts, state, count)
	h.waitCount(100)
	h.stop()

	// Stopped: two rotations (logrotate's create), the first file's lines
	// read, the second's never seen.
	mustRename(t, path, path+".2")
	reopen(t, w)
	mustWrite(t, w, 50)
	mustRename(t, path, path+".1")
	reopen(t, w)
	mustWrite(t, w, 10)
	// The checkpoint names app.log.1's inode for content deleted since.
	_, id, err := statID(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	store := checkpoint.NewStore(state)
	entries, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	stale := []byte("2026-12-07T10:00:00Z a line of a file deleted long ago\n")
	entries = append(entries, checkpoint.Entry{Source: "app", Dev: id.dev, Ino: id.ino,
		FingerprintLen: len(stale), FingerprintSum: fnv1a(fnvOffset, stale),
		Offset: 4096, Size: 4096, Path: filepath.Join(dir, "app.log.3"), Seen: time.Now().UTC().Truncate(time.Second)})
	if err := store.Save(entries); err != nil {
		t.Fatal(err)
	}

	h2 := startTailer(t, opts, state, count)
	written := map[string]int{"a": w.Written()}
	h2.waitAll(written)
	h2.stop()
	expect(t, count, written, 0)
}
