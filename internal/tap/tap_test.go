package tap

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/logpump/logpump/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// batches returns n batches of per records each; record i of batch j has
// body "b<j>r<i>" and offset j*per+i.
func batches(n, per int) []*event.Batch {
	var out []*event.Batch
	for j := range n {
		b := event.NewBatch()
		b.Source, b.Path = "app", "/var/log/app.log"
		for i := range per {
			r := b.Next()
			r.Body = event.String(b.CopyString("b" + itoa(j) + "r" + itoa(i)))
			r.Offset = int64(j*per + i)
		}
		out = append(out, b)
	}
	return out
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var s string
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

func seq(bs []*event.Batch) iter.Seq[*event.Batch] {
	return func(yield func(*event.Batch) bool) {
		for _, b := range bs {
			if !yield(b) {
				return
			}
		}
	}
}

func bodies(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Body.(string))
	}
	return out
}

func TestPointPassesBatchesThrough(t *testing.T) {
	for _, subscribed := range []bool{false, true} {
		r := NewRegistry()
		stage := r.Point("parsed")
		if subscribed {
			sub, err := r.Subscribe("parsed", 3)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
		}
		in := batches(4, 5)
		var got []*event.Batch
		for b := range stage(seq(in)) {
			got = append(got, b)
			if len(got) == 2 {
				break // the stage must stop when its consumer does
			}
		}
		if len(got) != 2 || got[0] != in[0] || got[1] != in[1] {
			t.Errorf("subscribed=%v: got %d batches, want the first 2 unchanged", subscribed, len(got))
		}
		if len(in[0].Records) != 5 {
			t.Errorf("subscribed=%v: batch lost records: got %d, want 5", subscribed, len(in[0].Records))
		}
	}
}

