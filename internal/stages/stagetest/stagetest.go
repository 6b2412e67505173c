// Package stagetest helps test processing stages: it builds batches the way
// the tailer does, runs a stage over them while recording acknowledgements,
// renders records as stable text and compares it with golden files.
package stagetest

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// File describes the file a test batch comes from.
type File struct {
	Path     string
	Ino      uint64
	Resource *event.Resource
}

// Acks records which batches were acknowledged.
type Acks struct {
	acked map[int]bool
	n     int
}

// NewAcks returns an empty record of acknowledgements.
func NewAcks() *Acks { return &Acks{acked: map[int]bool{}} }

// Batch builds a batch of lines of f starting at offset start, as the tailer
// yields it (bodies in the arena, log.file.path and log.file.name attributes,
// one line per record with its newline counted). Its acknowledgement is
// recorded in acks under the returned id.
func (a *Acks) Batch(f File, start int64, lines ...string) (*event.Batch, int) {
	b := event.NewBatch()
	b.Source = "test"
	b.File = event.FileID{Dev: 1, Ino: f.Ino}
	b.Path = f.Path
	b.Resource = f.Resource
	b.Start = start
	off := start
	for _, l := range lines {
		r := b.Next()
		r.Offset = off
		r.Observed = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano()
		r.Body = event.String(b.CopyString(l))
		r.Attrs = append(r.Attrs,
			event.KeyValue{Key: "log.file.path", Value: event.String(f.Path)},
			event.KeyValue{Key: "log.file.name", Value: event.String(filepath.Base(f.Path))})
		off += int64(len(l)) + 1
	}
	b.End = off
	id := a.n
	a.n++
	b.SetAck(func() { a.acked[id] = true })
	return b, id
}

// Acked reports whether the batch with id was acknowledged.
func (a *Acks) Acked(id int) bool { return a.acked[id] }

