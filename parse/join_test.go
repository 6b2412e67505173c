package parse

import (
	"testing"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

// TestJoinHoldsStartBatch checks the acknowledgement rule of joined events:
// the batch an event started in is not acknowledged until the batch
// carrying the joined event is released, even when every batch the stage
// yielded before it was released.
func TestJoinHoldsStartBatch(t *testing.T) {
	s, err := Multiline(MultilineOptions{Indent: true}, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	f := stagetest.File{Path: "/var/log/app.log", Ino: 5}
	b1, id1 := acks.Batch(f, 0, "first event", "second event starts", "  and continues")
	b2, id2 := acks.Batch(f, b1.End, "  still continues", "third event")
	out := stagetest.Run(s, b1, b2)
	// Expected output: b1 (first event), the joined second event in its own
	// batch, b2 (third event, flushed at the end of input in its own batch).
	var joined *event.Batch
	for _, b := range out {
		for _, r := range b.Records {
			if r.Body.Str == "second event starts\n  and continues\n  still continues" {
				joined = b
			}
		}
	}
	if joined == nil {
		t.Fatalf("no joined event in output:\n%s", stagetest.Render(out, true))
	}
	for _, b := range out {
		if b != joined {
			b.Done()
		}
	}
	if acks.Acked(id1) {
		t.Error("the batch the joined event started in was acknowledged before the joined event")
	}
	if !acks.Acked(id2) {
		t.Error("a batch holding only continuation lines and released was not acknowledged")
	}
	joined.Done()
	if !acks.Acked(id1) {
		t.Error("the start batch was not acknowledged after the joined event was released")
	}
}

// TestJoinFlushTimeout checks that a lone last line is emitted on an idle
// tick once the flush timeout has passed, and not before.
func TestJoinFlushTimeout(t *testing.T) {
	clock := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	s, err := Multiline(MultilineOptions{Start: `^\d`, FlushTimeout: time.Second}, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	f := stagetest.File{Path: "/var/log/app.log", Ino: 5}
	var got []string
	in := func(yield func(*event.Batch) bool) {
		b, _ := acks.Batch(f, 0, "1 done", "2 open")
		if !yield(b) {
			return
		}
		clock = clock.Add(500 * time.Millisecond)
		if !yield(stagetest.Tick()) {
			return
		}
		got = append(got, "tick at 0.5s")
		clock = clock.Add(600 * time.Millisecond)
		if !yield(stagetest.Tick()) {
			return
		}
		got = append(got, "tick at 1.1s")
	}
	for b := range s(in) {
		for _, r := range b.Records {
			got = append(got, r.Body.Str)
		}
		b.Done()
	}
	want := []string{"1 done", "tick at 0.5s", "2 open", "tick at 1.1s"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if len(acks.AckedIDs()) != 1 {
		t.Error("input batch not acknowledged after the flush")
	}
}

// TestJoinStopsEarly checks that a consumer stopping early gets no more
// batches and that held batches stay unacknowledged (read again after a
// restart) rather than acknowledged without being exported.
func TestJoinStopsEarly(t *testing.T) {
	s, err := CRI(ContainerOptions{}, fixedNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	f := stagetest.File{Path: "/x.log", Ino: 1}
	b1, id1 := acks.Batch(f, 0, "2024-05-01T10:00:00Z stdout F a", "2024-05-01T10:00:01Z stdout P b")
	b2, _ := acks.Batch(f, b1.End, "2024-05-01T10:00:02Z stdout F c")
	n := 0
	for b := range s(func(yield func(*event.Batch) bool) { _ = yield(b1) && yield(b2) }) {
		n++
		b.Done()
		break
	}
	if n != 1 {
		t.Fatalf("got %d batches", n)
	}
	if acks.Acked(id1) {
		t.Error("a batch holding an open partial line was acknowledged after the consumer stopped")
	}
}
