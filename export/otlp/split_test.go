package otlp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// splitSample is a request of three resources, with scopes and schema URLs,
// holding records "r0".."r6".
func splitSample() *collogspb.ExportLogsServiceRequest {
	rec := func(i int) *logspb.LogRecord {
		return &logspb.LogRecord{TimeUnixNano: uint64(i), Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: fmt.Sprintf("r%d", i)}}}
	}
	res := func(name string) *resourcepb.Resource {
		return &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: name}}}}}
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{Resource: res("a"), SchemaUrl: "s1", ScopeLogs: []*logspb.ScopeLogs{
			{Scope: &commonpb.InstrumentationScope{Name: "x"}, LogRecords: []*logspb.LogRecord{rec(0), rec(1)}, SchemaUrl: "s2"},
			{Scope: &commonpb.InstrumentationScope{Name: "y"}, LogRecords: []*logspb.LogRecord{rec(2)}},
		}},
		{Resource: res("b"), ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{rec(3), rec(4), rec(5)}}}},
		{Resource: res("c"), ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{rec(6)}}}},
	}}
}

// flatten lists a request's records with the resource and scope each is
// under: "service/scope/schemas/body".
func flatten(t *testing.T, req *collogspb.ExportLogsServiceRequest) []string {
	t.Helper()
	var out []string
	for _, rl := range req.ResourceLogs {
		svc := rl.GetResource().GetAttributes()[0].GetValue().GetStringValue()
		for _, sl := range rl.ScopeLogs {
			for _, r := range sl.LogRecords {
				out = append(out, fmt.Sprintf("%s/%s/%s,%s/%s", svc, sl.GetScope().GetName(), rl.SchemaUrl, sl.SchemaUrl, r.GetBody().GetStringValue()))
			}
		}
	}
	return out
}

// TestSplitRequest: halving a request down to single records keeps every
// record once, in order, under its own resource and scope.
func TestSplitRequest(t *testing.T) {
	orig := splitSample()
	data, err := proto.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []string
	var split func(b []byte)
	split = func(b []byte) {
		x, y, n, ok, err := splitRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if n != 1 {
				t.Fatalf("a request of %d records was not split", n)
			}
			var req collogspb.ExportLogsServiceRequest
			if err := proto.Unmarshal(b, &req); err != nil {
				t.Fatal(err)
			}
			leaves = append(leaves, flatten(t, &req)...)
			return
		}
		split(x)
		split(y)
	}
	split(data)
	want := flatten(t, orig)
	if strings.Join(leaves, "\n") != strings.Join(want, "\n") {
		t.Errorf("records after splitting:\n%s\nwant:\n%s", strings.Join(leaves, "\n"), strings.Join(want, "\n"))
	}
	if _, _, _, _, err := splitRequest(data[:len(data)-3]); err == nil {
		t.Error("a truncated request was split without an error")
	}
}

// bigBatches returns n records "seq=i" with bodies of 100 bytes, except
// record big, of 5,000 bytes.
func bigBatches(n, big int) []*event.Batch {
	b := event.NewBatch()
	for i := range n {
		size := 100
		if i == big {
			size = 5000
		}
		body := fmt.Sprintf("seq=%d ", i)
		body += strings.Repeat("x", size-len(body))
		b.Records = append(b.Records, event.Record{Body: event.String(body)})
	}
	return []*event.Batch{b}
}

func seqsOf(reqs []*collogspb.ExportLogsServiceRequest) []int {
	var out []int
	for _, req := range reqs {
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					var seq int
					fmt.Sscanf(r.GetBody().GetStringValue(), "seq=%d", &seq)
					out = append(out, seq)
				}
			}
		}
	}
	return out
}

// checkSplitDelivery: every record but the big one arrived once, in order,
// and the big one was counted as rejected.
func checkSplitDelivery(t *testing.T, err error, got []int, n, big int) {
	t.Helper()
	if o := outcomeOf(err); o != (outcome{Err: true, Partial: 1}) {
		t.Fatalf("Send = %v, want 1 record rejected as too large", err)
	}
	var want []int
	for i := range n {
		if i != big {
			want = append(want, i)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records delivered %v, want %v", got, want)
	}
}

// TestHTTPSplitsTooLarge: a 413 splits the request until its pieces fit; a
// piece failing with a retryable error is sent again on the next attempt,
// after the pieces accepted before it, which are not sent again.
func TestHTTPSplitsTooLarge(t *testing.T) {
	const n, big, limit = 60, 17, 2000
	for _, compression := range []string{"none", "gzip", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			h := &httpReceiver{}
			var mu sync.Mutex
			var accepted []*collogspb.ExportLogsServiceRequest
			failed := false
			h.reply = func(w http.ResponseWriter, req *collogspb.ExportLogsServiceRequest) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case proto.Size(req) > limit:
					w.WriteHeader(http.StatusRequestEntityTooLarge)
				case len(accepted) == 3 && !failed:
					failed = true
					w.WriteHeader(http.StatusServiceUnavailable)
				default:
					accepted = append(accepted, req)
					writeProto(w, http.StatusOK, &collogspb.ExportLogsServiceResponse{})
				}
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			o := DefaultOptions()
			o.Endpoint = srv.URL
			o.Compression = compression
			c := newHTTPClient(t, o)
			r, err := c.Encode(bigBatches(n, big))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Release()
			if err := r.Send(t.Context()); outcomeOf(err) != (outcome{Err: true, Reason: "unavailable"}) {
				t.Fatalf("first attempt = %v, want the 503 of the fourth piece", err)
			}
			err = r.Send(t.Context())
			mu.Lock()
			defer mu.Unlock()
			checkSplitDelivery(t, err, seqsOf(accepted), n, big)
		})
	}
}

// TestGRPCSplitsTooLarge: a server's message size limit splits the request
// until its pieces fit; the record larger than the limit alone is counted.
func TestGRPCSplitsTooLarge(t *testing.T) {
	const n, big, limit = 60, 41, 2000
	for _, compression := range []string{"none", "gzip", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			s := &logsServer{}
			opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(limit)}
			if compression == "zstd" {
				//lint:ignore SA1019 the test server decompresses with its own implementation.
				opts = append(opts, grpc.RPCDecompressor(&countingDecompressor{name: "zstd"}))
			}
			addr := startGRPC(t, s, opts...)
			o := DefaultOptions()
			o.Endpoint = "http://" + addr
			o.Compression = compression
			c, err := NewGRPC(resolvedGRPC(t, o), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Send(t.Context(), bigBatches(n, big))
			s.mu.Lock()
			defer s.mu.Unlock()
			checkSplitDelivery(t, err, seqsOf(s.requests), n, big)
			if got := export.Reason(err); err == nil || !strings.Contains(err.Error(), "larger than the endpoint accepts") {
				t.Errorf("Send = %v (%s), want it to say a record is too large", err, got)
			}
		})
	}
}
