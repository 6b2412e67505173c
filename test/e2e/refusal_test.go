package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// refusal is one way a destination refuses every request for a while.
type refusal struct {
	name string
	// collector answers through the real receiver (nil: own answers).
	collector func() error
	// own is the HTTP status a server of the test's own answers with, for
	// codes the Collector never sends; it forwards to the receiver otherwise.
	own int
}

// TestRefusalsHoldLines: every answer but "this request is invalid" holds
// the lines: an expired token, a wrong path, a failing server, a rate limit,
// codes the agent does not know. The destination refuses every request
// for a while, then accepts them again (fixed on its side): every line
// arrives, none twice, and the agent warns once per refusal, not once per
// attempt.
func TestRefusalsHoldLines(t *testing.T) {
	const (
		lineLen  = 100
		perPhase = 400
		refuse   = 1500 * time.Millisecond
	)
	collector := []refusal{
		{name: "internal", collector: func() error { return otlpsink.ServerError(errors.New("exporter queue is full")) }},
		{name: "unknown", collector: func() error { return otlpsink.Status(codes.Unknown, "?") }},
		{name: "unauthenticated", collector: func() error { return otlpsink.Status(codes.Unauthenticated, "token expired") }},
		{name: "permission-denied", collector: func() error { return otlpsink.Status(codes.PermissionDenied, "tenant disabled") }},
		{name: "unimplemented", collector: func() error { return otlpsink.Status(codes.Unimplemented, "no such service") }},
		{name: "resource-exhausted", collector: func() error { return otlpsink.Status(codes.ResourceExhausted, "quota") }},
		{name: "failed-precondition", collector: func() error { return otlpsink.Status(codes.FailedPrecondition, "x") }},
		{name: "unavailable", collector: func() error { return errors.New("busy") }},
	}
	// Answers the Collector never gives, from a proxy of the test's own in
	// front of it (HTTP only).
	own := []refusal{
		{name: "http-401", own: 401}, {name: "http-404", own: 404}, {name: "http-405", own: 405},
		{name: "http-500", own: 500}, {name: "http-501", own: 501}, {name: "http-302", own: 302},
		{name: "http-418", own: 418}, {name: "http-502", own: 502},
	}
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			phases := collector
			if protocol == "http" {
				phases = append(append([]refusal(nil), collector...), own...)
			}
			tally := otlpsink.NewTally()
			e := newEnv(t, setup{protocol: protocol, onBody: tally.AddBody})
			var answer atomic.Int64 // own: the status the proxy answers with; 0 forwards
			if protocol == "http" {
				target, _ := url.Parse(e.sink.HTTPEndpoint())
				proxy := httputil.NewSingleHostReverseProxy(target)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if code := int(answer.Load()); code != 0 {
						if code == 302 {
							w.Header().Set("Location", "http://elsewhere.invalid/v1/logs")
						}
						http.Error(w, "refused by the test", code)
						return
					}
					proxy.ServeHTTP(w, r)
				}))
				defer srv.Close()
				rewriteConfig(t, e, e.sink.HTTPEndpoint(), srv.URL)
			}
			s := e.newStream("refusal-"+protocol, lineLen, "a.log")
			p := e.start()
			written := 0
			for _, ph := range phases {
				before := e.sink.Stats().RejectedRequests
				if ph.collector != nil {
					e.sink.SetReject(func(plog.Logs) error { return ph.collector() })
				} else {
					answer.Store(int64(ph.own))
				}
				if err := s.write(perPhase); err != nil {
					t.Fatal(err)
				}
				written += perPhase
				time.Sleep(refuse)
				if ph.collector != nil && e.sink.Stats().RejectedRequests == before {
					t.Errorf("%s: the receiver refused no request", ph.name)
				}
				if got := tally.Distinct(written); got > written-perPhase {
					t.Errorf("%s: %d lines arrived while every request was refused", ph.name, got-(written-perPhase))
				}
				e.sink.SetReject(nil)
				answer.Store(0)
				if !waitUntil(30*time.Second, func() bool { return tally.Distinct(written) == written }) {
					t.Fatalf("%s: %d of %d lines arrived after the refusals ended", ph.name, tally.Distinct(written), written)
				}
			}
			p.stop(15 * time.Second)
			rep := tally.Report(written)
			log := readLog(t, e)
			warnings := strings.Count(log, "send failed; the records are held")
			summary(t, "refusal-"+protocol, "written=%d delivered=%d missing=%d duplicates=%d refusals=%d warnings=%d",
				rep.Written, rep.Delivered, rep.Missing, rep.Duplicates, len(phases), warnings)
			if rep.Missing != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 {
				t.Errorf("want every line exactly once: %v", rep)
			}
			if strings.Contains(log, "dropping request") {
				t.Error("the agent dropped a request")
			}
			// One warning as each refusal begins; a retry backoff of 100 ms
			// made about 10 attempts each.
			if warnings < len(phases) || warnings > 2*len(phases) {
				t.Errorf("%d warnings for %d refusals, want one per refusal", warnings, len(phases))
			}
		})
	}
}

