package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logsServer is an OTLP/gRPC logs receiver on 127.0.0.1 built on the
// generated service. It keeps every request it decoded and answers with
// reply.
type logsServer struct {
	collogspb.UnimplementedLogsServiceServer
	reply func(*collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error)

	mu       sync.Mutex
	requests []*collogspb.ExportLogsServiceRequest
	headers  []metadata.MD
}

func (s *logsServer) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.headers = append(s.headers, md)
	s.mu.Unlock()
	if s.reply == nil {
		return &collogspb.ExportLogsServiceResponse{}, nil
	}
	return s.reply(req)
}

// startGRPC serves s on a loopback port and returns its address. Like a
// real receiver, the server accepts gzip unless opts say otherwise.
func startGRPC(t *testing.T, s *logsServer, opts ...grpc.ServerOption) string {
	t.Helper()
	//lint:ignore SA1019 the test server decompresses with its own implementation.
	opts = append([]grpc.ServerOption{grpc.RPCDecompressor(&countingDecompressor{name: "gzip"})}, opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	collogspb.RegisterLogsServiceServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func resolvedGRPC(t *testing.T, o Options) Options {
	t.Helper()
	o, err := Resolve(ProtocolGRPC, o, func(string) string { return "" })
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return o
}

func sampleBatches() []*event.Batch {
	res := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("shop")}}}
	b := event.NewBatch()
	b.Resource = res
	b.Records = []event.Record{
		{Time: 1, Observed: 2, Severity: event.SeverityWarn, Body: event.String("disk almost full\xff"), Attrs: []event.KeyValue{{Key: "seq", Value: event.Int(1)}}},
		{Observed: 3, Body: event.Map([]event.KeyValue{{Key: "msg", Value: event.String("structured")}})},
	}
	return []*event.Batch{b}
}

func statusWithRetry(c codes.Code, delay time.Duration) error {
	st := status.New(c, "slow down")
	st, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// outcome summarises how the export queue will treat a Send error.
type outcome struct {
	Permanent bool
	Delay     time.Duration
	Partial   int64
	Err       bool
	Reason    string // of an error other than a partial success
}

func outcomeOf(err error) outcome {
	o := outcome{Err: err != nil, Permanent: export.IsPermanent(err)}
	o.Delay, _ = export.RetryDelay(err)
	var pe *export.PartialError
	if errors.As(err, &pe) {
		o.Partial = pe.Rejected
	} else if err != nil {
		o.Reason = export.Reason(err)
	}
	return o
}

func TestGRPCClassifiesResponses(t *testing.T) {
	partial := func(n int64, msg string) *collogspb.ExportLogsServiceResponse {
		return &collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: n, ErrorMessage: msg}}
	}
	tests := []struct {
		name string
		resp *collogspb.ExportLogsServiceResponse
		err  error
		want outcome
	}{
		{"ok", &collogspb.ExportLogsServiceResponse{}, nil, outcome{}},
		{"partial", partial(1, "bad timestamp"), nil, outcome{Err: true, Partial: 1}},
		{"warning only", partial(0, "deprecated field"), nil, outcome{}},
		{"unavailable", nil, status.Error(codes.Unavailable, "down"), outcome{Err: true, Reason: "unavailable"}},
		{"unavailable with retry info", nil, statusWithRetry(codes.Unavailable, 3*time.Second), outcome{Err: true, Delay: 3 * time.Second, Reason: "unavailable"}},
		// A rate limit without RetryInfo is waited out with backoff; only
		// the size limit splits the request (TestGRPCSplitsTooLarge).
		{"resource exhausted", nil, status.Error(codes.ResourceExhausted, "quota"), outcome{Err: true, Reason: "rate_limited"}},
		{"resource exhausted with retry info", nil, statusWithRetry(codes.ResourceExhausted, 2*time.Second), outcome{Err: true, Delay: 2 * time.Second, Reason: "rate_limited"}},
		{"message too large, one record", nil, status.Error(codes.ResourceExhausted, "grpc: received message larger than max (900 vs. 10)"), outcome{Err: true, Partial: 2}},
		{"deadline", nil, status.Error(codes.DeadlineExceeded, "slow"), outcome{Err: true, Reason: "timeout"}},
		{"canceled", nil, status.Error(codes.Canceled, "x"), outcome{Err: true, Reason: "timeout"}},
		{"aborted", nil, status.Error(codes.Aborted, "x"), outcome{Err: true, Reason: "other"}},
		{"out of range", nil, status.Error(codes.OutOfRange, "x"), outcome{Err: true, Reason: "other"}},
		{"failed precondition", nil, status.Error(codes.FailedPrecondition, "x"), outcome{Err: true, Reason: "other"}},
		{"data loss", nil, status.Error(codes.DataLoss, "x"), outcome{Err: true, Reason: "server_error"}},
		// Only an error about the request itself drops it.
		{"invalid argument", nil, status.Error(codes.InvalidArgument, "bad"), outcome{Err: true, Permanent: true, Reason: "bad_request"}},
		// Everything else holds the records: an expired token, a wrong
		// service, a failing server.
		{"unauthenticated", nil, status.Error(codes.Unauthenticated, "who"), outcome{Err: true, Reason: "auth"}},
		{"permission denied", nil, status.Error(codes.PermissionDenied, "no"), outcome{Err: true, Reason: "auth"}},
		{"unimplemented", nil, status.Error(codes.Unimplemented, "no"), outcome{Err: true, Reason: "not_found"}},
		{"not found", nil, status.Error(codes.NotFound, "no"), outcome{Err: true, Reason: "not_found"}},
		{"internal", nil, status.Error(codes.Internal, "bug"), outcome{Err: true, Reason: "server_error"}},
		{"unknown", nil, status.Error(codes.Unknown, "?"), outcome{Err: true, Reason: "server_error"}},
		{"code unknown to gRPC", nil, status.Error(codes.Code(99), "?"), outcome{Err: true, Reason: "other"}},
	}
	s := &logsServer{}
	var current struct {
		sync.Mutex
		resp *collogspb.ExportLogsServiceResponse
		err  error
	}
	s.reply = func(*collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
		current.Lock()
		defer current.Unlock()
		return current.resp, current.err
	}
	addr := startGRPC(t, s)
	o := DefaultOptions()
	o.Endpoint = "http://" + addr
	c, err := NewGRPC(resolvedGRPC(t, o), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			current.Lock()
			current.resp, current.err = tt.resp, tt.err
			current.Unlock()
			err := c.Send(t.Context(), sampleBatches())
			if got := outcomeOf(err); got != tt.want {
				t.Errorf("Send = %v: outcome %+v, want %+v", err, got, tt.want)
			}
		})
	}
}

