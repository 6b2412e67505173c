package tailer

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
)

// TestTicksWhileUnacknowledged: a stage that holds a batch (an open
// multiline event) gets ticks every tick_interval until it lets go, however
// long its own flush timeout is; after that an idle tailer goes quiet.
func TestTicksWhileUnacknowledged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tick = 200 * time.Millisecond
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		writeFile(t, path, "held\n")
		opts := testOptions(path)
		opts.Watch = false
		opts.StartAt = StartBeginning
		opts.TickInterval = tick
		tracker := checkpoint.NewTracker(checkpoint.NewStore(t.TempDir()), testLogger(t), checkpoint.Options{})
		tl, err := New("app", opts, tracker, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
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