// rewriteConfig replaces old by new in the agent's configuration file.
func rewriteConfig(t *testing.T, e *env, old, new string) {
	t.Helper()
	data, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("configuration holds no %q:\n%s", old, data)
	}
	if err := os.WriteFile(e.cfgPath, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadFixesExporter: an exporter the destination refuses (no token,
// a wrong path, TLS against a plaintext port) holds its lines; a SIGHUP
// with the configuration fixed abandons the old exporter's requests (never
// acknowledged), reads those lines again from the checkpoint and delivers
// them through the new one. Lines written after the reload arrive too.
func TestReloadFixesExporter(t *testing.T) {
	const (
		lineLen = 100
		before  = 3000
		after   = 2000
		token   = "s3cret-token-e2e"
	)
	tests := []struct {
		name, protocol string
		token          string
		broken, fixed  func(e *env) (string, string) // old, new text of the configuration
	}{
		{name: "auth-grpc", protocol: "grpc", token: token,
			fixed: func(*env) (string, string) {
				return "    tls: {insecure: true}", "    tls: {insecure: true}\n    headers: {authorization: \"Bearer " + token + "\"}"
			}},
		{name: "auth-http", protocol: "http", token: token,
			fixed: func(*env) (string, string) {
				return "    tls: {insecure: true}", "    tls: {insecure: true}\n    headers: {authorization: \"Bearer " + token + "\"}"
			}},
		{name: "wrong-path-http", protocol: "http",
			broken: func(e *env) (string, string) {
				return "endpoint: " + e.sink.HTTPEndpoint(), "endpoint: " + e.sink.HTTPEndpoint() + "/otlp/v1/logs"
			},
			fixed: func(e *env) (string, string) {
				return "endpoint: " + e.sink.HTTPEndpoint() + "/otlp/v1/logs", "endpoint: " + e.sink.HTTPEndpoint()
			}},
		{name: "tls-grpc", protocol: "grpc",
			broken: func(*env) (string, string) { return "tls: {insecure: true}", "tls: {insecure: false}" },
			fixed:  func(*env) (string, string) { return "tls: {insecure: false}", "tls: {insecure: true}" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tally := otlpsink.NewTally()
			e := newEnv(t, setup{protocol: tt.protocol, onBody: tally.AddBody, sinkToken: tt.token})
			if tt.broken != nil {
				o, n := tt.broken(e)
				rewriteConfig(t, e, o, n)
			}
			s := e.newStream("fix-"+tt.name, lineLen, "a.log", "b.log")
			if err := s.write(before); err != nil {
				t.Fatal(err)
			}
			p := e.start()
			if !waitUntil(20*time.Second, func() bool { return logContains(e, "send failed; the records are held") }) {
				t.Fatal("the broken exporter never reported a failure")
			}
			time.Sleep(time.Second)
			if got := tally.Distinct(before); got != 0 {
				t.Fatalf("%d lines arrived through the broken exporter", got)
			}
			o, n := tt.fixed(e)
			rewriteConfig(t, e, o, n)
			p.signal(syscall.SIGHUP)
			if !waitUntil(30*time.Second, func() bool { return tally.Distinct(before) == before }) {
				t.Fatalf("%d of %d lines arrived after the reload that fixed the exporter", tally.Distinct(before), before)
			}
			if err := s.write(after); err != nil {
				t.Fatal(err)
			}
			total := before + after
			waitUntil(30*time.Second, func() bool { return tally.Distinct(total) == total })
			p.stop(15 * time.Second)
			rep := tally.Report(total)
			log := readLog(t, e)
			summary(t, "fix-"+tt.name, "written=%d delivered=%d missing=%d duplicates=%d", rep.Written, rep.Delivered, rep.Missing, rep.Duplicates)
			if rep.Missing != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 {
				t.Errorf("want every line exactly once (the broken exporter delivered nothing): %v", rep)
			}
			if !strings.Contains(log, `"msg":"configuration reloaded"`) {
				t.Error("the reload was not applied")
			}
			if tt.token != "" && strings.Contains(log, tt.token) {
				t.Error("the agent's log shows the token")
			}
		})
	}
}

// TestSizeLimitsSplit: requests above the receiver's size limit (gRPC
// max_recv_msg_size_mib, HTTP max_request_body_size) are split until they
// fit; the one line larger than the limit on its own is dropped and
// counted; every other line arrives once.
func TestSizeLimitsSplit(t *testing.T) {
	const (
		lineLen = 3000
		total   = 3000
		bigSeq  = 1234
	)
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			tally := otlpsink.NewTally()
			e := newEnv(t, setup{protocol: protocol, onBody: tally.AddBody, compression: "none",
				sinkMaxGRPCMiB: 1, sinkMaxHTTPBytes: 1 << 20})
			// Requests of up to 8 MiB, lines of up to 4 MiB.
			rewriteConfig(t, e, "batch: {max_records: 1000, timeout: 200ms}", "batch: {max_records: 1000, max_bytes: 8MiB, timeout: 200ms}")
			rewriteConfig(t, e, "    start_at: beginning", "    start_at: beginning\n    max_line_bytes: 4MiB")
			s := e.newStream("split-"+protocol, lineLen, "a.log")
			if err := s.write(bigSeq); err != nil {
				t.Fatal(err)
			}
			// One line of 2 MiB: larger than either limit on its own.
			if err := s.writeLong(2 << 20); err != nil {
				t.Fatal(err)
			}
			if err := s.write(total - bigSeq - 1); err != nil {
				t.Fatal(err)
			}
			p := e.start()
			ok := waitUntil(60*time.Second, func() bool { return tally.Distinct(total) == total-1 })
			p.stop(15 * time.Second)
			rep := tally.Report(total)
			summary(t, "split-"+protocol, "written=%d delivered=%d missing=%d duplicates=%d", rep.Written, rep.Delivered, rep.Missing, rep.Duplicates)
			if !ok || rep.Missing != 1 || tally.Count(bigSeq) != 0 || rep.Duplicates != 0 {
				t.Errorf("want every line but the one too large exactly once: %v (line %d arrived %d times)", rep, bigSeq, tally.Count(bigSeq))
			}
			if log := readLog(t, e); !strings.Contains(log, "larger than the endpoint accepts") {
				t.Error("the agent's log does not say a record was too large")
			}
		})
	}
}