func TestGRPCSendsRecordsAndHeaders(t *testing.T) {
	s := &logsServer{}
	addr := startGRPC(t, s)
	o := DefaultOptions()
	o.Endpoint = addr
	o.TLS.Insecure = new(true)
	o.Headers = map[string]string{"Authorization": "Bearer t0ken", "x-tenant": "shop"}
	c, err := NewGRPC(resolvedGRPC(t, o), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	batches := sampleBatches()
	if err := c.Send(t.Context(), batches); err != nil {
		t.Fatal(err)
	}
	if len(s.requests) != 1 {
		t.Fatalf("server got %d requests, want 1", len(s.requests))
	}
	if want := buildRequest(batches); !proto.Equal(s.requests[0], want) {
		t.Errorf("server decoded %v\nwant %v", s.requests[0], want)
	}
	for k, want := range map[string]string{"authorization": "Bearer t0ken", "x-tenant": "shop", "user-agent": "logpump"} {
		got := s.headers[0].Get(k)
		if len(got) == 0 || !bytes.HasPrefix([]byte(got[0]), []byte(want)) {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if got := c.Stats().InvalidUTF8; got != 1 {
		t.Errorf("Stats().InvalidUTF8 = %d, want 1", got)
	}
}

// countingDecompressor decompresses requests on the test server with an
// implementation independent of the client's, and counts its uses.
type countingDecompressor struct {
	name string
	mu   sync.Mutex
	n    int
}

func (d *countingDecompressor) Do(r io.Reader) ([]byte, error) {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
	switch d.name {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case "zstd":
		dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer dec.Close()
		return io.ReadAll(dec)
	}
	return nil, errors.New("unknown compression " + d.name)
}

func (d *countingDecompressor) Type() string { return d.name }

func TestGRPCCompression(t *testing.T) {
	for _, name := range []string{"gzip", "zstd"} {
		t.Run(name, func(t *testing.T) {
			s := &logsServer{}
			dec := &countingDecompressor{name: name}
			//lint:ignore SA1019 the test server decompresses with its own implementation.
			addr := startGRPC(t, s, grpc.RPCDecompressor(dec))
			o := DefaultOptions()
			o.Endpoint = "http://" + addr
			o.Compression = name
			c, err := NewGRPC(resolvedGRPC(t, o), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			batches := sampleBatches()
			for range 2 {
				if err := c.Send(t.Context(), batches); err != nil {
					t.Fatal(err)
				}
			}
			if dec.n != 2 {
				t.Errorf("server decompressed %d requests, want 2", dec.n)
			}
			for _, got := range s.requests {
				if !proto.Equal(got, buildRequest(batches)) {
					t.Errorf("server decoded %v", got)
				}
			}
		})
	}
}

func TestGRPCTLS(t *testing.T) {
	tests := []struct {
		name       string
		clientCert bool
		tls        func(p *testPKI) TLSOptions
		wantErr    bool
	}{
		{"verified by ca_file", false, func(p *testPKI) TLSOptions { return TLSOptions{CAFile: p.caFile} }, false},
		{"mutual TLS", true, func(p *testPKI) TLSOptions {
			return TLSOptions{CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}
		}, false},
		{"missing client certificate", true, func(p *testPKI) TLSOptions { return TLSOptions{CAFile: p.caFile} }, true},
		{"unknown authority", false, func(*testPKI) TLSOptions { return TLSOptions{} }, true},
		{"skip verify", false, func(*testPKI) TLSOptions { return TLSOptions{InsecureSkipVerify: true} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t, tt.clientCert)
			s := &logsServer{}
			addr := startGRPC(t, s, grpc.Creds(credentials.NewTLS(p.server)))
			o := DefaultOptions()
			o.Endpoint = addr
			o.TLS = tt.tls(p)
			o.Timeout = 5 * time.Second
			c, err := NewGRPC(resolvedGRPC(t, o), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Send(t.Context(), sampleBatches())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Send = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && len(s.requests) != 1 {
				t.Errorf("server got %d requests, want 1", len(s.requests))
			}
		})
	}
}

func TestGRPCUnreachableIsRetryable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	o := DefaultOptions()
	o.Endpoint = "http://" + addr
	o.Timeout = 2 * time.Second
	c, err := NewGRPC(resolvedGRPC(t, o), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Send(t.Context(), sampleBatches())
	if err == nil || export.IsPermanent(err) {
		t.Fatalf("Send to a closed port = %v, want a retryable error", err)
	}
}

func TestNewGRPCRejectsBadTLSFiles(t *testing.T) {
	o := DefaultOptions()
	o.Endpoint = "collector:4317"
	o.TLS.CAFile = "/nonexistent/ca.pem"
	if _, err := NewGRPC(resolvedGRPC(t, o), nil); err == nil {
		t.Fatal("NewGRPC with a missing ca_file succeeded")
	}
}

// TestGRPCSendsParts sends requests of parts to a receiver built on the
// generated service: uncompressed from the parts' buffers as they are,
// compressed once, the parts one after the other, and the same compressed
// bytes sent again; every record arrives, in order, across a retry.
func TestGRPCSendsParts(t *testing.T) {
	for _, compression := range []string{"none", "gzip", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			var attempts atomic.Int32
			s := &logsServer{reply: func(*collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
				if attempts.Add(1) == 1 {
					return nil, status.Error(codes.Unavailable, "try again")
				}
				return &collogspb.ExportLogsServiceResponse{}, nil
			}}
			var opts []grpc.ServerOption
			if compression == "zstd" {
				//lint:ignore SA1019 the test server decompresses with its own implementation.
				opts = append(opts, grpc.RPCDecompressor(&countingDecompressor{name: "zstd"}))
			}
			o := DefaultOptions()
			o.Endpoint = startGRPC(t, s, opts...)
			o.TLS.Insecure = new(true)
			o.Compression = compression
			c, err := NewGRPC(resolvedGRPC(t, o), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("shop")}}}
			var batches []*event.Batch
			var parts []export.Part
			var want []string
			for i := range 3 {
				b := event.NewBatch()
				b.Resource = res
				for j := range 40 {
					line := fmt.Sprintf("line %d", 40*i+j)
					b.Next().Body = event.String(line)
					want = append(want, line)
				}
				batches = append(batches, b)
				parts = append(parts, c.EncodePart(b))
				b.Records = nil
			}
			r, err := c.EncodeParts(batches, parts)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Release()
			if fromParts := r.(*grpcRequest).parts != nil; fromParts != (compression == "none") {
				t.Errorf("request sent from the parts' buffers: %v, want %v", fromParts, compression == "none")
			}
			if compressed := r.(*grpcRequest).zp != nil; compressed != (compression != "none") {
				t.Errorf("request compressed when encoded: %v, want %v", compressed, compression != "none")
			}
			if err := r.Send(t.Context()); outcomeOf(err) != (outcome{Err: true, Reason: "unavailable"}) {
				t.Fatalf("first attempt: %v, want a retryable error", err)
			}
			if err := r.Send(t.Context()); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			for n, req := range s.requests {
				var lines []string
				for _, rl := range req.ResourceLogs {
					for _, sl := range rl.ScopeLogs {
						for _, lr := range sl.LogRecords {
							lines = append(lines, lr.Body.GetStringValue())
						}
					}
				}
				if !slices.Equal(lines, want) {
					t.Errorf("attempt %d delivered %d lines, %q...; want line 0 to line 119 in order", n+1, len(lines), lines[:min(3, len(lines))])
				}
			}
			if len(s.requests) != 2 {
				t.Errorf("server decoded %d requests, want 2", len(s.requests))
			}
		})
	}
}
