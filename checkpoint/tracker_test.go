package checkpoint

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
)

var key = Key{Source: "app", Dev: 1, Ino: 42}

func newTracker(t *testing.T, opts Options) (*Tracker, *Store) {
	t.Helper()
	s := NewStore(testenv.TempDir(t))
	return NewTracker(s, slog.New(slog.DiscardHandler), opts), s
}

func track(t *testing.T, tr *Tracker, start, end int64) func() {
	t.Helper()
	ack, err := tr.Track(context.Background(), key, event.Fingerprint{Len: 10, Sum: 7}, "/var/log/app.log", start, end)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func committed(t *testing.T, tr *Tracker) int64 {
	t.Helper()
	off, ok := tr.Committed(key)
	if !ok {
		t.Fatal("no entry for key")
	}
	return off
}

func TestCommittedIsLongestAcknowledgedPrefix(t *testing.T) {
	tr, _ := newTracker(t, Options{})
	a := track(t, tr, 0, 100)
	b := track(t, tr, 100, 250)
	c := track(t, tr, 250, 300)
	steps := []struct {
		ack  func()
		want int64
	}{
		{c, 0},   // the last range alone moves nothing
		{a, 100}, // the first one: up to the gap
		{b, 300}, // the gap closes: everything
	}
	for i, s := range steps {
		s.ack()
		if got := committed(t, tr); got != s.want {
			t.Errorf("step %d: committed = %d, want %d", i, got, s.want)
		}
	}
	if n := tr.Pending(key); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

func TestTruncationStartsNewEpoch(t *testing.T) {
	tr, _ := newTracker(t, Options{})
	old := track(t, tr, 0, 500)
	fresh := track(t, tr, 0, 40) // the file was truncated and rewritten
	if got := committed(t, tr); got != 0 {
		t.Fatalf("after truncation committed = %d, want 0", got)
	}
	old() // acknowledging the old epoch must not move the new offset to 500
	if got := committed(t, tr); got != 0 {
		t.Errorf("old epoch ack moved committed to %d, want 0", got)
	}
	fresh()
	if got := committed(t, tr); got != 40 {
		t.Errorf("committed = %d, want 40", got)
	}
}

func TestSkipForwardMovesOffset(t *testing.T) {
	tr, _ := newTracker(t, Options{})
	// start_at end: the first range starts at the file's size.
	ack := track(t, tr, 1000, 1100)
	if got := committed(t, tr); got != 1000 {
		t.Errorf("committed = %d, want 1000 before the ack", got)
	}
	ack()
	if got := committed(t, tr); got != 1100 {
		t.Errorf("committed = %d, want 1100", got)
	}
}

func TestTrackBlocksAtInFlightCap(t *testing.T) {
	tr, _ := newTracker(t, Options{MaxInFlightBytes: 100})
	ack := track(t, tr, 0, 80)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tr.Track(ctx, key, event.Fingerprint{}, "p", 80, 160)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Track over the cap: err = %v, want context.DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := tr.Track(context.Background(), key, event.Fingerprint{}, "p", 80, 160)
		done <- err
	}()
	ack() // frees room: the blocked Track goes through
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAcksInRandomOrder(t *testing.T) {
	tr, _ := newTracker(t, Options{MaxInFlightBytes: 1 << 30})
	const n = 2000
	acks := make([]func(), n)
	for i := range acks {
		acks[i] = track(t, tr, int64(i*10), int64(i*10+10))
	}
	rand.Shuffle(n, func(i, j int) { acks[i], acks[j] = acks[j], acks[i] })
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				acks[i]()
			}
		})
	}
	wg.Wait()
	if got := committed(t, tr); got != n*10 {
		t.Errorf("committed = %d, want %d", got, n*10)
	}
}

func TestFlushAndLoadRoundTrip(t *testing.T) {
	tr, store := newTracker(t, Options{})
	track(t, tr, 0, 100)()
	unacked := track(t, tr, 100, 200)
	_ = unacked // never acknowledged: must not be persisted
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	tr2 := NewTracker(store, slog.New(slog.DiscardHandler), Options{})
	if err := tr2.Load(); err != nil {
		t.Fatal(err)
	}
	off, fp, ok := tr2.Resume(key)
	if !ok || off != 100 || fp != (event.Fingerprint{Len: 10, Sum: 7}) {
		t.Errorf("Resume = %d, %+v, %v; want 100, {10 7}, true", off, fp, ok)
	}
	// No temporary files are left behind.
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(store.Path()), "*"))
	if len(files) != 1 {
		t.Errorf("state dir holds %v, want only %s", files, FileName)
	}
}

