package sink

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/logpump/logpump/bench/workload"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func TestTextSeqFindsEveryFormat(t *testing.T) {
	for _, f := range []workload.Format{workload.Plain, workload.JSON, workload.CRI} {
		for _, seq := range []uint64{0, 7, 1234567, 1999999} {
			line := workload.Append(nil, f, seq)
			got, ok := TextSeq(line)
			if !ok || got != seq {
				t.Errorf("TextSeq(%s line %d) = %d, %v; want %d in %q", f, seq, got, ok, seq, line)
			}
		}
	}
}

func TestRecordSeqShapes(t *testing.T) {
	tests := []struct {
		name string
		rec  *logspb.LogRecord
		want uint64
		ok   bool
	}{
		{"raw body", &logspb.LogRecord{Body: str("x INFO seq=42 GET /")}, 42, true},
		{"json body", &logspb.LogRecord{Body: str(`{"level":"info","seq": 43,"msg":"m"}`)}, 43, true},
		{"int attribute", &logspb.LogRecord{Body: str("GET / 200"), Attributes: []*commonpb.KeyValue{
			kv("level", str("info")), kv("seq", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 44}})}}, 44, true},
		{"double attribute", &logspb.LogRecord{Attributes: []*commonpb.KeyValue{
			kv("seq", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 45}})}}, 45, true},
		{"map body", &logspb.LogRecord{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
			Values: []*commonpb.KeyValue{kv("msg", str("hello")), kv("seq", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 46}})}}}}}, 46, true},
		{"string attribute", &logspb.LogRecord{Body: str("no number"), Attributes: []*commonpb.KeyValue{kv("log", str("a seq=47 b"))}}, 47, true},
		{"none", &logspb.LogRecord{Body: str("sequence 48")}, 0, false},
	}
	for _, tt := range tests {
		b, err := proto.Marshal(tt.rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := RecordSeq(b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: RecordSeq = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// request builds an export request carrying plain lines first..first+n-1.
func request(first, n uint64) *collogspb.ExportLogsServiceRequest {
	var recs []*logspb.LogRecord
	for seq := first; seq < first+n; seq++ {
		recs = append(recs, &logspb.LogRecord{
			Body: str(string(workload.Append(nil, workload.Plain, seq))),
			Attributes: []*commonpb.KeyValue{
				kv("log.file.path", str("/var/log/pods/shop_checkout-7d9c_0b1f/app/0.log")),
				kv("log.file.name", str("0.log")),
			},
		})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}},
	}}}
}

func TestSinkCountsOverGRPCAndHTTP(t *testing.T) {
	s := New(100)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := collogspb.NewLogsServiceClient(conn)
	if _, err := client.Export(context.Background(), request(0, 40)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Export(context.Background(), request(30, 20), grpc.UseCompressor("gzip")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Export(context.Background(), request(50, 10), grpc.UseCompressor("zstd")); err != nil {
		t.Fatal(err)
	}

	body, _ := proto.Marshal(request(60, 50)) // 100..109 are out of range
	enc, _ := zstd.NewWriter(nil)
	for _, c := range []struct {
		encoding string
		body     []byte
	}{{"", body}, {"zstd", enc.EncodeAll(body, nil)}} {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/v1/logs", s.HTTPAddr()), bytes.NewReader(c.body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if c.encoding != "" {
			req.Header.Set("Content-Encoding", c.encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %s: status %d", c.encoding, resp.StatusCode)
		}
	}

	got := s.Counts()
	want := Counts{Records: 170, Unique: 100, Duplicates: 50, OutOfRange: 20, Requests: 5}
	if got.Records != want.Records || got.Unique != want.Unique || got.Duplicates != want.Duplicates ||
		got.OutOfRange != want.OutOfRange || got.Requests != want.Requests || got.NoSeq != 0 {
		t.Errorf("counts = %+v\nwant %+v", got, want)
	}
	if m := s.Missing(10); len(m) != 0 {
		t.Errorf("missing %v", m)
	}
	if got.WireBytes == 0 || got.WireBytes >= got.RawBytes {
		t.Errorf("wire bytes %d, raw %d: want compressed payloads counted smaller", got.WireBytes, got.RawBytes)
	}
}

func BenchmarkConsume(b *testing.B) {
	req, _ := proto.Marshal(request(0, 1000))
	s := New(1000)
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		s.Consume(req)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}

// TestFieldsDecodesEveryLength walks a message whose fields take every
// path of fields.next: one- and two-byte lengths, longer ones, fixed64,
// varint and fixed32 fields, a tag of two bytes; each comes back as
// protowire's own encoding of it says.
func TestFieldsDecodesEveryLength(t *testing.T) {
	type field struct {
		num protowire.Number
		typ protowire.Type
		v   []byte
		n   uint64
	}
	var want []field
	var msg []byte
	for i, l := range []int{0, 1, 127, 128, 300, 16383, 16384, 100_000} {
		v := bytes.Repeat([]byte{byte('a' + i)}, l)
		msg = protowire.AppendTag(msg, 5, protowire.BytesType)
		msg = protowire.AppendBytes(msg, v)
		want = append(want, field{5, protowire.BytesType, v, 0})
	}
	msg = protowire.AppendTag(msg, 1, protowire.Fixed64Type)
	msg = protowire.AppendFixed64(msg, 0x0102030405060708)
	want = append(want, field{1, protowire.Fixed64Type, nil, 0x0102030405060708})
	msg = protowire.AppendTag(msg, 2, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 300)
	want = append(want, field{2, protowire.VarintType, nil, 300})
	msg = protowire.AppendTag(msg, 3, protowire.Fixed32Type)
	msg = protowire.AppendFixed32(msg, 7)
	want = append(want, field{3, protowire.Fixed32Type, nil, 0})
	msg = protowire.AppendTag(msg, 20, protowire.BytesType) // a two-byte tag
	msg = protowire.AppendBytes(msg, []byte("seq"))
	want = append(want, field{20, protowire.BytesType, []byte("seq"), 0})

	f := fields{msg}
	for i, w := range want {
		num, typ, v, n, ok, err := f.next()
		if !ok || err != nil {
			t.Fatalf("field %d: ok %v, err %v", i, ok, err)
		}
		if num != w.num || typ != w.typ || !bytes.Equal(v, w.v) || n != w.n {
			t.Errorf("field %d: %d/%d, %d bytes, n %d; want %d/%d, %d bytes, n %d", i, num, typ, len(v), n, w.num, w.typ, len(w.v), w.n)
		}
	}
	if _, _, _, _, ok, err := f.next(); ok || err != nil {
		t.Errorf("after the last field: ok %v, err %v", ok, err)
	}
	// A length past the end is malformed, on the short path too, and so is
	// field number 0.
	for _, bad := range [][]byte{{5<<3 | 2, 10, 'a'}, {0<<3 | 2, 1, 'a'}} {
		f = fields{bad}
		if _, _, _, _, _, err := f.next(); err == nil {
			t.Errorf("% x decoded without an error", bad)
		}
	}
}
