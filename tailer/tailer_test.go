package tailer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var _ Checkpoints = (*checkpoint.Tracker)(nil)

// testOptions returns options for a source reading pattern from the
// beginning with short intervals.
func testOptions(patterns ...string) Options {
	o := DefaultOptions()
	o.Include = patterns
	o.StartAt = StartBeginning
	o.ScanInterval = 100 * time.Millisecond
	o.PollInterval = 20 * time.Millisecond
	o.FlushTimeout = 100 * time.Millisecond
	o.RotateWait = 200 * time.Millisecond
	o.MaxBatchRecords = 100
	o.IncludeFilePath = true // checked on every record
	return o
}

// testLogger logs to stderr with -v (debug records too with LOGPUMP_DEBUG=1).
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		level := slog.LevelInfo
		if os.Getenv("LOGPUMP_DEBUG") != "" {
			level = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(slog.DiscardHandler)
}

// harness runs a tailer over a real checkpoint tracker and counts what it
// delivers, acknowledging every batch (like an exporter that always succeeds).
type harness struct {
	t       testing.TB
	tracker *checkpoint.Tracker
	tl      *Tailer
	count   *tailertest.Counter
	cancel  context.CancelFunc
	done    chan struct{}
	// checks records contract violations found while consuming.
	violations chan string
	// hold, when locked by a test, stops the consumer before its next
	// batch: the tailer then waits in yield, as behind a full export queue.
	hold sync.Mutex
}

func startTailer(t testing.TB, opts Options, stateDir string, count *tailertest.Counter) *harness {
	t.Helper()
	return startTailerWith(t, opts, stateDir, count, testLogger(t), nil)
}

// startTailerWith is startTailer with a logger and a function that may set
// the tailer's test hooks before it starts.
func startTailerWith(t testing.TB, opts Options, stateDir string, count *tailertest.Counter, log *slog.Logger, setup func(*Tailer)) *harness {
	t.Helper()
	tracker := checkpoint.NewTracker(checkpoint.NewStore(stateDir), testLogger(t), checkpoint.Options{})
	if err := tracker.Load(); err != nil {
		t.Fatalf("load checkpoints: %v", err)
	}
	tl, err := New("app", opts, tracker, &event.Resource{}, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if setup != nil {
		setup(tl)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, tracker: tracker, tl: tl, count: count, cancel: cancel,
		done: make(chan struct{}), violations: make(chan string, 100)}
	go func() {
		defer close(h.done)
		ends := map[event.FileID]int64{}
		for b := range tl.Batches(ctx) {
			h.hold.Lock()
			h.hold.Unlock() // a gate: passes once the test lets go
			h.check(b, ends)
			count.Add(b)
			b.Done()
		}
	}()
	t.Cleanup(h.stop)
	return h
}

// check verifies the batch contract: one file, contiguous ranges in file
// order (or a restart at 0 after truncation), records inside the range.
func (h *harness) check(b *event.Batch, ends map[event.FileID]int64) {
	report := func(format string, args ...any) {
		select {
		case h.violations <- fmt.Sprintf(format, args...):
		default:
		}
	}
	if b.File == (event.FileID{}) {
		if len(b.Records) != 0 || b.Start != 0 || b.End != 0 {
			report("tick batch with content: %d records [%d,%d)", len(b.Records), b.Start, b.End)
		}
		return
	}
	if b.Source != "app" || b.Path == "" || b.Resource == nil {
		report("batch fields: source %q path %q resource %v", b.Source, b.Path, b.Resource)
	}
	key := event.FileID{Dev: b.File.Dev, Ino: b.File.Ino}
	if prev, ok := ends[key]; ok && b.Start != prev && b.Start != 0 {
		report("%s: batch starts at %d, previous ended at %d", b.Path, b.Start, prev)
	}
	ends[key] = b.End
	for i := range b.Records {
		r := &b.Records[i]
		if r.Offset < b.Start || r.Offset >= b.End || r.Observed == 0 {
			report("%s: record offset %d outside [%d,%d) or no observed time", b.Path, r.Offset, b.Start, b.End)
		}
		if p, _ := event.Lookup(r.Attrs, AttrFilePath); p.Str != b.Path {
			report("%s: record log.file.path %q", b.Path, p.Str)
		}
		if n, _ := event.Lookup(r.Attrs, AttrFileName); n.Str != filepath.Base(b.Path) {
			report("%s: record log.file.name %q", b.Path, n.Str)
		}
	}
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
	if err := h.tracker.Flush(); err != nil {
		h.t.Errorf("flush checkpoints: %v", err)
	}
	for {
		select {
		case v := <-h.violations:
			h.t.Errorf("contract: %s", v)
		default:
			return
		}
	}
}

// waitCount waits until n sequence-numbered lines were counted.
func (h *harness) waitCount(n int) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for h.count.Count() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out: counted %d lines, want %d; stats %+v", h.count.Count(), n, h.tl.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newWriter(t testing.TB, path, stream string) *tailertest.Writer {
	t.Helper()
	w, err := tailertest.NewWriter(path, stream, 40)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func mustWrite(t testing.TB, w *tailertest.Writer, n int) {
	t.Helper()
	if err := w.Write(n); err != nil {
		t.Fatal(err)
	}
}

// expect checks the counted result: nothing missing, at most maxDup duplicates.
func expect(t testing.TB, count *tailertest.Counter, written map[string]int, maxDup int) tailertest.Result {
	t.Helper()
	res := count.Result(written)
	t.Logf("%s", res)
	if res.Missing > 0 || res.Duplicated > maxDup {
		t.Errorf("%s; first missing %v; want none missing, at most %d duplicated", res, res.FirstMissing, maxDup)
	}
	return res
}

func TestTailOneFile(t *testing.T) {
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 5000) // present before start: read from the beginning
	count := tailertest.NewCounter()
	h := startTailer(t, testOptions(filepath.Join(dir, "*.log")), testenv.TempDir(t), count)
	h.waitCount(5000)
	for range 20 {
		mustWrite(t, w, 250) // appended while running
	}
	h.waitCount(10000)
	h.stop()
	expect(t, count, map[string]int{"a": 10000}, 0)
	st := h.tl.Stats()
	if len(st.Files) != 1 || st.Files[0].Path != path || st.Lines != 10000 {
		t.Errorf("stats: %+v", st)
	}
}

