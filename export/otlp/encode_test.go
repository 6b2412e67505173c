package otlp

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// buildRequest builds with the generated types the request AppendRequest
// must encode: the oracle of the encoder tests and the baseline of its
// benchmark.
func buildRequest(batches []*event.Batch) *collogspb.ExportLogsServiceRequest {
	req := &collogspb.ExportLogsServiceRequest{}
	byRes := map[*event.Resource]*logspb.ScopeLogs{}
	for _, b := range batches {
		for i := range b.Records {
			r := &b.Records[i]
			res := resourceOf(b, r)
			sl, ok := byRes[res]
			if !ok {
				sl = &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: ScopeName}}
				rl := &logspb.ResourceLogs{ScopeLogs: []*logspb.ScopeLogs{sl}}
				if res != nil {
					rl.Resource = &resourcepb.Resource{Attributes: pbKVs(res.Attrs)}
				}
				req.ResourceLogs = append(req.ResourceLogs, rl)
				byRes[res] = sl
			}
			lr := &logspb.LogRecord{
				TimeUnixNano:         uint64(r.Time),
				ObservedTimeUnixNano: uint64(r.Observed),
				SeverityNumber:       logspb.SeverityNumber(r.Severity),
				SeverityText:         strings.ToValidUTF8(r.SeverityText, "\uFFFD"),
				Attributes:           pbKVs(append(slices.Clone(r.Attrs), event.FlagAttrs(r.Flags)...)),
			}
			if r.Body.Kind != event.KindEmpty {
				lr.Body = pbValue(r.Body)
			}
			if r.TraceID != [16]byte{} {
				lr.TraceId = slices.Clone(r.TraceID[:])
			}
			if r.SpanID != [8]byte{} {
				lr.SpanId = slices.Clone(r.SpanID[:])
			}
			sl.LogRecords = append(sl.LogRecords, lr)
		}
	}
	return req
}

func pbKVs(kvs []event.KeyValue) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for _, kv := range kvs {
		out = append(out, &commonpb.KeyValue{Key: strings.ToValidUTF8(kv.Key, "\uFFFD"), Value: pbValue(kv.Value)})
	}
	return out
}

func pbValue(v event.Value) *commonpb.AnyValue {
	switch v.Kind {
	case event.KindString:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.ToValidUTF8(v.Str, "\uFFFD")}}
	case event.KindBytes:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte(v.Str)}}
	case event.KindBool:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case event.KindInt:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt()}}
	case event.KindDouble:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsDouble()}}
	case event.KindArray:
		arr := &commonpb.ArrayValue{}
		for _, el := range v.List {
			arr.Values = append(arr.Values, pbValue(el.Value))
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}
	case event.KindMap:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: pbKVs(v.List)}}}
	}
	return &commonpb.AnyValue{}
}

// checkEncoding decodes what AppendRequest wrote and compares it with the oracle.
func checkEncoding(t *testing.T, batches []*event.Batch) {
	t.Helper()
	prefix := []byte("prefix")
	buf := AppendRequest(slices.Clone(prefix), batches)
	if string(buf[:len(prefix)]) != string(prefix) {
		t.Fatalf("AppendRequest overwrote dst: %q", buf[:len(prefix)])
	}
	var got collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(buf[len(prefix):], &got); err != nil {
		t.Fatalf("unmarshal encoded request: %v", err)
	}
	want := buildRequest(batches)
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("decoded request differs (-want +got):\n%s", diff)
	}
	// The oracle's own encoding must have the same size: the encoder writes
	// canonical lengths, as proto.Marshal does.
	ref, err := proto.Marshal(want)
	if err != nil {
		t.Fatalf("marshal oracle: %v", err)
	}
	if got, want := len(buf)-len(prefix), len(ref); got != want {
		t.Errorf("encoded size = %d, want %d (proto.Marshal)", got, want)
	}
}

func batchOf(res *event.Resource, recs ...event.Record) *event.Batch {
	b := event.NewBatch()
	b.Resource = res
	b.Records = recs
	return b
}

