package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/tap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func withToken(o Options) Options {
	o.Token = "s3cret"
	return o
}

func TestEndpoints(t *testing.T) {
	var notReady error
	full := Options{
		Pprof:    true,
		Ready:    func() error { return notReady },
		Metrics:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "logpump_up 1\n") }),
		Pipeline: func() any { return map[string]any{"sources": []string{"system"}} },
		Tap:      tap.NewRegistry().Handler(),
		Log:      quiet(),
	}
	tests := []struct {
		name     string
		opts     Options
		notReady error
		method   string
		path     string
		remote   string // client address; loopback when empty
		host     string // Host header; 127.0.0.1:8686 when empty
		auth     string // Authorization header
		wantCode int
		wantBody string
	}{
		{name: "alive", opts: full, path: "/healthz", wantCode: 200, wantBody: "ok"},
		{name: "ready", opts: full, path: "/readyz", wantCode: 200, wantBody: "ready"},
		{name: "not ready says why", opts: full, notReady: errors.New("exporter gateway: no success for 2m"), path: "/readyz", wantCode: 503, wantBody: "not ready: exporter gateway: no success for 2m"},
		{name: "ready without a readiness func", opts: Options{}, path: "/readyz", wantCode: 200, wantBody: "ready"},
		{name: "metrics", opts: full, path: "/metrics", wantCode: 200, wantBody: "logpump_up 1"},
		{name: "metrics from the pod network", opts: full, path: "/metrics", remote: "10.1.2.3:40000", wantCode: 200, wantBody: "logpump_up 1"},
		{name: "no metrics handler", opts: Options{}, path: "/metrics", wantCode: 404},
		{name: "pipeline snapshot", opts: full, path: "/debug/pipeline", wantCode: 200, wantBody: `"sources": [`},
		{name: "pipeline from the pod network", opts: full, path: "/debug/pipeline", remote: "10.1.2.3:40000", wantCode: 403, wantBody: "loopback clients only"},
		{name: "pipeline over IPv6 loopback", opts: full, path: "/debug/pipeline", remote: "[::1]:40000", wantCode: 200},
		{name: "tap from the pod network", opts: full, path: "/debug/tap?stage=x", remote: "10.1.2.3:40000", wantCode: 403},
		{name: "tap unknown point", opts: full, path: "/debug/tap?stage=x", wantCode: 404, wantBody: `unknown tap point "x"`},
		{name: "pprof enabled", opts: full, path: "/debug/pprof/", wantCode: 200, wantBody: "goroutine"},
		{name: "pprof from the pod network", opts: full, path: "/debug/pprof/", remote: "10.1.2.3:40000", wantCode: 403},
		{name: "pprof disabled", opts: Options{Pipeline: full.Pipeline}, path: "/debug/pprof/", wantCode: 404},
		{name: "write methods refused", opts: full, method: "POST", path: "/healthz", wantCode: 405},
		{name: "pipeline for localhost", opts: full, path: "/debug/pipeline", host: "localhost:8686", wantCode: 200},
		{name: "pipeline for [::1]", opts: full, path: "/debug/pipeline", host: "[::1]:8686", wantCode: 200},
		{name: "pipeline for a rebound name", opts: full, path: "/debug/pipeline", host: "attacker.example:8686", wantCode: 403, wantBody: "localhost or a loopback address only"},
		{name: "pipeline for a name without port", opts: full, path: "/debug/pipeline", host: "attacker.example", wantCode: 403},
		{name: "pipeline for localhost.attacker", opts: full, path: "/debug/pipeline", host: "localhost.attacker.example", wantCode: 403},
		{name: "tap for a rebound name", opts: full, path: "/debug/tap?stage=x", host: "attacker.example", wantCode: 403},
		{name: "pprof for a rebound name", opts: full, path: "/debug/pprof/", host: "attacker.example:8686", wantCode: 403},
		{name: "pprof profile for a rebound name", opts: full, path: "/debug/pprof/cmdline", host: "attacker.example", wantCode: 403},
		{name: "pipeline for the host's address", opts: full, path: "/debug/pipeline", host: "10.1.2.3:8686", wantCode: 403},
		{name: "token: metrics without it", opts: withToken(full), path: "/metrics", wantCode: 401},
		{name: "token: metrics with a wrong one", opts: withToken(full), path: "/metrics", auth: "Bearer s3cret-", wantCode: 401},
		{name: "token: metrics with it", opts: withToken(full), path: "/metrics", auth: "Bearer s3cret", wantCode: 200, wantBody: "logpump_up 1"},
		{name: "token: pipeline without it", opts: withToken(full), path: "/debug/pipeline", wantCode: 401},
		{name: "token: pipeline with it", opts: withToken(full), path: "/debug/pipeline", auth: "Bearer s3cret", wantCode: 200, wantBody: `"sources"`},
		{name: "token: pipeline with it, rebound", opts: withToken(full), path: "/debug/pipeline", auth: "Bearer s3cret", host: "attacker.example", wantCode: 403},
		{name: "token: pprof without it", opts: withToken(full), path: "/debug/pprof/", wantCode: 401},
		{name: "token: tap without it", opts: withToken(full), path: "/debug/tap?stage=x", wantCode: 401},
		{name: "token: probes need none", opts: withToken(full), path: "/readyz", wantCode: 200, wantBody: "ready"},
		{name: "token: liveness needs none", opts: withToken(full), path: "/healthz", wantCode: 200, wantBody: "ok"},
		{name: "unknown path", opts: full, path: "/admin", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notReady = tt.notReady
			method := tt.method
			if method == "" {
				method = "GET"
			}
			req := httptest.NewRequest(method, tt.path, nil)
			req.RemoteAddr = "127.0.0.1:50000"
			if tt.remote != "" {
				req.RemoteAddr = tt.remote
			}
			req.Host = "127.0.0.1:8686"
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			New("127.0.0.1:0", tt.opts).Handler().ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Errorf("status: got %d, want %d (body %q)", rec.Code, tt.wantCode, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body: got %q, want it to contain %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}

// TestReadyz: warnings follow the verdict without changing it, and name
// files to loopback clients only.
func TestReadyz(t *testing.T) {
	atRisk := func(paths bool) []string {
		where := "a rotated file"
		if paths {
			where = "rotated file /var/log/app/a.log"
		}
		return []string{
			"at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in " + where,
			"at risk: source web: 2.0 KiB not acknowledged for 3s, the oldest in " + strings.Replace(where, "app/a", "web/w", 1),
		}
	}
	down := func() error { return errors.New("exporter gateway is retrying") }
	tests := []struct {
		name     string
		ready    func() error
		warnings func(bool) []string
		remote   string
		host     string
		wantCode int
		wantBody string
	}{
		{name: "ready", ready: func() error { return nil }, wantCode: 200, wantBody: "ready\n"},
		{name: "ready, no warnings", ready: func() error { return nil }, warnings: func(bool) []string { return nil },
			wantCode: 200, wantBody: "ready\n"},
		{name: "ready, sources at risk", ready: func() error { return nil }, warnings: atRisk, wantCode: 200,
			wantBody: "ready\n" +
				"at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in rotated file /var/log/app/a.log\n" +
				"at risk: source web: 2.0 KiB not acknowledged for 3s, the oldest in rotated file /var/log/web/w.log\n"},
		{name: "at risk, from the pod network: no paths", ready: func() error { return nil }, warnings: atRisk,
			remote: "10.1.2.3:40000", wantCode: 200,
			wantBody: "ready\n" +
				"at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in a rotated file\n" +
				"at risk: source web: 2.0 KiB not acknowledged for 3s, the oldest in a rotated file\n"},
		{name: "at risk, over IPv6 loopback", warnings: atRisk, remote: "[::1]:40000", wantCode: 200,
			wantBody: "ready\n" +
				"at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in rotated file /var/log/app/a.log\n" +
				"at risk: source web: 2.0 KiB not acknowledged for 3s, the oldest in rotated file /var/log/web/w.log\n"},
		{name: "not ready and at risk", ready: down, warnings: atRisk, wantCode: 503,
			wantBody: "not ready: exporter gateway is retrying\n" +
				"at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in rotated file /var/log/app/a.log\n" +
				"at risk: source web: 2.0 KiB not acknowledged for 3s, the oldest in rotated file /var/log/web/w.log\n"},
		{name: "not ready", ready: down, warnings: func(bool) []string { return nil }, wantCode: 503,
			wantBody: "not ready: exporter gateway is retrying\n"},
		{name: "at risk, rebound host name: no paths", warnings: atRisk, host: "attacker.example", wantCode: 200,
			wantBody: "ready\n" +
				"at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in a rotated file\n" +
				"at risk: source web: 2.0 KiB not acknowledged for 3s, the oldest in a rotated file\n"},
		{name: "not ready: endpoint secrets redacted", ready: func() error {
			return errors.New(`exporter gateway is retrying: Post "https://u:pw@gw/v1/logs?api_key=k1": EOF`)
		}, wantCode: 503,
			wantBody: "not ready: exporter gateway is retrying: Post \"https://REDACTED@gw/v1/logs?api_key=REDACTED\": EOF\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/readyz", nil)
			req.Host = "localhost:8686"
			if tt.host != "" {
				req.Host = tt.host
			}
			req.RemoteAddr = "127.0.0.1:50000"
			if tt.remote != "" {
				req.RemoteAddr = tt.remote
			}
			rec := httptest.NewRecorder()
			New("127.0.0.1:0", Options{Ready: tt.ready, Warnings: tt.warnings, Log: quiet()}).Handler().ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantCode)
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body:\ngot  %q\nwant %q", got, tt.wantBody)
			}
		})
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	s := New("127.0.0.1:0", Options{Log: quiet()})
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	resp, err := http.Get("http://" + addr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz: got %d, want 200", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil after cancel", err)
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("still accepting connections after Run returned")
	}
}

