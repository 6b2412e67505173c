package otlpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// logs builds a request with one resource and the given bodies.
func logs(bodies ...string) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "sink-test")
	sl := rl.ScopeLogs().AppendEmpty()
	for _, b := range bodies {
		lr := sl.LogRecords().AppendEmpty()
		lr.Body().SetStr(b)
		lr.Attributes().PutStr("log.file.name", "a.log")
	}
	return ld
}

type sender func(ctx context.Context, ld plog.Logs) error

func grpcSender(t *testing.T, s *Sink) sender {
	cc, err := grpc.NewClient(s.GRPCEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := plogotlp.NewGRPCClient(cc)
	return func(ctx context.Context, ld plog.Logs) error {
		_, err := client.Export(ctx, plogotlp.NewExportRequestFromLogs(ld))
		return err
	}
}

// httpStatus is an HTTP answer other than 200.
type httpStatus int

func (c httpStatus) Error() string { return fmt.Sprintf("HTTP %d", int(c)) }

func httpSender(s *Sink) sender {
	return func(ctx context.Context, ld plog.Logs) error {
		body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.HTTPEndpoint()+"/v1/logs", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return httpStatus(resp.StatusCode)
		}
		return nil
	}
}

// TestSink checks the harness itself: records and their attributes are
// kept, rejections reach the client with the codes the OTLP specification
// gives them, and a restarted sink serves on the same ports.
func TestSink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })

	tests := []struct {
		name      string
		send      sender
		permanent func(error) bool // the request is bad (Permanent)
		server    func(error) bool // the Collector's own failure (ServerError)
		retryable func(error) bool
	}{
		{
			name:      "grpc",
			send:      grpcSender(t, s),
			permanent: func(err error) bool { return status.Code(err) == codes.InvalidArgument },
			server:    func(err error) bool { return status.Code(err) == codes.Internal },
			retryable: func(err error) bool { return status.Code(err) == codes.Unavailable },
		},
		{
			name:      "http",
			send:      httpSender(s),
			permanent: func(err error) bool { return errors.Is(err, httpStatus(http.StatusBadRequest)) },
			server:    func(err error) bool { return errors.Is(err, httpStatus(http.StatusInternalServerError)) },
			retryable: func(err error) bool { return errors.Is(err, httpStatus(http.StatusServiceUnavailable)) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.Records())
			if err := tt.send(ctx, logs(tt.name+" seq=0000000001 x", tt.name+" two")); err != nil {
				t.Fatalf("send: %v", err)
			}
			got := s.Records()[before:]
			if len(got) != 2 {
				t.Fatalf("got %d records, want 2", len(got))
			}
			if got, want := got[0].Body, tt.name+" seq=0000000001 x"; got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
			if got, want := got[0].BodyType, "Str"; got != want {
				t.Errorf("body type = %q, want %q", got, want)
			}
			if got, want := got[1].Attributes["log.file.name"], "a.log"; got != want {
				t.Errorf("log.file.name = %v, want %v", got, want)
			}
			if got, want := got[1].Resource["service.name"], "sink-test"; got != want {
				t.Errorf("service.name = %v, want %v", got, want)
			}

			s.SetReject(func(plog.Logs) error { return Permanent(errors.New("no")) })
			if err := tt.send(ctx, logs("p")); !tt.permanent(err) {
				t.Errorf("permanent rejection: got error %v", err)
			}
			s.SetReject(func(plog.Logs) error { return ServerError(errors.New("broken")) })
			if err := tt.send(ctx, logs("s")); !tt.server(err) {
				t.Errorf("server error: got error %v", err)
			}
			s.SetReject(func(plog.Logs) error { return errors.New("later") })
			if err := tt.send(ctx, logs("r")); !tt.retryable(err) {
				t.Errorf("retryable rejection: got error %v", err)
			}
			s.SetReject(nil)
			if got, want := len(s.Records()), before+2; got != want {
				t.Errorf("rejected records were kept: %d records, want %d", got, want)
			}

			if err := s.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			sendCtx, cancelSend := context.WithTimeout(ctx, time.Second)
			if err := tt.send(sendCtx, logs("down")); err == nil {
				t.Errorf("send to a stopped sink succeeded")
			}
			cancelSend()
			if err := s.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			// The gRPC client reconnects with backoff; wait for it.
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := tt.send(ctx, logs("up again"))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("send after restart: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	st := s.Stats()
	if got, want := st, (Stats{Requests: 4, Records: 6, RejectedRequests: 6, RejectedRecords: 6}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestTally(t *testing.T) {
	tl := NewTally()
	for _, seq := range []int{0, 1, 1, 3, 3, 3, 7} {
		tl.AddBody(string(Line(nil, "t", seq, 40)))
	}
	tl.AddBody("no number here")
	got := tl.Report(5)
	want := Report{Written: 5, Delivered: 6, Distinct: 3, Missing: 2, Duplicates: 3, MaxCopies: 3, Unexpected: 2}
	if got.Written != want.Written || got.Delivered != want.Delivered || got.Distinct != want.Distinct ||
		got.Missing != want.Missing || got.Duplicates != want.Duplicates || got.MaxCopies != want.MaxCopies ||
		got.Unexpected != want.Unexpected {
		t.Errorf("Report = %+v, want %+v", got, want)
	}
	if fmt.Sprint(got.FirstGaps) != "[2 4]" {
		t.Errorf("FirstGaps = %v, want [2 4]", got.FirstGaps)
	}
	if got, want := tl.MaxIn(time.Second), 8; got != want {
		t.Errorf("MaxIn = %d, want %d", got, want)
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		seq, size int
	}{{0, 32}, {42, 100}, {9999999999, 64}}
	for _, tt := range tests {
		line := Line(nil, "e2e", tt.seq, tt.size)
		if len(line) != tt.size || line[len(line)-1] != '\n' {
			t.Errorf("Line(%d, %d) = %q: want %d bytes ending in a newline", tt.seq, tt.size, line, tt.size)
		}
		if got, ok := ParseSeq(string(line[:len(line)-1])); !ok || got != tt.seq {
			t.Errorf("ParseSeq(Line(%d)) = %d, %v", tt.seq, got, ok)
		}
	}
}

// BenchmarkSink measures the receiver and the sink's record copying: the
// ceiling on what an end-to-end test can count per second.
func BenchmarkSink(b *testing.B) {
	ctx := context.Background()
	tally := NewTally()
	s, err := Start(ctx, Options{OnBody: tally.AddBody})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop(ctx)
	cc, err := grpc.NewClient(s.GRPCEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := plogotlp.NewGRPCClient(cc)
	bodies := make([]string, 1000)
	for i := range bodies {
		bodies[i] = string(Line(nil, "bench", i, 100))
	}
	req := plogotlp.NewExportRequestFromLogs(logs(bodies...))
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Export(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(bodies))/b.Elapsed().Seconds(), "records/s")
}
