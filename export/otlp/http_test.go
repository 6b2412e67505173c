package otlp

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// httpReceiver is an OTLP/HTTP logs receiver: it checks the request like a
// collector would (method, path, content type), decompresses the body with
// its own decoders and answers with reply.
type httpReceiver struct {
	reply func(w http.ResponseWriter, req *collogspb.ExportLogsServiceRequest)

	mu        sync.Mutex
	requests  []*collogspb.ExportLogsServiceRequest
	headers   []http.Header
	encodings []string
}

func (h *httpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/logs application/x-protobuf, got "+r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"), http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	case "zstd":
		zr, err := zstd.NewReader(r.Body, zstd.WithDecoderConcurrency(1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	default:
		http.Error(w, "unsupported encoding "+enc, http.StatusUnsupportedMediaType)
		return
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.requests = append(h.requests, &req)
	h.headers = append(h.headers, r.Header.Clone())
	h.encodings = append(h.encodings, r.Header.Get("Content-Encoding"))
	reply := h.reply
	h.mu.Unlock()
	if reply == nil {
		writeProto(w, http.StatusOK, &collogspb.ExportLogsServiceResponse{})
		return
	}
	reply(w, &req)
}

func writeProto(w http.ResponseWriter, code int, m proto.Message) {
	data, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(code)
	w.Write(data)
}

func resolvedHTTP(t *testing.T, o Options) Options {
	t.Helper()
	o, err := Resolve(ProtocolHTTP, o, func(string) string { return "" })
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return o
}

func newHTTPClient(t *testing.T, o Options) *HTTPClient {
	t.Helper()
	c, err := NewHTTP(resolvedHTTP(t, o), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receiverAndClient starts an httpReceiver and returns it with a client
// sending to it with compression and headers.
func receiverAndClient(t *testing.T, compression string, headers map[string]string) (*httpReceiver, *HTTPClient) {
	t.Helper()
	h := &httpReceiver{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o := DefaultOptions()
	o.Endpoint = srv.URL
	o.Compression = compression
	o.Headers = headers
	return h, newHTTPClient(t, o)
}

func TestHTTPClassifiesResponses(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name  string
		reply func(w http.ResponseWriter, req *collogspb.ExportLogsServiceRequest)
		want  outcome
		// delayAtLeast checks delays computed from a date, which depend on the clock.
		delayAtLeast time.Duration
	}{
		{"ok with body", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			writeProto(w, 200, &collogspb.ExportLogsServiceResponse{})
		}, outcome{}, 0},
		{"ok without body", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(200) }, outcome{}, 0},
		{"202 accepted", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(202) }, outcome{}, 0},
		{"partial", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			writeProto(w, 200, &collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "too old"}})
		}, outcome{Err: true, Partial: 2}, 0},
		// Only an error about the request itself drops it.
		{"400 with status", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			writeProto(w, 400, &spb.Status{Code: 3, Message: "bad record"})
		}, outcome{Err: true, Permanent: true, Reason: "bad_request"}, 0},
		// The Collector's answer to a body above max_request_body_size.
		{"400 body too large", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			http.Error(w, "http: request body too large", 400)
		}, outcome{Err: true, Partial: 2}, 0},
		// Everything else holds the records.
		{"401", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { http.Error(w, "no token", 401) }, outcome{Err: true, Reason: "auth"}, 0},
		{"403", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(403) }, outcome{Err: true, Reason: "auth"}, 0},
		{"404", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { http.NotFound(w, nil) }, outcome{Err: true, Reason: "not_found"}, 0},
		{"405", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(405) }, outcome{Err: true, Reason: "not_found"}, 0},
		// Always 413: the request is split down to single records, each
		// still too large: dropped and counted.
		{"413 always", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(413) }, outcome{Err: true, Partial: 2}, 0},
		{"500", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(500) }, outcome{Err: true, Reason: "server_error"}, 0},
		{"501", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(501) }, outcome{Err: true, Reason: "server_error"}, 0},
		{"418", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(418) }, outcome{Err: true, Reason: "other"}, 0},
		{"302 not followed", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			w.Header().Set("Location", "http://user:secret@elsewhere.example/v1/logs?token=x")
			w.WriteHeader(302)
		}, outcome{Err: true, Reason: "redirect"}, 0},
		{"429", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(429) }, outcome{Err: true, Reason: "rate_limited"}, 0},
		{"429 retry-after seconds", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
		}, outcome{Err: true, Delay: 30 * time.Second, Reason: "rate_limited"}, 0},
		{"503 retry-after date", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			w.Header().Set("Retry-After", date)
			w.WriteHeader(503)
		}, outcome{Err: true, Reason: "unavailable"}, 80 * time.Second},
		{"503 bad retry-after", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(503)
		}, outcome{Err: true, Reason: "unavailable"}, 0},
		{"500 retry-after", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(500)
		}, outcome{Err: true, Delay: 7 * time.Second, Reason: "server_error"}, 0},
		{"502", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(502) }, outcome{Err: true, Reason: "unavailable"}, 0},
		{"504", func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) { w.WriteHeader(504) }, outcome{Err: true, Reason: "timeout"}, 0},
	}
	h := &httpReceiver{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	o := DefaultOptions()
	o.Endpoint = srv.URL
	c := newHTTPClient(t, o)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.mu.Lock()
			h.reply = tt.reply
			h.mu.Unlock()
			err := c.Send(t.Context(), sampleBatches())
			got := outcomeOf(err)
			if tt.delayAtLeast > 0 {
				if got.Delay < tt.delayAtLeast || got.Delay > tt.delayAtLeast+15*time.Second {
					t.Errorf("delay = %v, want about %v", got.Delay, tt.delayAtLeast)
				}
				got.Delay = 0
			}
			if got != tt.want {
				t.Errorf("Send = %v: outcome %+v, want %+v", err, got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("Send = %v: shows the credentials of a redirect", err)
			}
		})
	}
}