func TestShutdownEndsTapStreams(t *testing.T) {
	taps := tap.NewRegistry()
	stage := taps.Point("out")
	s := New("127.0.0.1:0", Options{Tap: taps.Handler(), Log: quiet()})
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.Run(context.Background()) }()

	// The client asks for 5 records; one passes, then the stream idles.
	read := make(chan error)
	got := make(chan struct{}, 1)
	go func() {
		_, err := tap.Read(context.Background(), nil, "http://"+addr.String(), "out", 5, func(tap.Record) error {
			// Under load a second copy may pass before the first is
			// seen: never block the stream on it.
			select {
			case got <- struct{}{}:
			default:
			}
			return nil
		})
		read <- err
	}()
	b := event.NewBatch()
	b.Next().Body = event.String("one")
	for passed := false; !passed; {
		for range stage(func(yield func(*event.Batch) bool) { yield(b) }) {
		}
		select {
		case <-got:
			passed = true
		case <-time.After(10 * time.Millisecond): // not subscribed yet
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open tap stream: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	if err := <-read; err != nil {
		t.Errorf("tap client: got %v, want a clean end of stream", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := New(busy.Addr().String(), Options{Log: quiet()})
	if _, err := s.Listen(); err == nil || !strings.Contains(err.Error(), "listen on admin address") {
		t.Errorf("address in use: got %v, want a listen error", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run on an address in use: got nil, want an error")
	}
	closed := New("127.0.0.1:0", Options{Log: quiet()})
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closed.Run(context.Background()); err != nil {
		t.Errorf("Run after Close: got %v, want nil", err)
	}
}

// TestPipelineRedacted: an endpoint or error in the snapshot loses its
// credentials.
func TestPipelineRedacted(t *testing.T) {
	o := Options{Log: quiet(), Pipeline: func() any {
		return map[string]string{"last_error": `Post "http://user:pw1@gw:4318/v1/logs?x=1&token=tk1": connection refused`}
	}}
	req := httptest.NewRequest("GET", "/debug/pipeline", nil)
	req.RemoteAddr, req.Host = "127.0.0.1:50000", "127.0.0.1:8686"
	rec := httptest.NewRecorder()
	New("127.0.0.1:0", o).Handler().ServeHTTP(rec, req)
	body := rec.Body.String()
	if rec.Code != 200 || strings.Contains(body, "pw1") || strings.Contains(body, "tk1") {
		t.Errorf("status %d, body %q: want 200 without pw1 or tk1", rec.Code, body)
	}
	if want := `http://REDACTED@gw:4318/v1/logs?x=1&token=REDACTED`; !strings.Contains(body, want) {
		t.Errorf("body %q: want it to contain %q", body, want)
	}
}
