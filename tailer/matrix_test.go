package tailer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// TestEdgeCases runs the file situations of the rotation matrix that need no
// logrotate, printing for each the lines written, delivered, missing and
// duplicated.
func TestEdgeCases(t *testing.T) {
	type env struct {
		t     *testing.T
		dir   string
		opts  Options
		state string
		count *tailertest.Counter
		h     *harness
	}
	cases := []struct {
		name   string
		modify func(o *Options)
		// run writes and moves files; it returns lines written per stream.
		run func(e *env) map[string]int
		// flags the delivered records must carry (union)
		flags event.Flags
	}{
		{
			name: "empty file growing",
			run: func(e *env) map[string]int {
				path := filepath.Join(e.dir, "app.log")
				writeFile(e.t, path, "")
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				waitFor(e.t, func() bool { return len(e.h.tl.Stats().Files) == 1 })
				w := newWriter(e.t, path, "a")
				for range 10 {
					mustWrite(e.t, w, 1)
					time.Sleep(10 * time.Millisecond)
				}
				return map[string]int{"a": 10}
			},
		},
		{
			name: "crlf line ends",
			run: func(e *env) map[string]int {
				var b strings.Builder
				for i := range 100 {
					fmt.Fprintf(&b, "w=a seq=%d x\r\n", i)
				}
				writeFile(e.t, filepath.Join(e.dir, "app.log"), b.String())
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				return map[string]int{"a": 100}
			},
		},
		{
			name: "nul-filled sparse region",
			run: func(e *env) map[string]int {
				path := filepath.Join(e.dir, "app.log")
				w := newWriter(e.t, path, "a")
				mustWrite(e.t, w, 50)
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				e.h.waitCount(50)
				// A writer without O_APPEND after a copytruncate leaves a hole
				// of NULs up to its old position.
				f, err := os.OpenFile(path, os.O_WRONLY, 0)
				if err != nil {
					e.t.Fatal(err)
				}
				defer f.Close()
				st, _ := f.Stat()
				if _, err := f.WriteAt(w.AppendLine(nil), st.Size()+3<<20); err != nil {
					e.t.Fatal(err)
				}
				return map[string]int{"a": 51}
			},
		},
		{
			name:   "utf-16le with BOM",
			modify: func(o *Options) { o.Encoding = "utf-16le" },
			run: func(e *env) map[string]int {
				data := []byte{0xff, 0xfe}
				for i := range 100 {
					for _, r := range fmt.Sprintf("w=a seq=%d \u00e9\n", i) {
						data = append(data, byte(r), byte(r>>8))
					}
				}
				writeFile(e.t, filepath.Join(e.dir, "app.log"), string(data))
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				return map[string]int{"a": 100}
			},
		},
		{
			name:   "latin-1",
			modify: func(o *Options) { o.Encoding = "latin-1" },
			run: func(e *env) map[string]int {
				var b strings.Builder
				for i := range 100 {
					fmt.Fprintf(&b, "w=a seq=%d caf\xe9\n", i)
				}
				writeFile(e.t, filepath.Join(e.dir, "app.log"), b.String())
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				return map[string]int{"a": 100}
			},
		},
		{
			name:   "invalid utf-8 and long lines flagged",
			modify: func(o *Options) { o.MaxLineBytes = 64 },
			run: func(e *env) map[string]int {
				var b strings.Builder
				for i := range 100 {
					fmt.Fprintf(&b, "w=a seq=%d \xff%s\n", i, strings.Repeat("y", i))
				}
				writeFile(e.t, filepath.Join(e.dir, "app.log"), b.String())
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				return map[string]int{"a": 100}
			},
			flags: event.InvalidUTF8 | event.Truncated,
		},
		{
			name:   "exclude_older_than",
			modify: func(o *Options) { o.ExcludeOlderThan = time.Hour },
			run: func(e *env) map[string]int {
				old := filepath.Join(e.dir, "old.log")
				writeFile(e.t, old, "w=old seq=0\n")
				past := time.Now().Add(-2 * time.Hour)
				os.Chtimes(old, past, past)
				writeFile(e.t, filepath.Join(e.dir, "new.log"), "w=a seq=0\n")
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				return map[string]int{"a": 1}
			},
		},
		{
			name: "symlink target change",
			run: func(e *env) map[string]int {
				// Kubernetes: /var/log/containers/x.log -> /var/log/pods/.../N.log,
				// repointed when the container restarts.
				testenv.SkipUnderWine(e.t, "CreateSymbolicLink reports success and makes no link")
				pods := filepath.Join(e.dir, "pods")
				os.Mkdir(pods, 0o755)
				os.Mkdir(filepath.Join(e.dir, "containers"), 0o755)
				link := filepath.Join(e.dir, "containers", "x.log")
				w0 := newWriter(e.t, filepath.Join(pods, "0.log"), "c0")
				mustWrite(e.t, w0, 100)
				os.Symlink(filepath.Join(pods, "0.log"), link)
				e.opts.Include = []string{filepath.Join(e.dir, "containers", "*.log")}
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				e.h.waitCount(100)
				mustWrite(e.t, w0, 10) // last words of the old container
				w1 := newWriter(e.t, filepath.Join(pods, "1.log"), "c1")
				mustWrite(e.t, w1, 100)
				os.Remove(link)
				os.Symlink(filepath.Join(pods, "1.log"), link)
				mustWrite(e.t, w1, 100)
				return map[string]int{"c0": 110, "c1": 200}
			},
		},
		{
			name: "polling only (no watches)",
			modify: func(o *Options) {
				o.Watch = false
			},
			run: func(e *env) map[string]int {
				path := filepath.Join(e.dir, "app.log")
				w := newWriter(e.t, path, "a")
				mustWrite(e.t, w, 100)
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				e.h.waitCount(100)
				os.Rename(path, path+".1")
				mustWrite(e.t, w, 10)
				w.Reopen()
				mustWrite(e.t, w, 100)
				return map[string]int{"a": 210}
			},
		},
		{
			name: "moved out of and back into the patterns",
			run: func(e *env) map[string]int {
				path := filepath.Join(e.dir, "app.log")
				w := newWriter(e.t, path, "a")
				mustWrite(e.t, w, 100)
				e.h = startTailer(e.t, e.opts, e.state, e.count)
				e.h.waitCount(100)
				os.Rename(path, filepath.Join(e.dir, "app.txt"))
				mustWrite(e.t, w, 10)
				time.Sleep(3 * e.opts.ScanInterval)
				os.Rename(filepath.Join(e.dir, "app.txt"), path)
				mustWrite(e.t, w, 10)
				return map[string]int{"a": 120}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{t: t, dir: testenv.TempDir(t), state: testenv.TempDir(t), count: tailertest.NewCounter()}
			e.opts = testOptions(filepath.Join(e.dir, "*.log"))
			if tc.modify != nil {
				tc.modify(&e.opts)
			}
			written := tc.run(e)
			total := 0
			for _, n := range written {
				total += n
			}
			deadline := time.Now().Add(5 * time.Second)
			for e.count.Count() < total && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(3 * e.opts.ScanInterval)
			e.h.stop()
			res := e.count.Result(written)
			fmt.Printf("edge %-45s %s\n", tc.name+":", res)
			if res.Missing > 0 || res.Duplicated > 0 || res.Delivered != res.Written {
				t.Errorf("%s; first missing %v; other %q", res, res.FirstMissing, e.count.Other())
			}
			if got := e.count.Flags() & tc.flags; got != tc.flags {
				t.Errorf("flags %b, want %b among them", e.count.Flags(), tc.flags)
			}
		})
	}
}

// delete_after_read removes a file only once every batch of it was
// acknowledged.
func TestDeleteAfterRead(t *testing.T) {
	testenv.SkipUnderWine(t, "a file deleted while another handle holds it (the writer) keeps its name until that handle closes")
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "spool.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 100)
	opts := testOptions(path)
	opts.DeleteAfterRead = true
	opts.RotateWait = 50 * time.Millisecond
	tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
	tl, err := New("app", opts, tracker, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan *event.Batch, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range tl.Batches(ctx) {
			held <- b // not acknowledged until the test says
		}
	}()
	waitFor(t, func() bool { return tl.Stats().Lines == 100 })
	time.Sleep(10 * opts.RotateWait)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("file deleted before its lines were acknowledged: %v", err)
	}
	count := tailertest.NewCounter()
	for len(held) > 0 {
		b := <-held
		count.Add(b)
		b.Done()
	}
	waitFor(t, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	cancel()
	<-done
	for len(held) > 0 {
		(<-held).Done()
	}
	expect(t, count, map[string]int{"a": 100}, 0)
}
