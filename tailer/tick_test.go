package tailer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
)

// TestTicksWhileUnacknowledged: a stage that holds a batch (an open
// multiline event) gets ticks every tick_interval until it lets go, however
// long its own flush timeout is; after that an idle tailer goes quiet.
func TestTicksWhileUnacknowledged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tl := newHeldTailer(t, 200*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		var held *event.Batch
		var ticks []time.Duration
		for b := range tl.Batches(ctx) {
			if b.File == (event.FileID{}) {
				ticks = append(ticks, time.Since(start))
				if held != nil && time.Since(start) >= time.Second {
					held.Done() // the stage's flush timeout: the event goes out
					held = nil
				}
				b.Done()
				continue
			}
			held = b
		}
		if held != nil {
			t.Fatal("the held batch was never released: ticks stopped while it was held")
		}
		// Ticks every 200ms while held (up to 1s), one more that finds
		// everything acknowledged, then none for the remaining 3.8s.
		if n := len(ticks); n < 5 || n > 7 {
			t.Errorf("got %d ticks at %v, want 5 to 7", n, ticks)
		}
		if last := ticks[len(ticks)-1]; last > 1500*time.Millisecond {
			t.Errorf("last tick at %v, want none after everything was acknowledged (about 1.2s)", last)
		}
	})
}

// TestNoTicksWhenDisabled: a tailer told that nothing after it holds events
// yields no ticks, even while what it yielded is unacknowledged.
func TestNoTicksWhenDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tl := newHeldTailer(t, 200*time.Millisecond)
		tl.DisableTicks()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var held []*event.Batch
		ticks := 0
		for b := range tl.Batches(ctx) {
			if b.File == (event.FileID{}) {
				ticks++
				b.Done()
				continue
			}
			held = append(held, b)
		}
		if got, want := len(held), 1; got != want {
			t.Fatalf("got %d batches, want %d", got, want)
		}
		held[0].Done()
		if ticks != 0 {
			t.Errorf("got %d ticks, want none", ticks)
		}
	})
}

// newHeldTailer returns a polling tailer of one file holding one line, with
// a real checkpoint tracker (whose in-flight count keeps ticks going).
func newHeldTailer(t *testing.T, tick time.Duration) *Tailer {
	t.Helper()
	path := filepath.Join(testenv.TempDir(t), "app.log")
	writeFile(t, path, "held\n")
	opts := testOptions(path)
	opts.Watch = false
	opts.StartAt = StartBeginning
	opts.TickInterval = tick
	tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
	tl, err := New("app", opts, tracker, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// TestOnIdleAfterEachRun: the idle callback comes once after each run of
// batches, after the last of them was yielded, and not while the tailer
// waits with nothing new.
func TestOnIdleAfterEachRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := testenv.TempDir(t)
		paths := []string{filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")}
		for _, p := range paths {
			writeFile(t, p, "one\ntwo\n")
		}
		opts := testOptions(filepath.Join(dir, "*.log"))
		opts.Watch = false
		opts.StartAt = StartBeginning
		opts.MaxBatchRecords = 1 // two batches per file and run
		tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
		tl, err := New("app", opts, tracker, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		var events []string
		tl.OnIdle(func() { events = append(events, "idle") })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go func() {
			time.Sleep(2 * time.Second)
			f, err := os.OpenFile(paths[1], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			if _, err := f.WriteString("three\n"); err != nil {
				t.Error(err)
			}
		}()
		for b := range tl.Batches(ctx) {
			if len(b.Records) > 0 {
				events = append(events, "batch")
			}
			b.Done()
		}
		want := []string{"batch", "batch", "batch", "batch", "idle", "batch", "idle"}
		if !slices.Equal(events, want) {
			t.Errorf("events = %v, want %v", events, want)
		}
	})
}

// quietWatcher watches nothing; the test reports events to its hints.
type quietWatcher struct{}

func (quietWatcher) Add(string) error    { return nil }
func (quietWatcher) Remove(string) error { return nil }
func (quietWatcher) Close() error        { return nil }

// TestScanJoinsWriteWindow: while write events wake the tailer every
// window, a scan due within a window runs at such a wake-up instead of on
// a timer of its own, and scans stay one per scan_interval.
func TestScanJoinsWriteWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := testenv.TempDir(t)
		path := filepath.Join(dir, "a.log")
		writeFile(t, path, "")
		opts := testOptions(filepath.Join(dir, "*.log"))
		opts.ScanInterval = time.Second
		opts.WriteWindow = 250 * time.Millisecond
		tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
		tl, err := New("app", opts, tracker, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		hc := make(chan *hints, 1)
		tl.newWatcher = func(h *hints) (dirWatcher, error) {
			hc <- h
			return quietWatcher{}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for b := range tl.Batches(ctx) {
				b.Done()
			}
		}()
		h := <-hc
		time.Sleep(100 * time.Millisecond)
		scansAt := map[time.Duration]uint64{}
		for i := 0; i < 40; i++ { // events at 0.1s, 0.35s, ... 9.85s
			h.eventIn(dir, []byte("a.log"), opWrite)
			h.signal()
			synctest.Wait()
			if at := time.Duration(i)*250*time.Millisecond + 100*time.Millisecond; at%time.Second == 850*time.Millisecond {
				scansAt[at] = tl.Stats().Scans
			}
			time.Sleep(250 * time.Millisecond)
		}
		cancel()
		<-done
		// The startup scan, then one at each event from 0.85s on: at 0.85s
		// two scans ran, not one (the timer's would come at 1s).
		for at, got := range scansAt {
			if want := uint64(at/time.Second) + 2; got != want {
				t.Errorf("scans at %v = %d, want %d", at, got, want)
			}
		}
		if got, want := tl.Stats().Scans, uint64(11); got != want {
			t.Errorf("scans in 10.1s = %d, want %d", got, want)
		}
	})
}