func TestAppendRequest(t *testing.T) {
	host := &event.Resource{Attrs: []event.KeyValue{
		{Key: "host.name", Value: event.String("web-1")},
		{Key: "service.name", Value: event.String("shop")},
	}}
	pod := &event.Resource{Attrs: []event.KeyValue{{Key: "k8s.pod.name", Value: event.String("api-7f9c")}}}
	empty := &event.Resource{}
	nested := event.Map([]event.KeyValue{
		{Key: "user", Value: event.Map([]event.KeyValue{
			{Key: "id", Value: event.Int(42)},
			{Key: "roles", Value: event.Array([]event.KeyValue{{Value: event.String("admin")}, {Value: event.Int(-1)}, {Value: event.Array(nil)}})},
			{Key: "none", Value: event.Value{}},
		})},
		{Key: "ok", Value: event.Bool(true)},
		{Key: "", Value: event.String("empty key")},
	})
	full := event.Record{
		Time: 1_700_000_000_123_456_789, Observed: 1_700_000_001_000_000_000,
		Severity: event.SeverityError + 2, SeverityText: "ERROR3",
		Body:    event.String("connection refused"),
		Attrs:   []event.KeyValue{{Key: "log.file.path", Value: event.String("/var/log/app.log")}, {Key: "n", Value: event.Int(7)}},
		TraceID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  [8]byte{8, 7, 6, 5, 4, 3, 2, 1},
		Offset:  1234, Flags: event.Truncated,
	}
	tests := []struct {
		name    string
		batches []*event.Batch
	}{
		{"no batches", nil},
		{"empty batch", []*event.Batch{batchOf(host)}},
		{"one full record", []*event.Batch{batchOf(host, full)}},
		{"zero record", []*event.Batch{batchOf(host, event.Record{})}},
		{"nil resource", []*event.Batch{batchOf(nil, event.Record{Body: event.String("x")})}},
		{"empty resource", []*event.Batch{batchOf(empty, event.Record{Body: event.String("x")})}},
		{"every value kind", []*event.Batch{batchOf(host,
			event.Record{Body: event.String("")},
			event.Record{Body: event.Int(0)},
			event.Record{Body: event.Int(math.MinInt64)},
			event.Record{Body: event.Int(math.MaxInt64)},
			event.Record{Body: event.Double(0)},
			event.Record{Body: event.Double(-3.25)},
			event.Record{Body: event.Double(math.Inf(1))},
			event.Record{Body: event.Bool(false)},
			event.Record{Body: event.Bool(true)},
			event.Record{Body: event.Bytes("\x00\xff\xfe raw")},
			event.Record{Body: event.Bytes("")},
			event.Record{Body: event.Array(nil)},
			event.Record{Body: event.Map(nil)},
			event.Record{Body: nested, Attrs: []event.KeyValue{{Key: "attr", Value: nested}, {Key: "e", Value: event.Value{}}}},
		)}},
		{"several resources", []*event.Batch{
			batchOf(host, full, event.Record{Body: event.String("second")}),
			batchOf(pod, event.Record{Body: event.String("pod line")}),
			batchOf(host, event.Record{Body: event.String("host again")}),
		}},
		{"record resource overrides batch", []*event.Batch{
			batchOf(host,
				event.Record{Body: event.String("a")},
				event.Record{Body: event.String("b"), Resource: pod},
				event.Record{Body: event.String("c")},
				event.Record{Body: event.String("d"), Resource: pod},
			),
			batchOf(nil, event.Record{Body: event.String("e"), Resource: host}, event.Record{Body: event.String("f")}),
		}},
		{"invalid UTF-8", []*event.Batch{batchOf(
			&event.Resource{Attrs: []event.KeyValue{{Key: "bad\xffkey", Value: event.String("v\xc3")}}},
			event.Record{
				SeverityText: "WA\x80RN",
				Body:         event.String("a\xff\xfeb\xc3(\xed\xa0\x80z"),
				Attrs: []event.KeyValue{
					{Key: "k\xff", Value: event.String("\xff")},
					{Key: "m", Value: event.Map([]event.KeyValue{{Key: "\xfe", Value: event.Array([]event.KeyValue{{Value: event.String("x\x80\x80y")}})}})},
					{Key: "ok", Value: event.String("héllo ✓ \uFFFD")},
				},
			})}},
		{"long strings need multi-byte lengths", []*event.Batch{batchOf(host,
			event.Record{Body: event.String(strings.Repeat("x", 200)), Attrs: []event.KeyValue{{Key: strings.Repeat("k", 130), Value: event.String(strings.Repeat("v", 20000))}}},
		)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkEncoding(t, tt.batches) })
	}
}