func TestRetentionDropsUnseenFiles(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr, _ := newTracker(t, Options{Retention: time.Hour, Now: func() time.Time { return now }})
	track(t, tr, 0, 10)()
	other := Key{Source: "app", Dev: 1, Ino: 43}
	if _, err := tr.Track(context.Background(), other, event.Fingerprint{}, "b", 0, 10); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	tr.Touch(other, event.Fingerprint{}, "b", 10) // still there
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Committed(key); ok {
		t.Error("entry not seen for 2h with 1h retention was kept")
	}
	if _, ok := tr.Committed(other); !ok {
		t.Error("entry touched by a scan was dropped")
	}
}

func TestLoadRefusesOtherVersion(t *testing.T) {
	s := NewStore(testenv.TempDir(t))
	legacy := filepath.Join(filepath.Dir(s.Path()), LegacyFileName)
	if err := os.WriteFile(legacy, []byte(`{"version":99,"files":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil {
		t.Error("Load of version 99 succeeded, want an error")
	}
	missing := NewStore(filepath.Join(testenv.TempDir(t), "none"))
	if e, err := missing.Load(); err != nil || e != nil {
		t.Errorf("Load of a missing file = %v, %v; want empty, nil", e, err)
	}
}

// TestRunFlushesWithAcknowledgements: under a steady stream of
// acknowledgements, Run writes at the first one at least FlushInterval after
// the last write (no timer of its own); when they stop, the last change is
// written 2 × FlushInterval after the last write.
func TestRunFlushesWithAcknowledgements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, store := newTracker(t, Options{FlushInterval: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- tr.Run(ctx) }()
		start := time.Now()
		var flushes []time.Duration
		note := func() {
			synctest.Wait()
			if at := tr.LastFlush().Sub(start); len(flushes) == 0 || flushes[len(flushes)-1] != at {
				flushes = append(flushes, at)
			}
		}
		for i := range 10 { // acknowledgements at 0, 0.3s, ... 2.7s
			track(t, tr, int64(10*i), int64(10*i+10))()
			note()
			time.Sleep(300 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		note()
		want := []time.Duration{0, 1200 * time.Millisecond, 2400 * time.Millisecond, 4400 * time.Millisecond}
		if !slices.Equal(flushes, want) {
			t.Errorf("flushes at %v, want %v", flushes, want)
		}
		entries, err := store.Load()
		if err != nil || len(entries) != 1 || entries[0].Offset != 100 {
			t.Errorf("saved %+v, %v; want offset 100", entries, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestMoveHandsPendingRangesOn: a file truncated with ranges in flight moves
// them to its content's key; their acknowledgements advance that key, not
// the truncated file's new epoch, and a later move to the copy that holds
// the content carries the committed offset and the rest of them.
func TestMoveHandsPendingRangesOn(t *testing.T) {
	tr, _ := newTracker(t, Options{})
	fp := event.Fingerprint{Len: 10, Sum: 7}
	a := track(t, tr, 0, 100)
	b := track(t, tr, 100, 200)
	c := track(t, tr, 200, 300)
	a()
	moved := MovedKey("app", fp)
	if !moved.Moved() || key.Moved() {
		t.Fatalf("Moved() of %v / %v", moved, key)
	}
	if _, ok := tr.Move(key, moved, false); !ok {
		t.Fatal("Move found no entry")
	}
	if _, ok := tr.Committed(key); ok {
		t.Error("the truncated file's key still has an entry")
	}
	// The truncated file is read again from 0: a new entry, not disturbed
	// by the old ranges' acknowledgements.
	fresh := track(t, tr, 0, 50)
	b()
	if got, _ := tr.Committed(moved); got != 200 {
		t.Errorf("moved key committed %d after the second ack, want 200", got)
	}
	if got := committed(t, tr); got != 0 {
		t.Errorf("truncated file committed %d, want 0", got)
	}
	fresh()
	if got := committed(t, tr); got != 50 {
		t.Errorf("truncated file committed %d, want 50", got)
	}
	copyKey := Key{Source: "app", Dev: 1, Ino: 99}
	if next, ok := tr.Move(moved, copyKey, false); !ok || next != 300 {
		t.Errorf("Move to the copy = %d, %v; want 300 (where reading stopped), true", next, ok)
	}
	// The copy is read on from where the original's reading stopped.
	d, err := tr.Track(context.Background(), copyKey, fp, "app.log.1", 300, 400)
	if err != nil {
		t.Fatal(err)
	}
	d()
	if got, _ := tr.Committed(copyKey); got != 200 {
		t.Errorf("copy committed %d with [200,300) pending, want 200", got)
	}
	c()
	if got, _ := tr.Committed(copyKey); got != 400 {
		t.Errorf("copy committed %d, want 400", got)
	}
	if n := tr.InFlight("app"); n != 0 {
		t.Errorf("InFlight %d, want 0", n)
	}
}

// TestSupersededMoveIsDroppedWhenAcknowledged: content whose copy another
// entry already follows stays while its ranges are pending (a crash then
// resumes the copy from the lower offset) and goes once they are done.
func TestSupersededMoveIsDroppedWhenAcknowledged(t *testing.T) {
	tr, _ := newTracker(t, Options{})
	fp := event.Fingerprint{Len: 10, Sum: 7}
	a := track(t, tr, 0, 100)
	moved := MovedKey("app", fp)
	tr.Move(key, moved, true)
	if got := tr.Entries("app"); len(got) != 1 || got[0].Ino != fp.Sum || got[0].Size != 100 {
		t.Fatalf("entries with a range pending: %+v", got)
	}
	a()
	if got := tr.Entries("app"); len(got) != 0 {
		t.Errorf("entries after the acknowledgement: %+v, want none", got)
	}
	// Nothing pending: dropped at once.
	track(t, tr, 0, 10)()
	tr.Move(key, moved, true)
	if got := tr.Entries("app"); len(got) != 0 {
		t.Errorf("entries after moving an acknowledged file: %+v, want none", got)
	}
}

// TestBeginNeverBlocks: Begin records a start while Track waits at the cap.
func TestBeginNeverBlocks(t *testing.T) {
	tr, _ := newTracker(t, Options{MaxInFlightBytes: 100})
	track(t, tr, 0, 100) // the cap, not acknowledged
	other := Key{Source: "app", Dev: 1, Ino: 43}
	done := make(chan struct{})
	go func() {
		tr.Begin(other, event.Fingerprint{Len: 5, Sum: 1}, "b", 4000)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Begin blocked at the in-flight cap")
	}
	if got, _ := tr.Committed(other); got != 4000 {
		t.Errorf("committed %d, want 4000", got)
	}
	e := tr.Entries("app")
	if len(e) != 2 {
		t.Fatalf("entries %+v", e)
	}
}

// TestResumeAfterTheRangesInFlight: while ranges of a file are in flight (a
// reader replaced by a reload), a new reader resumes after them, not at the
// committed offset: they are acknowledged by whoever holds them, and read
// again they would be sent twice. Once they are acknowledged, or after a
// restart (no ranges in memory), Resume is the committed offset.
func TestResumeAfterTheRangesInFlight(t *testing.T) {
	tr, s := newTracker(t, Options{})
	a := track(t, tr, 0, 100)
	b := track(t, tr, 100, 250)
	a()
	if off, _, ok := tr.Resume(key); !ok || off != 250 {
		t.Errorf("Resume with [100,250) in flight = %d, %v; want 250", off, ok)
	}
	// The new reader goes on in the same epoch.
	c := track(t, tr, 250, 300)
	c()
	if got := committed(t, tr); got != 100 {
		t.Errorf("committed %d with [100,250) in flight, want 100", got)
	}
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	restarted := NewTracker(s, slog.New(slog.DiscardHandler), Options{})
	if err := restarted.Load(); err != nil {
		t.Fatal(err)
	}
	if off, _, _ := restarted.Resume(key); off != 100 {
		t.Errorf("Resume after a restart = %d, want the committed 100", off)
	}
	b()
	if off, _, _ := tr.Resume(key); off != 300 {
		t.Errorf("Resume once acknowledged = %d, want 300", off)
	}
}

// TestRewindGivesUpOnRangesInFlight: after Rewind, reading resumes at the
// committed offset, the ranges given up on no longer count against the
// in-flight cap, and an acknowledgement that still comes for one moves
// nothing (the range is read and tracked again).
func TestRewindGivesUpOnRangesInFlight(t *testing.T) {
	tr, _ := newTracker(t, Options{MaxInFlightBytes: 100})
	ack1 := track(t, tr, 0, 30)
	ack2 := track(t, tr, 30, 60)
	_ = track(t, tr, 60, 90) // held by an exporter that was abandoned: never acknowledged
	ack1()
	if off, _, _ := tr.Resume(key); off != 90 {
		t.Fatalf("Resume before Rewind = %d, want 90 (the end of what is in flight)", off)
	}
	if got := tr.Rewind("other"); got != 0 {
		t.Errorf("Rewind of another source gave up on %d bytes", got)
	}
	if got := tr.Rewind(key.Source); got != 60 {
		t.Errorf("Rewind gave up on %d bytes, want 60", got)
	}
	if off, _, _ := tr.Resume(key); off != 30 {
		t.Fatalf("Resume after Rewind = %d, want the committed offset 30", off)
	}
	// The cap is free again: 100 bytes go in at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ack3, err := tr.Track(ctx, key, event.Fingerprint{Len: 10, Sum: 7}, "/var/log/app.log", 30, 130)
	if err != nil {
		t.Fatalf("Track after Rewind: %v (the ranges given up on still hold the cap)", err)
	}
	ack2() // late: moves nothing
	if got := committed(t, tr); got != 30 {
		t.Errorf("committed = %d after a late acknowledgement of a range given up on, want 30", got)
	}
	ack3()
	if got := committed(t, tr); got != 130 {
		t.Errorf("committed = %d, want 130", got)
	}
}

// TestCursorFollowsAcknowledgedPrefix: the committed cursor is the cursor of
// the last range of the acknowledged prefix, is saved with the offset, and a
// reader resuming while ranges are in flight starts after the last one.
func TestCursorFollowsAcknowledgedPrefix(t *testing.T) {
	tr, s := newTracker(t, Options{})
	k := JournalKey("journal")
	tr.BeginCursor(k, "journal", 10, "c0")
	var acks []func()
	for i, c := range []string{"c1", "c2", "c3"} {
		ack, err := tr.TrackCursor(context.Background(), k, "journal", int64(10+i*100), int64(10+(i+1)*100), c)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	resume := func() (int64, string) {
		off, c, ok := tr.ResumeCursor(k)
		if !ok {
			t.Fatal("no entry for the journal")
		}
		return off, c
	}
	if off, c := resume(); off != 310 || c != "c3" {
		t.Errorf("resume with ranges in flight = %d %q, want 310 c3", off, c)
	}
	steps := []struct {
		ack    func()
		off    int64
		cursor string
	}{
		{acks[1], 10, "c0"},
		{acks[0], 210, "c2"},
		{acks[2], 310, "c3"},
	}
	for i, st := range steps {
		st.ack()
		es := tr.Entries("journal")
		if len(es) != 1 || es[0].Offset != st.off || es[0].Cursor != st.cursor {
			t.Errorf("step %d: entries %+v, want offset %d cursor %q", i, es, st.off, st.cursor)
		}
	}
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	again := NewTracker(s, slog.New(slog.DiscardHandler), Options{})
	if err := again.Load(); err != nil {
		t.Fatal(err)
	}
	if off, c, ok := again.ResumeCursor(k); !ok || off != 310 || c != "c3" {
		t.Errorf("after a restart resume = %d %q %v, want 310 c3 true", off, c, ok)
	}
	if k.Moved() || k == scannedKey("journal") {
		t.Errorf("journal key %+v collides with a moved or scanned key", k)
	}
}

// TestRecycledKeyKeepsPendingContent: a key about to name other content (a
// deleted file's inode handed out again) while ranges of its old content
// are in flight: Move and Begin set the old entry aside under its content's
// MovedKey, where acknowledgements still move it and a restart looks for
// it, and drop it once they are done.
func TestRecycledKeyKeepsPendingContent(t *testing.T) {
	oldFP := event.Fingerprint{Len: 10, Sum: 7}
	newFP := event.Fingerprint{Len: 10, Sum: 8}
	for _, how := range []string{"move", "begin"} {
		t.Run(how, func(t *testing.T) {
			tr, _ := newTracker(t, Options{})
			a := track(t, tr, 0, 100)
			b := track(t, tr, 100, 200)
			a()
			switch how {
			case "move":
				from := Key{Source: "app", Dev: 0, Ino: newFP.Sum}
				tr.Begin(from, newFP, "/var/log/app.log", 0)
				if _, ok := tr.Move(from, key, false); !ok {
					t.Fatal("Move found no entry")
				}
			case "begin":
				tr.Begin(key, newFP, "/var/log/app.log.1", 0)
			}
			aside := MovedKey("app", oldFP)
			if got, ok := tr.Committed(aside); !ok || got != 100 {
				t.Fatalf("old content under its content key: %d, %v; want 100, true", got, ok)
			}
			if got := committed(t, tr); got != 0 {
				t.Errorf("the key's new content committed %d, want 0", got)
			}
			b()
			if _, ok := tr.Committed(aside); ok {
				t.Errorf("old content's entry kept after its last acknowledgement")
			}
			if n := tr.InFlight("app"); n != 0 {
				t.Errorf("InFlight %d, want 0", n)
			}
		})
	}
}