// AckedIDs lists the acknowledged batch ids in order.
func (a *Acks) AckedIDs() []int {
	var ids []int
	for id := range a.acked {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Tick returns an idle tick batch, as the tailer yields when idle.
func Tick() *event.Batch { return event.NewBatch() }

// FileLines reads a testdata file into lines.
func FileLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// Run runs stage over the batches (nil entries become ticks) and returns
// what it yields, in order. It does not release the output batches.
func Run(stage pipe.Stage, in ...*event.Batch) []*event.Batch {
	var out []*event.Batch
	for b := range stage(slices.Values(in)) {
		out = append(out, b)
	}
	return out
}

// Release calls Done on every batch.
func Release(bs []*event.Batch) {
	for _, b := range bs {
		b.Done()
	}
}

// Render renders the records of the batches as stable text, one block per
// record; empty batches render as "(empty batch)" only when withEmpty.
func Render(bs []*event.Batch, withEmpty bool) string {
	var sb strings.Builder
	for _, b := range bs {
		if len(b.Records) == 0 {
			if withEmpty {
				sb.WriteString("(empty batch)\n")
			}
			continue
		}
		for i := range b.Records {
			RenderRecord(&sb, b, &b.Records[i])
		}
	}
	return sb.String()
}

// RenderByOffset renders the records of the batches sorted by offset: the
// order of events that joiners emit late depends on batch boundaries, their
// content does not.
func RenderByOffset(bs []*event.Batch) string {
	type block struct {
		off  int64
		text string
	}
	var blocks []block
	for _, b := range bs {
		for i := range b.Records {
			var sb strings.Builder
			RenderRecord(&sb, b, &b.Records[i])
			blocks = append(blocks, block{b.Records[i].Offset, sb.String()})
		}
	}
	slices.SortStableFunc(blocks, func(a, b block) int { return cmp.Compare(a.off, b.off) })
	var sb strings.Builder
	for _, bl := range blocks {
		sb.WriteString(bl.text)
	}
	return sb.String()
}

// RenderRecord writes one record.
func RenderRecord(sb *strings.Builder, b *event.Batch, r *event.Record) {
	fmt.Fprintf(sb, "- offset: %d\n", r.Offset)
	if r.Time != 0 {
		fmt.Fprintf(sb, "  time: %s\n", time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano))
	}
	if r.Severity != 0 || r.SeverityText != "" {
		fmt.Fprintf(sb, "  severity: %d %s %q\n", r.Severity, r.Severity, r.SeverityText)
	}
	if r.Flags != 0 {
		var fl []string
		for _, f := range []struct {
			f    event.Flags
			name string
		}{{event.Truncated, "truncated"}, {event.InvalidUTF8, "invalid_utf8"}, {event.ParseError, "parse_error"}, {event.Unterminated, "unterminated"}} {
			if r.Flags&f.f != 0 {
				fl = append(fl, f.name)
			}
		}
		fmt.Fprintf(sb, "  flags: %s\n", strings.Join(fl, ","))
	}
	if r.TraceID != ([16]byte{}) {
		fmt.Fprintf(sb, "  trace_id: %x\n  span_id: %x\n", r.TraceID, r.SpanID)
	}
	sb.WriteString("  body: ")
	sb.WriteString(Value(r.Body))
	sb.WriteByte('\n')
	for _, kv := range r.Attrs {
		fmt.Fprintf(sb, "  attr %s: %s\n", kv.Key, Value(kv.Value))
	}
	res := r.Resource
	if res == nil {
		res = b.Resource
	}
	if res != nil && len(res.Attrs) > 0 {
		for _, kv := range res.Attrs {
			fmt.Fprintf(sb, "  resource %s: %s\n", kv.Key, Value(kv.Value))
		}
	}
}

// Value renders v: strings quoted, numbers plain, maps {k: v}, arrays [v].
func Value(v event.Value) string {
	switch v.Kind {
	case event.KindEmpty:
		return "<empty>"
	case event.KindString:
		return strconv.Quote(v.Str)
	case event.KindBytes:
		return fmt.Sprintf("bytes(%x)", v.Str)
	case event.KindInt:
		return strconv.FormatInt(v.AsInt(), 10)
	case event.KindDouble:
		return "double(" + strconv.FormatFloat(v.AsDouble(), 'g', -1, 64) + ")"
	case event.KindBool:
		return strconv.FormatBool(v.AsBool())
	case event.KindMap:
		parts := make([]string, len(v.List))
		for i, kv := range v.List {
			parts[i] = strconv.Quote(kv.Key) + ": " + Value(kv.Value)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case event.KindArray:
		parts := make([]string, len(v.List))
		for i, kv := range v.List {
			parts[i] = Value(kv.Value)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "?"
}

// Golden compares got with the file at path, rewriting it when update is set.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := gocmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// Bench runs stage over b.N batches of the given lines (one batch per
// iteration, cycling through lines, batchSize records each) in one long run,
// as the agent does, and reports ns/event and allocs/event. Building the
// input batches is not timed.
func Bench(b *testing.B, stage pipe.Stage, lines []string, batchSize int) {
	var pool event.Pool
	f := File{Path: "/var/log/pods/shop_web-7f9c_0d1e/web/0.log", Ino: 9,
		Resource: &event.Resource{Attrs: []event.KeyValue{{Key: "host.name", Value: event.String("node-1")}}}}
	next := 0
	in := func(yield func(*event.Batch) bool) {
		var off int64
		for range b.N {
			b.StopTimer()
			bt := pool.Get()
			bt.Source, bt.Path, bt.Resource = "bench", f.Path, f.Resource
			bt.File = event.FileID{Dev: 1, Ino: f.Ino}
			bt.Start = off
			for range batchSize {
				l := lines[next%len(lines)]
				next++
				r := bt.Next()
				r.Offset = off
				r.Body = event.String(bt.CopyString(l))
				r.Attrs = append(r.Attrs,
					event.KeyValue{Key: "log.file.path", Value: event.String(f.Path)},
					event.KeyValue{Key: "log.file.name", Value: event.String("0.log")})
				off += int64(len(l)) + 1
			}
			bt.End = off
			b.StartTimer()
			if !yield(bt) {
				return
			}
		}
	}
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for out := range stage(in) {
		out.Done()
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * float64(batchSize)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	// Mallocs over the whole run include building the input batches, which
	// reuses pooled batches and allocates nearly nothing after warm-up.
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
}
