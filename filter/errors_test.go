package filter

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/event"
)

// warnings records the warnings logged, with their "records" attribute.
type warnings struct {
	mu      sync.Mutex
	records []int64
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *warnings) WithGroup(string) slog.Handler            { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "records" {
			w.mu.Lock()
			w.records = append(w.records, a.Value.Int64())
			w.mu.Unlock()
		}
		return true
	})
	return nil
}

// A condition that fails to evaluate keeps its records, counts them as
// errors (not drops), and warns at most once a minute with the count since
// the last warning.
func TestMatchErrorsAreCountedAndLoggedRateLimited(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	var log warnings
	counts := map[string]map[string]int{"drop": {}, "error": {}}
	s, err := Match(MatchOptions{Keep: `attributes["status"] >= 500`}, slog.New(&log), now,
		func(reason string, n int) { counts["drop"][reason] += n },
		func(reason string, n int) { counts["error"][reason] += n })
	if err != nil {
		t.Fatal(err)
	}
	// sample: 3 records whose status is not a number (errors), 1 below 500.
	advances := []time.Duration{0, time.Second, 30 * time.Second, 30 * time.Second, time.Second}
	in := func(yield func(*event.Batch) bool) {
		for _, d := range advances {
			clock = clock.Add(d)
			if !yield(makeBatch("/x", sample...)) {
				return
			}
		}
	}
	batches := 0
	for b := range s(in) {
		batches++
		if len(b.Records) != 4 {
			t.Errorf("batch %d kept %d records, want 4 (3 failed, 1 matched)", batches, len(b.Records))
		}
	}
	if counts["error"]["filter_error"] != 3*batches || counts["drop"]["filter_error"] != 0 {
		t.Errorf("counts %v: want %d filter_error errors and no such drops", counts, 3*batches)
	}
	// Warnings at 0s (3 records), at 61s (the 3 batches since: 9).
	if want := []int64{3, 9}; !slices.Equal(log.records, want) {
		t.Errorf("warnings with records %v, want %v", log.records, want)
	}
}