func TestAppendRequestCountsInvalidUTF8(t *testing.T) {
	tests := []struct {
		name string
		rec  event.Record
		want int
	}{
		{"valid", event.Record{Body: event.String("ok"), Attrs: []event.KeyValue{{Key: "k", Value: event.String("é")}}}, 0},
		{"body", event.Record{Body: event.String("a\xffb")}, 1},
		{"bytes are not checked", event.Record{Body: event.Bytes("a\xffb")}, 0},
		{"key and value", event.Record{Attrs: []event.KeyValue{{Key: "\xff", Value: event.String("\xfe")}}}, 2},
		{"severity text", event.Record{SeverityText: "\xff"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := appendRequest(nil, []*event.Batch{batchOf(nil, tt.rec)})
			if got != tt.want {
				t.Errorf("replaced strings = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestReplacedCheckedBodyIsSanitized replaces a body the tailer checked with
// one holding invalid UTF-8: the encoder must check the new one.
func TestReplacedCheckedBodyIsSanitized(t *testing.T) {
	b := event.NewBatch()
	r := b.Next()
	r.SetValidBody(b.Copy([]byte("checked line")))
	checkEncoding(t, []*event.Batch{b})
	r.Body = event.String(b.Copy([]byte("new \xff body")))
	checkEncoding(t, []*event.Batch{b})
	if _, invalid := appendRequest(nil, []*event.Batch{b}); invalid != 1 {
		t.Errorf("replaced strings = %d, want 1", invalid)
	}
	// Parts of a checked body: whole characters need no check, a cut
	// inside é is invalid and replaced.
	line := b.Copy([]byte("msg=héllo"))
	r.SetValidBody(line)
	r.Attrs = append(r.Attrs,
		event.KeyValue{Key: "msg", Value: event.String(line[4:])},
		event.KeyValue{Key: "cut", Value: event.String(line[6:8])})
	checkEncoding(t, []*event.Batch{b})
	if _, invalid := appendRequest(nil, []*event.Batch{b}); invalid != 1 {
		t.Errorf("replaced strings = %d, want 1 (the cut)", invalid)
	}
}

func TestSanitizedMatchesToValidUTF8(t *testing.T) {
	for _, s := range []string{"", "abc", "\xff", "\xff\xfe", "a\xffb\xfec", "\xed\xa0\x80", "\xf0\x9f\x98", "é\x80é", "\uFFFD\xff"} {
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got := string(appendSanitized(nil, s)); got != want {
			t.Errorf("appendSanitized(%q) = %q, want %q", s, got, want)
		}
	}
}

// benchBatch is the workload of the library measurements: one resource with
// five attributes, records with two timestamps, a severity, a ~120-byte
// body and three attributes.
func benchBatch(n int) *event.Batch {
	res := &event.Resource{Attrs: []event.KeyValue{
		{Key: "k8s.pod.name", Value: event.String("checkout-7f9c8d6b5-x2k4q")},
		{Key: "k8s.namespace.name", Value: event.String("shop")},
		{Key: "k8s.container.name", Value: event.String("checkout")},
		{Key: "k8s.node.name", Value: event.String("node-3")},
		{Key: "service.name", Value: event.String("checkout")},
	}}
	b := event.NewBatch()
	b.Resource = res
	for i := range n {
		r := b.Next()
		r.Time = 1_700_000_000_000_000_000 + int64(i)
		r.Observed = r.Time + 1000
		r.Severity = event.SeverityInfo
		r.SeverityText = "INFO"
		r.Body = event.String(fmt.Sprintf("%06d GET /api/v1/cart/items?session=8c1f2e3a status=200 bytes=5123 duration_ms=12 user_agent=Mozilla/5.0 ok", i))
		r.Attrs = append(r.Attrs,
			event.KeyValue{Key: "log.file.path", Value: event.String("/var/log/pods/shop_checkout/checkout/0.log")},
			event.KeyValue{Key: "log.iostream", Value: event.String("stdout")},
			event.KeyValue{Key: "seq", Value: event.Int(int64(i))},
		)
	}
	return b
}

// parsedBatch is n records as the json parser leaves them: the line as a
// checked body and six attributes cut from it, strings and numbers that
// differ from record to record.
func parsedBatch(n int) *event.Batch {
	b := event.NewBatch()
	for i := range n {
		line := b.Copy(fmt.Appendf(nil, `{"ts":"2026-01-02T03:04:%02d.%06dZ","level":"INFO","service":"payments","seq":%d,"duration_ms":%d.5,"msg":"GET /api/v1/orders/%d status=200"}`, i%60, i, i, i%300, i*7))
		r := b.Next()
		r.SetValidBody(line)
		r.Observed = 1_700_000_000_000_000_000 + int64(i)
		field := func(key string) string { // the quoted value after "key":"
			from := strings.Index(line, `"`+key+`":"`) + len(key) + 4
			return line[from : from+strings.IndexByte(line[from:], '"')]
		}
		r.Attrs = append(r.Attrs,
			event.KeyValue{Key: "log.file.name", Value: event.String("app.log")},
			event.KeyValue{Key: "ts", Value: event.String(field("ts"))},
			event.KeyValue{Key: "level", Value: event.String(field("level"))},
			event.KeyValue{Key: "service", Value: event.String(field("service"))},
			event.KeyValue{Key: "seq", Value: event.Int(int64(i))},
			event.KeyValue{Key: "duration_ms", Value: event.Double(float64(i%300) + 0.5)},
			event.KeyValue{Key: "msg", Value: event.String(field("msg"))})
	}
	return b
}

func TestBenchWorkloadEncodes(t *testing.T) {
	checkEncoding(t, []*event.Batch{benchBatch(50)})
	checkEncoding(t, []*event.Batch{parsedBatch(50)})
}

func BenchmarkEncode(b *testing.B) {
	const n = 1000
	batches := []*event.Batch{benchBatch(n)}
	b.Run("protowire", func(b *testing.B) {
		var buf []byte
		var enc Encoder // reused, as the clients' pooled encoders are
		b.ReportAllocs()
		for b.Loop() {
			buf = enc.AppendRequest(buf[:0], batches)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		b.ReportMetric(float64(len(buf))/n, "B/record-wire")
	})
	b.Run("protowire-parsed", func(b *testing.B) {
		parsed := []*event.Batch{parsedBatch(n)}
		var buf []byte
		var enc Encoder
		b.ReportAllocs()
		for b.Loop() {
			buf = enc.AppendRequest(buf[:0], parsed)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		b.ReportMetric(float64(len(buf))/n, "B/record-wire")
	})
	// The same records as four batches encoded ahead, as the export queue
	// does with the tailer's batches of 250, then copied into one request
	// (as for compression and OTLP/HTTP; uncompressed gRPC sends the parts).
	b.Run("parts", func(b *testing.B) {
		var batches []*event.Batch
		for range 4 {
			batches = append(batches, benchBatch(n/4))
		}
		pool, ahead := newBufferPool(1), newBufferPool(4)
		parts := make([]export.Part, len(batches))
		b.ReportAllocs()
		for b.Loop() {
			for i, bt := range batches {
				parts[i] = ahead.part(bt)
			}
			pool.release(pool.encode(batches, parts))
			ahead.releaseParts(parts)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run("generated+proto.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(buildRequest(batches)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
}

// TestAppendRequestRepeatedAttributes rotates more shared attribute strings
// than the encoder remembers, in an order that evicts entries between uses,
// and checks the request against the generated types.
func TestAppendRequestRepeatedAttributes(t *testing.T) {
	var shared []event.KeyValue
	for i := range 7 {
		shared = append(shared, event.KeyValue{Key: fmt.Sprintf("k%d", i), Value: event.String(strings.Repeat("v", 10+i) + "\xff")})
	}
	b := event.NewBatch()
	for i := range 200 {
		r := b.Next()
		r.Body = event.String(fmt.Sprintf("line %d", i))
		for j := range 1 + i%4 {
			r.Attrs = append(r.Attrs, shared[(i*3+j*5)%len(shared)])
		}
		r.Attrs = append(r.Attrs, event.KeyValue{Key: "n", Value: event.Int(int64(i))})
	}
	checkEncoding(t, []*event.Batch{b})
	checkEncoding(t, []*event.Batch{b, b})
}

// TestBufferPoolReusesAndShrinks: an encoder released is the next one used
// (the free list, not a sync.Pool that may keep it out of reach), and the
// buffer a burst grew is dropped once a request needs far less of it.
func TestBufferPoolReusesAndShrinks(t *testing.T) {
	p := newBufferPool(1)
	big := []*event.Batch{benchBatch(5000)}
	e := p.encode(big, nil)
	grown := cap(e.buf)
	p.release(e)
	if again := p.encode(big, nil); again != e || cap(again.buf) != grown {
		t.Fatalf("second encoding got encoder %p with %d bytes, want the released %p with %d", again, cap(again.buf), e, grown)
	}
	p.release(e)
	small := p.encode([]*event.Batch{benchBatch(1)}, nil)
	if small != e {
		t.Fatal("the free list did not hand back the released encoder")
	}
	checkRequest(t, small.request(), 1)
	p.release(small)
	if n := cap(small.buf); n != 0 {
		t.Errorf("after a one-record request the %d-byte buffer of a burst is kept (%d bytes)", grown, n)
	}
	if e := p.encode([]*event.Batch{benchBatch(3)}, nil); e != small {
		t.Error("encoder not reused after its buffer was dropped")
	} else {
		checkRequest(t, e.request(), 3)
	}
}

// checkRequest decodes req and checks it holds records log records.
func checkRequest(t *testing.T, req []byte, records int) {
	t.Helper()
	var got collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(req, &got); err != nil {
		t.Fatalf("decode request: %v", err)
	}
	n := 0
	for _, rl := range got.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			n += len(sl.LogRecords)
		}
	}
	if n != records {
		t.Errorf("request holds %d records, want %d", n, records)
	}
}

// TestEncodeParts builds a request of batches some of which were encoded
// ahead: it is the concatenation of each part and of each run of the other
// batches encoded as a request, records in the order of their batches, the
// batches of parts are not read, and the parts go back to their pool.
func TestEncodeParts(t *testing.T) {
	a := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("a")}}}
	b := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("b")}}}
	rec := func(seq int64) event.Record {
		return event.Record{Observed: seq, Body: event.String(fmt.Sprintf("line %d", seq)),
			Attrs: []event.KeyValue{{Key: "log.file.name", Value: event.String("app.log")}}}
	}
	batches := []*event.Batch{
		batchOf(a, rec(0), rec(1), rec(2)), // part
		batchOf(a, rec(3), rec(4)),
		batchOf(b, rec(5)),
		batchOf(a, rec(6)), // part
		batchOf(b, rec(7)), // part
		batchOf(a, rec(8)),
	}
	ahead := []bool{true, false, false, true, true, false}
	want := &collogspb.ExportLogsServiceRequest{}
	for _, seg := range [][]*event.Batch{batches[0:1], batches[1:3], batches[3:4], batches[4:5], batches[5:6]} {
		want.ResourceLogs = append(want.ResourceLogs, buildRequest(seg).ResourceLogs...)
	}
	var pool, parts bufferPool = newBufferPool(1), newBufferPool(3)
	ps := make([]export.Part, len(batches))
	for i, b := range batches {
		if ahead[i] {
			ps[i] = parts.part(b)
			b.Records = nil // as detached: the request must not read them
		}
	}
	e := pool.encode(batches, ps)
	parts.releaseParts(ps)
	var got collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(e.request(), &got); err != nil {
		t.Fatalf("unmarshal request: %v", err)
	}
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("request of parts differs (-want +got):\n%s", diff)
	}
	if n := len(parts.free); n != 3 {
		t.Errorf("%d parts back on their free list, want 3", n)
	}
}
