package event

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestDoneAcksOnceAfterEveryHolder(t *testing.T) {
	var pool Pool
	b := pool.Get()
	acks := 0
	b.SetAck(func() { acks++ })
	b.Retain(2) // three holders: e.g. fan-out to three exporters
	view := b.View(nil)
	for i := range 3 {
		b.Done()
		if acks != 0 {
			t.Fatalf("acked after %d of 4 releases", i+1)
		}
	}
	view.Done()
	if acks != 1 {
		t.Fatalf("acks = %d after the last release, want 1", acks)
	}
}

func TestCopyStringsSurviveArenaGrowth(t *testing.T) {
	b := NewBatch()
	var got []string
	want := []string{}
	for i := range 1000 {
		s := string(rune('a'+i%26)) + "-line"
		want = append(want, s)
		got = append(got, b.Copy([]byte(s)))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("string %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestNextReusesAttributeSlices(t *testing.T) {
	var pool Pool
	b := pool.Get()
	r := b.Next()
	r.Attrs = append(r.Attrs, KeyValue{Key: "k", Value: String("v")})
	b.Done()
	b2 := pool.Get()
	r2 := b2.Next()
	if len(r2.Attrs) != 0 || r2.Body.Kind != KindEmpty {
		t.Errorf("recycled record = %+v, want empty", r2)
	}
}

// TestResetClearsEveryRecordHandedOut shortens a batch, as a filter does,
// and reuses it: every record Next hands out again must be empty.
func TestResetClearsEveryRecordHandedOut(t *testing.T) {
	b := NewBatch()
	for i := range 10 {
		r := b.Next()
		r.Body = String("line")
		r.Time = int64(i + 1)
		r.Attrs = append(r.Attrs, KeyValue{Key: "k", Value: Int(1)})
	}
	b.Records[0], b.Records[7] = b.Records[7], b.Records[0]
	b.Records = b.Records[:2]
	b.reset()
	for i := range 12 {
		if r := b.Next(); r.Time != 0 || r.Body.Kind != KindEmpty || len(r.Attrs) != 0 {
			t.Fatalf("record %d after reset = %+v, want empty", i, r)
		}
	}
}

// BenchmarkRecycleSmallBatch is a trickle: one line per batch, batches
// drawn from a pool whose record arrays once held 1,000 records.
func BenchmarkRecycleSmallBatch(b *testing.B) {
	var pool Pool
	big := pool.Get()
	for range 1000 {
		big.Next()
	}
	big.Done()
	b.ReportAllocs()
	for b.Loop() {
		bt := pool.Get()
		bt.Next().Body = String("one line")
		bt.Done()
	}
}

func BenchmarkFillBatch(b *testing.B) {
	var pool Pool
	line := []byte(`2026-11-25T10:00:00Z INFO request served method=GET path=/api/orders status=200 duration=12ms`)
	b.ReportAllocs()
	for b.Loop() {
		bt := pool.Get()
		for range 1000 {
			r := bt.Next()
			r.Body = String(bt.Copy(line))
			r.Attrs = append(r.Attrs, KeyValue{Key: "log.file.name", Value: String("app.log")})
		}
		bt.Done()
	}
}

func TestSeverityString(t *testing.T) {
	tests := []struct {
		s    Severity
		want string
	}{{0, ""}, {1, "TRACE"}, {9, "INFO"}, {10, "INFO2"}, {13, "WARN"}, {17, "ERROR"}, {24, "FATAL4"}, {25, ""}}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Severity(%d).String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestValidUTF8FollowsTheCheckedBody(t *testing.T) {
	b := NewBatch()
	line := b.Copy([]byte(`{"msg":"héllo wörld","n":1}`))
	r := b.Next()
	if r.ValidUTF8(line) {
		t.Fatal("unchecked string known valid")
	}
	r.SetValidBody(line)
	hello := strings.Index(line, "h")
	for _, tt := range []struct {
		name string
		s    string
		want bool
	}{
		{"the body", line, true},
		{"a quoted value", line[hello : hello+len("héllo wörld")], true},
		{"a prefix", line[:5], true},
		{"a suffix", line[len(line)-3:], true},
		{"empty", "", true},
		{"cut after the first byte of é", line[hello : hello+2], false},
		{"starting inside é", line[hello+2 : hello+5], false},
		{"a copy", b.Copy([]byte(line)), false},
		{"a constant", "héllo", false},
	} {
		if got := r.ValidUTF8(tt.s); got != tt.want {
			t.Errorf("%s: ValidUTF8(%q) = %v, want %v", tt.name, tt.s, got, tt.want)
		}
	}
	r.Reset()
	if r.ValidUTF8(line) {
		t.Error("Reset kept the checked body")
	}
}

// Room is the free part of the arena's block: Copy takes that much without
// allocating, and a recycled batch offers the block it kept.
func TestRoom(t *testing.T) {
	var pool Pool
	b := pool.Get()
	if got := b.Room(); got != 0 {
		t.Fatalf("new batch: Room() = %d, want 0", got)
	}
	b.Copy(make([]byte, 100))
	free := b.Room()
	if free <= 0 {
		t.Fatalf("after a copy: Room() = %d, want > 0", free)
	}
	b.Copy(make([]byte, free))
	if got := b.Room(); got != 0 {
		t.Errorf("after filling the block: Room() = %d, want 0", got)
	}
}

// TestDetachRecyclesRecordsBeforeTheAck follows a batch fanned out to three
// holders: its records go once no holder reads them, its acknowledgement
// once every holder released its reference, whichever way.
func TestDetachRecyclesRecordsBeforeTheAck(t *testing.T) {
	var pool Pool
	b := pool.Get()
	b.Next().Body = String(b.CopyString("line"))
	b.Start, b.End = 10, 15
	acks := 0
	b.SetAck(func() { acks++ })
	b.Retain(1)
	view := b.View(b.Records)

	b.Detach() // the first holder encoded the records
	if len(b.Records) != 1 || b.Records[0].Body.Str != "line" {
		t.Fatalf("records = %+v after one of three holders detached, want the line", b.Records)
	}
	view.Detach()
	if len(b.Records) != 1 {
		t.Fatal("records gone while a holder still reads them")
	}
	b.Done() // the last reader is done: the records go, the ack waits
	if b.Records != nil || b.arena != nil {
		t.Errorf("records %v and arena of %d bytes kept with no reader left", b.Records, cap(b.arena))
	}
	if b.Start != 10 || b.End != 15 || acks != 0 {
		t.Errorf("range [%d, %d) and %d acks once the records went, want [10, 15) and none", b.Start, b.End, acks)
	}
	view.Settle()
	if acks != 0 {
		t.Fatal("acknowledged while a detached holder has not settled")
	}
	b.Settle()
	if acks != 1 {
		t.Fatalf("acks = %d after every holder released, want 1", acks)
	}
}

// TestConcurrentDetachAndDone mixes holders that detach and settle with
// holders that read to the end and call Done (run with -race).
func TestConcurrentDetachAndDone(t *testing.T) {
	var pool Pool
	for range 200 {
		b := pool.Get()
		r := b.Next()
		r.Body = String(b.CopyString("line"))
		var acks atomic.Int32
		b.SetAck(func() { acks.Add(1) })
		b.Retain(7)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if b.Records[0].Body.Str != "line" {
					t.Error("a reader found its record recycled")
				}
				if i%2 == 0 {
					b.Done()
					return
				}
				b.Detach()
				b.Settle()
			})
		}
		wg.Wait()
		if n := acks.Load(); n != 1 {
			t.Fatalf("acks = %d, want 1", n)
		}
	}
}
