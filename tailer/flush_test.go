package tailer

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
)

// seen is one yielded batch as observed on the bubble's fake clock.
type seen struct {
	At     time.Duration
	Tick   bool
	Bodies []string
	Flags  event.Flags
}

// runFake tails path (polling, no watches) inside a synctest bubble for
// 5 fake seconds, calling write at the given fake times, and returns what was
// yielded and when.
func runFake(t *testing.T, path string, opts Options, writes map[time.Duration]string) []seen {
	tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
	tl, err := New("app", opts, tracker, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	go func() {
		for _, at := range slices.Sorted(maps.Keys(writes)) {
			data := writes[at]
			time.Sleep(at - time.Since(start))
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			f.WriteString(data)
			f.Close()
		}
	}()
	var got []seen
	for b := range tl.Batches(ctx) {
		s := seen{At: time.Since(start), Tick: b.File == (event.FileID{})}
		for _, r := range b.Records {
			s.Bodies = append(s.Bodies, strings.Clone(r.Body.Str))
			s.Flags |= r.Flags
		}
		got = append(got, s)
		b.Done()
	}
	return got
}

func TestPartialLineAndTicks(t *testing.T) {
	const (
		flush = time.Second
		tick  = 200 * time.Millisecond
	)
	tests := []struct {
		name   string
		writes map[time.Duration]string
		want   []seen
	}{
		{
			name:   "partial line flushed after flush_timeout",
			writes: map[time.Duration]string{0: "first\nsecond"},
			want: []seen{
				{At: 0, Bodies: []string{"first"}},
				{At: tick, Tick: true},
				{At: flush, Bodies: []string{"second"}, Flags: event.Unterminated},
				{At: flush + tick, Tick: true},
			},
		},
		{
			name:   "line completed before the timeout is one line",
			writes: map[time.Duration]string{0: "first\nsec", 500 * time.Millisecond: "ond\n"},
			want: []seen{
				{At: 0, Bodies: []string{"first"}},
				{At: tick, Tick: true},
				{At: 500 * time.Millisecond, Bodies: []string{"second"}},
				{At: 500*time.Millisecond + tick, Tick: true},
			},
		},
		{
			name:   "a growing partial line restarts the timeout",
			writes: map[time.Duration]string{0: "a", 800 * time.Millisecond: "b"},
			want: []seen{
				{At: 800*time.Millisecond + flush, Bodies: []string{"ab"}, Flags: event.Unterminated},
				{At: 800*time.Millisecond + flush + tick, Tick: true},
			},
		},
		{
			name:   "no ticks without data",
			writes: map[time.Duration]string{},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := testenv.TempDir(t)
				path := filepath.Join(dir, "app.log")
				writeFile(t, path, "")
				opts := testOptions(path)
				opts.Watch = false
				opts.FlushTimeout = flush
				opts.TickInterval = tick
				got := runFake(t, path, opts, tt.writes)
				// Writes are noticed by polling: allow one poll interval.
				round := cmp.Comparer(func(a, b time.Duration) bool {
					d := a - b
					return d >= -opts.PollInterval && d <= opts.PollInterval
				})
				if diff := cmp.Diff(tt.want, got, round); diff != "" {
					t.Errorf("yielded (-want +got):\n%s", diff)
				}
			})
		})
	}
}