func TestSubscriptionGetsRenderedCopies(t *testing.T) {
	r := NewRegistry()
	stage := r.Point("parsed")
	sub, err := r.Subscribe("parsed", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	// The body aliases buf, standing in for the batch's arena.
	buf := []byte("GET /index.html 200")
	b := event.NewBatch()
	b.Source, b.Path = "web", "/var/log/nginx/access.log"
	b.Resource = &event.Resource{Attrs: []event.KeyValue{{Key: "host.name", Value: event.String("node-1")}}}
	rec := b.Next()
	rec.Body = event.String(unsafe.String(&buf[0], len(buf)))
	rec.Time = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC).UnixNano()
	rec.Severity = event.SeverityWarn
	rec.Offset = 42
	rec.Flags = event.Truncated | event.ParseError
	rec.TraceID = [16]byte{1: 0xab}
	rec.Attrs = []event.KeyValue{
		{Key: "status", Value: event.Int(200)},
		{Key: "ratio", Value: event.Double(0.5)},
		{Key: "nan", Value: event.Double(nan())},
		{Key: "ok", Value: event.Bool(true)},
		{Key: "tags", Value: event.Array([]event.KeyValue{{Value: event.String("a")}, {Value: event.Int(1)}})},
		{Key: "http", Value: event.Map([]event.KeyValue{{Key: "method", Value: event.String("GET")}})},
	}
	for range stage(seq([]*event.Batch{b})) {
	}
	copy(buf, "XXXXXXXXXXXXXXXXXXX") // the arena is reused after the batch moved on

	var got []Record
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for rec := range sub.Records(ctx) {
		got = append(got, rec)
		break
	}
	want := []Record{{
		Point: "parsed", Source: "web", File: "/var/log/nginx/access.log", Offset: 42,
		Time: "2026-01-02T03:04:05.000006Z", Severity: "WARN", Body: "GET /index.html 200",
		Attributes: map[string]any{
			"status": int64(200), "ratio": 0.5, "nan": "NaN", "ok": true,
			"tags": []any{"a", int64(1)}, "http": map[string]any{"method": "GET"},
		},
		Resource: map[string]any{"host.name": "node-1"},
		TraceID:  "00ab0000000000000000000000000000",
		Flags:    []string{"truncated", "parse_error"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestSubscriptionTakesTheNextNRecords(t *testing.T) {
	r := NewRegistry()
	stage := r.Point("out")
	for range stage(seq(batches(1, 3))) { // before subscribing: not seen
	}
	sub, err := r.Subscribe("out", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for range stage(seq(batches(3, 3))) {
	}
	var got []Record
	for rec := range sub.Records(context.Background()) {
		got = append(got, rec)
	}
	if diff := cmp.Diff([]string{"b0r0", "b0r1", "b0r2", "b1r0"}, bodies(got)); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
	if sub.Dropped() != 0 {
		t.Errorf("dropped: got %d, want 0", sub.Dropped())
	}
}

func TestSlowReaderNeverBlocksThePipeline(t *testing.T) {
	r := NewRegistry()
	stage := r.Point("out")
	sub, err := r.Subscribe("out", 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Nobody reads while 2000 records pass: the buffer (256) fills and the
	// rest is dropped; the loop finishes.
	n := 0
	for b := range stage(seq(batches(20, 100))) {
		n += len(b.Records)
	}
	if n != 2000 {
		t.Fatalf("records passed: got %d, want 2000", n)
	}
	if got, want := sub.Dropped(), uint64(2000-256); got != want {
		t.Errorf("dropped: got %d, want %d", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got := 0
	for range sub.Records(ctx) {
		got++
	}
	if got != 256 {
		t.Errorf("buffered records read: got %d, want 256", got)
	}
}

func TestConcurrentStagesShareOneSubscription(t *testing.T) {
	r := NewRegistry()
	r.Point("out") // registered, as by a running pipeline
	sub, err := r.Subscribe("out", 500)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan int)
	go func() {
		n := 0
		for range sub.Records(ctx) {
			n++
		}
		got <- n
	}()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		stage := r.Point("out")
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range stage(seq(batches(1, 50))) {
				}
			}
		})
	}
	n := <-got
	close(stop)
	wg.Wait()
	if n != 500 {
		t.Errorf("records received: got %d, want 500", n)
	}
}

func TestCloseStopsCopying(t *testing.T) {
	r := NewRegistry()
	r.Point("out")
	a, _ := r.Subscribe("out", 5)
	b, _ := r.Subscribe("out", 5)
	p := r.point("out", false)
	a.Close()
	a.Close()
	if subs := p.subs.Load(); subs == nil || len(*subs) != 1 || (*subs)[0] != b {
		t.Fatalf("after closing one of two: want only the other left")
	}
	b.Close()
	if p.subs.Load() != nil {
		t.Fatal("after closing both: want no subscribers (the idle path)")
	}
}

func TestSubscribeErrors(t *testing.T) {
	r := NewRegistry()
	r.Point("out")
	tests := []struct {
		name    string
		point   string
		n       int
		wantErr string
	}{
		{"unknown point", "parsed", 5, "unknown tap point"},
		{"zero records", "out", 0, "n must be between 1 and 10000"},
		{"too many records", "out", MaxRecords + 1, "n must be between"},
	}
	for _, tt := range tests {
		_, err := r.Subscribe(tt.point, tt.n)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := r.Subscribe("nope", 1); !errors.Is(err, ErrUnknownPoint) {
		t.Errorf("unknown point: got %v, want ErrUnknownPoint", err)
	}
}

func TestHTTPReadStreamsRecords(t *testing.T) {
	r := NewRegistry()
	stage := r.Point("out")
	r.Point("parsed")
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	// Feed batches until the reader is done, as a running pipeline would.
	done := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			for range stage(seq(batches(1, 2))) {
			}
		}
	}()
	var got []Record
	dropped, err := Read(context.Background(), srv.Client(), srv.URL, "out", 3, func(rec Record) error {
		got = append(got, rec)
		return nil
	})
	close(done)
	<-fed
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(got) != 3 || got[0].Point != "out" || got[0].File != "/var/log/app.log" {
		t.Errorf("got %+v, want 3 records from point out", got)
	}
	if dropped != 0 {
		t.Errorf("dropped: got %d, want 0", dropped)
	}
}

func TestHTTPErrors(t *testing.T) {
	r := NewRegistry()
	r.Point("out")
	r.Point("parsed")
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	tests := []struct {
		name, point string
		n           int
		wantErr     string
	}{
		{"unknown point", "raw", 1, `404 Not Found: unknown tap point "raw"; points: out, parsed`},
		{"point required when several", "", 1, "404 Not Found: give a tap point with stage=; points: out, parsed"},
		{"bad n", "out", -1, "400 Bad Request"},
	}
	for _, tt := range tests {
		_, err := Read(context.Background(), srv.Client(), srv.URL, tt.point, tt.n, func(Record) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
	resp, err := srv.Client().Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: got %d, want 405", resp.StatusCode)
	}
}

func TestHTTPRequestEndsWithClient(t *testing.T) {
	r := NewRegistry()
	r.Point("out") // nothing ever passes
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Read(ctx, srv.Client(), srv.URL, "", 1, func(Record) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the client's deadline", err)
	}
	// The handler saw the client leave and closed its subscription.
	deadline := time.Now().Add(5 * time.Second)
	for r.point("out", false).subs.Load() != nil {
		if time.Now().After(deadline) {
			t.Fatal("subscription still open after the client left")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkPointIdle is the cost of a tap point nobody listens to, per batch.
func BenchmarkPointIdle(b *testing.B) {
	r := NewRegistry()
	stage := r.Point("out")
	batch := batches(1, 100)[0]
	in := func(yield func(*event.Batch) bool) {
		for b.Loop() {
			if !yield(batch) {
				return
			}
		}
	}
	b.ReportAllocs()
	for range stage(in) {
	}
}

// BenchmarkPassThrough is the same loop without a tap point, the baseline.
func BenchmarkPassThrough(b *testing.B) {
	batch := batches(1, 100)[0]
	in := func(yield func(*event.Batch) bool) {
		for b.Loop() {
			if !yield(batch) {
				return
			}
		}
	}
	b.ReportAllocs()
	for range in {
	}
}