func TestStartAtEnd(t *testing.T) {
	dir, state := testenv.TempDir(t), testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	writeFile(t, path, "old line skipped\n")
	opts := testOptions(path)
	opts.StartAt = StartEnd
	count := tailertest.NewCounter()
	h := startTailer(t, opts, state, count)
	waitFor(t, func() bool { return len(h.tl.Stats().Files) == 1 })
	w := newWriter(t, path, "a")
	mustWrite(t, w, 10)
	h.waitCount(10)
	h.stop()
	expect(t, count, map[string]int{"a": 10}, 0)
	if other := count.Other(); len(other) != 0 {
		t.Errorf("read lines before the start: %q", other)
	}

	// Written while stopped: a restart resumes, it does not skip to the end.
	mustWrite(t, w, 10)
	count2 := tailertest.NewCounter()
	h2 := startTailer(t, opts, state, count2)
	h2.waitCount(10)
	h2.stop()
	res := count2.Result(map[string]int{"a": 20})
	if res.Delivered != 10 || res.Missing != 10 {
		t.Errorf("after restart: %s; want the 10 lines written while stopped", res)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Breaking out of the range after k batches for every k stops cleanly: no
// yield after false (the runtime would panic), no goroutine left behind, and
// the batches not taken are not acknowledged.
func TestBreakAfterK(t *testing.T) {
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	w := newWriter(t, path, "a")
	mustWrite(t, w, 50)
	for k := range 6 {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			opts := testOptions(path)
			opts.MaxBatchRecords = 10
			state := testenv.TempDir(t)
			tracker := checkpoint.NewTracker(checkpoint.NewStore(state), testLogger(t), checkpoint.Options{})
			tl, err := New("app", opts, tracker, nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for b := range tl.Batches(context.Background()) {
				if got == k {
					b.Done()
					break
				}
				got++
				b.Done()
			}
			if got != k {
				t.Errorf("took %d batches, want %d", got, k)
			}
			// Ranging again yields nothing: the iterator is single-use.
			for b := range tl.Batches(context.Background()) {
				b.Done()
				t.Fatal("second range yielded a batch")
			}
			key := checkpoint.Key{Source: "app"}
			for _, f := range tl.Stats().Files {
				key.Dev, key.Ino = f.File.Dev, f.File.Ino
			}
			// The batch taken at the break was released too, which acknowledges it.
			want := lineEnd(t, path, min(k+1, 5)*10)
			if off, _ := tracker.Committed(key); off != want {
				t.Errorf("committed %d after %d batches, want %d", off, k, want)
			}
			goleak.VerifyNone(t)
		})
	}
}

func TestValidate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("its data are Linux paths (/var/log/*.log is not absolute on Windows) and /proc, /sys, /dev")
	}
	tests := []struct {
		name   string
		modify func(*Options)
		want   []string
	}{
		{"defaults with include", func(o *Options) {}, nil},
		{"no include", func(o *Options) { o.Include = nil }, []string{"include: at least one"}},
		{"relative", func(o *Options) { o.Include = []string{"logs/*.log"} }, []string{"include.0: pattern \"logs/*.log\" must be an absolute path"}},
		{"bad pattern", func(o *Options) { o.Exclude = []string{"/var/[x"} }, []string{"exclude.0: pattern"}},
		{"bad double star", func(o *Options) { o.Include = []string{"/var/log/a**/x"} }, []string{"must be a whole path element"}},
		{"start_at", func(o *Options) { o.StartAt = "middle" }, []string{`start_at: must be "end" or "beginning"; got "middle"`}},
		{"several", func(o *Options) { o.ScanInterval = 0; o.MaxOpenFiles = 0; o.Encoding = "ebcdic" },
			[]string{"scan_interval: must be at least 10ms; got 0s", "max_open_files: must be at least 1", "encoding: must be one of"}},
		{"poll 1ns", func(o *Options) { o.PollInterval = time.Nanosecond }, []string{"poll_interval: must be at least 10ms; got 1ns"}},
		{"no watches", func(o *Options) { o.MaxWatches = 0 }, []string{"max_watches: must be at least 1; got 0"}},
		{"/**", func(o *Options) { o.Include = []string{"/**"} }, []string{`include.0: pattern "/**" reaches /proc, a pseudo filesystem`}},
		{"/", func(o *Options) { o.Include = []string{"/var/log/*.log", "/"} }, []string{`include.1: pattern "/" reaches / (and so /proc, /sys, /dev)`}},
		{"/**/*.log", func(o *Options) { o.Include = []string{"/**/*.log"} }, []string{`pattern "/**/*.log" reaches /proc`}},
		{"/*/x.log", func(o *Options) { o.Include = []string{"/*/x.log"} }, []string{`reaches /proc`}},
		{"/s*/x", func(o *Options) { o.Include = []string{"/s*/x"} }, []string{`reaches /sys`}},
		{"/proc", func(o *Options) { o.Include = []string{"/proc/*/fd/*"} }, []string{`reaches /proc`}},
		{"/sys/", func(o *Options) { o.Include = []string{"/sys/kernel/debug/tracing/trace_pipe"} }, []string{`reaches /sys`}},
		{"/dev", func(o *Options) { o.Include = []string{"/dev/*"} }, []string{`reaches /dev`}},
		{"/process is no /proc", func(o *Options) { o.Include = []string{"/process/*.log", "/var/**/*.log", "/v*/log/*.log"} }, nil},
		{"allowed", func(o *Options) { o.Include = []string{"/**", "/proc/1/fd/1"}; o.AllowPseudoFilesystems = true }, nil},
		{"excluding /proc is fine", func(o *Options) { o.Exclude = []string{"/proc/**"} }, nil},
		{"delete needs beginning", func(o *Options) { o.DeleteAfterRead = true }, []string{"delete_after_read: needs start_at: beginning"}},
		{"tiny lines", func(o *Options) { o.MaxLineBytes = 4 }, []string{"max_line_bytes: must be between"}},
		{"compression", func(o *Options) { o.Compression = "zstd" }, []string{`compression: must be none, gzip or auto; got "zstd"`}},
		{"write window off", func(o *Options) { o.WriteWindow = 0 }, nil},
		{"write window negative", func(o *Options) { o.WriteWindow = -time.Second }, []string{"write_window: must be between 0 and 5s; got -1s"}},
		{"write window long", func(o *Options) { o.WriteWindow = time.Minute }, []string{"write_window: must be between 0 and 5s; got 1m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Include = []string{"/var/log/*.log"}
			tt.modify(&o)
			err := o.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if _, err := New("x", o, checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), nil, checkpoint.Options{}), nil, nil); err == nil {
				t.Errorf("New accepted invalid options")
			}
		})
	}
}

// lineEnd returns the offset just past the first n lines of the file at path.
func lineEnd(t testing.TB, path string, n int) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for range n {
		i := strings.IndexByte(string(data[off:]), '\n')
		if i < 0 {
			t.Fatalf("%s has fewer than %d lines", path, n)
		}
		off += i + 1
	}
	return int64(off)
}