func TestHTTPErrorNamesStatusAndMessage(t *testing.T) {
	h := &httpReceiver{reply: func(w http.ResponseWriter, _ *collogspb.ExportLogsServiceRequest) {
		writeProto(w, 400, &spb.Status{Code: 3, Message: "bad record"})
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	o := DefaultOptions()
	o.Endpoint = srv.URL
	err := newHTTPClient(t, o).Send(t.Context(), sampleBatches())
	want := "export logs to " + srv.URL + "/v1/logs: 400 Bad Request: bad record"
	if err == nil || err.Error() != want {
		t.Errorf("Send = %v, want %q", err, want)
	}
}

func TestHTTPSendsRecordsHeadersAndCompression(t *testing.T) {
	for _, compression := range []string{"none", "gzip", "zstd"} {
		t.Run(compression, func(t *testing.T) {
			h, c := receiverAndClient(t, compression, map[string]string{"Authorization": "Bearer t0ken"})
			batches := sampleBatches()
			for range 3 {
				if err := c.Send(t.Context(), batches); err != nil {
					t.Fatal(err)
				}
			}
			if len(h.requests) != 3 {
				t.Fatalf("server got %d requests, want 3", len(h.requests))
			}
			wantEnc := compression
			if compression == "none" {
				wantEnc = ""
			}
			for i, got := range h.requests {
				if !proto.Equal(got, buildRequest(batches)) {
					t.Errorf("request %d decoded to %v", i, got)
				}
				if h.encodings[i] != wantEnc {
					t.Errorf("Content-Encoding = %q, want %q", h.encodings[i], wantEnc)
				}
				if got := h.headers[i].Get("Authorization"); got != "Bearer t0ken" {
					t.Errorf("Authorization = %q", got)
				}
				if got := h.headers[i].Get("User-Agent"); got != "logpump" {
					t.Errorf("User-Agent = %q", got)
				}
			}
		})
	}
}

// TestHTTPSendsParts sends a request of parts, with and without
// compression: every record arrives once, in order, in the parts' order,
// and a part given as nil is encoded from its batch in its place.
func TestHTTPSendsParts(t *testing.T) {
	for _, compression := range []string{"none", "gzip", "zstd"} {
		for _, withNil := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nil part %v", compression, withNil), func(t *testing.T) {
				h, c := receiverAndClient(t, compression, nil)
				var batches []*event.Batch
				var parts []export.Part
				var want []string
				for i := range 3 {
					b := event.NewBatch()
					for j := range 40 {
						line := fmt.Sprintf("line %d", 40*i+j)
						b.Next().Body = event.String(line)
						want = append(want, line)
					}
					batches = append(batches, b)
					if withNil && i == 1 {
						parts = append(parts, nil)
						continue
					}
					parts = append(parts, c.EncodePart(b))
				}
				r, err := c.EncodeParts(batches, parts)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Release()
				if err := r.Send(t.Context()); err != nil {
					t.Fatal(err)
				}
				if len(h.requests) != 1 {
					t.Fatalf("server got %d requests, want 1", len(h.requests))
				}
				var lines []string
				for _, rl := range h.requests[0].ResourceLogs {
					for _, sl := range rl.ScopeLogs {
						for _, lr := range sl.LogRecords {
							lines = append(lines, lr.Body.GetStringValue())
						}
					}
				}
				if !slices.Equal(lines, want) {
					t.Errorf("delivered %d lines, %q...; want line 0 to line 119 in order", len(lines), lines[:min(3, len(lines))])
				}
			})
		}
	}
}

func TestHTTPTLS(t *testing.T) {
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t, tt.clientCert)
			h := &httpReceiver{}
			srv := httptest.NewUnstartedServer(h)
			srv.TLS = p.server
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			defer srv.Close()
			o := DefaultOptions()
			o.Endpoint = srv.URL
			o.TLS = tt.tls(p)
			err := newHTTPClient(t, o).Send(t.Context(), sampleBatches())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Send = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && export.IsPermanent(err) {
				t.Errorf("TLS failure %v is permanent; want retryable (certificates can be fixed)", err)
			}
			if err == nil && len(h.requests) != 1 {
				t.Errorf("server got %d requests, want 1", len(h.requests))
			}
		})
	}
}

func TestHTTPUnreachableIsRetryable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	o := DefaultOptions()
	o.Endpoint = "http://" + addr
	err = newHTTPClient(t, o).Send(t.Context(), sampleBatches())
	if err == nil || export.IsPermanent(err) {
		t.Fatalf("Send to a closed port = %v, want a retryable error", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("error %v does not carry the connection error", err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"-1", 0, false},
		{"Wed, 01 May 2024 12:00:30 GMT", 30 * time.Second, true},
		{"Wed, 01 May 2024 11:00:00 GMT", 0, true},
		{"later", 0, false},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