// writeLong appends the next line with extra bytes before its line end.
func (s *stream) writeLong(extra int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi := (s.next / chunk) % len(s.files)
	b := otlpsink.Line(nil, s.tag, s.next, s.size)
	b = append(append(b[:len(b)-1], strings.Repeat("y", extra)...), '\n')
	if _, err := s.files[fi].Write(b); err != nil {
		return fmt.Errorf("write %s: %w", s.files[fi].Name(), err)
	}
	s.where = append(s.where, uint8(fi))
	s.next++
	return nil
}

// TestReloadSupersedes: a reload waiting for an exporter that holds its
// requests without an answer (a black hole) is superseded by a second
// SIGHUP that changes the exporter again: it stops waiting, and the lines
// arrive through the fixed exporter, once.
func TestReloadSupersedes(t *testing.T) {
	const (
		lineLen = 100
		first   = 2000
		then    = 1000
	)
	tally := otlpsink.NewTally()
	e := newEnv(t, setup{protocol: "http", onBody: tally.AddBody, shutdownTimeout: time.Minute})
	release := make(chan struct{})
	hole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // read, never answer
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hole.Close()
	defer close(release)
	good := "endpoint: " + e.sink.HTTPEndpoint()
	rewriteConfig(t, e, good, "endpoint: "+hole.URL+"\n    timeout: 61s")
	s := e.newStream("supersede", lineLen, "a.log")
	if err := s.write(first); err != nil {
		t.Fatal(err)
	}
	p := e.start()
	time.Sleep(time.Second) // requests wait for an answer that never comes
	rewriteConfig(t, e, "timeout: 61s", "timeout: 61s\n    headers: {x-try: \"1\"}")
	p.signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	rewriteConfig(t, e, "endpoint: "+hole.URL+"\n    timeout: 61s\n    headers: {x-try: \"1\"}", good)
	p.signal(syscall.SIGHUP)
	if !waitUntil(30*time.Second, func() bool { return tally.Distinct(first) == first }) {
		t.Fatalf("%d of %d lines arrived after the second reload", tally.Distinct(first), first)
	}
	if err := s.write(then); err != nil {
		t.Fatal(err)
	}
	total := first + then
	waitUntil(30*time.Second, func() bool { return tally.Distinct(total) == total })
	p.stop(15 * time.Second)
	rep := tally.Report(total)
	log := readLog(t, e)
	summary(t, "supersede", "written=%d delivered=%d missing=%d duplicates=%d applied=%d", rep.Written, rep.Delivered,
		rep.Missing, rep.Duplicates, strings.Count(log, `"msg":"configuration reloaded"`))
	if rep.Missing != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 {
		t.Errorf("want every line exactly once: %v", rep)
	}
	if !strings.Contains(log, "a newer reload changes exporter collector") {
		t.Error("the first reload was not superseded by the second")
	}
}
