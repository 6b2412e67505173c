package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
)

// Secrets planted in an exporter's endpoint (userinfo, a query token) and
// headers appear in no output: the JSON log at debug level, /healthz,
// /readyz, /metrics, /debug/pipeline, /debug/pprof/cmdline, and validate.
// The backend answers 503, so the endpoint is retried and its errors are
// logged and shown on /readyz; the backend sees every secret, so they were
// in play.
func TestNoSecretInAnyOutput(t *testing.T) {
	secrets := []string{"pw-userinfo-7f3a", "pw-query-9c1e", "pw-header-2b8d", "pw-grpc-5e0f"}
	var mu sync.Mutex
	var seen []string // what the backend received of each secret
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		_, pw, _ := r.BasicAuth()
		mu.Lock()
		seen = append(seen, pw, r.URL.Query().Get("api_key"), r.Header.Get("X-Api-Token"))
		mu.Unlock()
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	defer backend.Close()
	adminAddr := freeAddr(t)
	dir := testenv.TempDir(t)
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	os.WriteFile(filepath.Join(logs, "a.log"), []byte("line 1\nline 2\n"), 0o644)
	endpoint := fmt.Sprintf("http://alice:%s@%s/v1/logs?tenant=t1&api_key=%s", secrets[0], backend.Listener.Addr(), secrets[1])
	cfg := fmt.Sprintf(`state_dir: %s/state
log_level: debug
shutdown_timeout: 200ms
admin: {address: %q, pprof: true}
sources:
  app: {type: file, include: [%s/*.log], start_at: beginning}
exporters:
  gw:
    type: otlp_http
    endpoint: %q
    headers: {X-Api-Token: %s}
    retry: {initial_interval: 10ms, max_interval: 20ms}
  grpc:
    type: otlp_grpc
    endpoint: "http://bob:%s@127.0.0.1:1"
    retry: {initial_interval: 10ms, max_interval: 20ms}
pipelines:
  main: {sources: [app], exporters: [gw, grpc]}
`, dir, adminAddr, logs, endpoint, secrets[2], secrets[3])
	path := filepath.Join(dir, "config.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)

	var stdout, stderr bytes.Buffer
	bodies := map[string]string{}
	code := runAgent(path, func(string) string { return "" }, &stdout, &stderr, func(ctx context.Context, cancel context.CancelFunc) {
		go func() {
			defer cancel()
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if body, status := get(adminAddr, "/readyz"); status == http.StatusServiceUnavailable && strings.Contains(body, "retrying") {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, p := range []string{"/healthz", "/readyz", "/metrics", "/debug/pipeline", "/debug/pprof/cmdline"} {
				body, status := get(adminAddr, p)
				bodies[p] = fmt.Sprintf("%d %s", status, body)
			}
		}()
	}, 0)
	if code != 0 {
		t.Errorf("exit code %d, want 0; log:\n%s", code, stderr.String())
	}
	if !strings.Contains(bodies["/readyz"], "503 not ready") || !strings.Contains(bodies["/readyz"], "REDACTED") {
		t.Errorf("/readyz: got %q, want not ready with the redacted endpoint", bodies["/readyz"])
	}
	if !strings.Contains(stderr.String(), "send failed, will retry") || !strings.Contains(stderr.String(), "REDACTED") {
		t.Errorf("log has no redacted retry warning:\n%s", stderr.String())
	}

	// validate quotes a wrong endpoint in its error.
	bad := strings.Replace(cfg, "http://alice", "ftp://alice", 1)
	os.WriteFile(path, []byte(bad), 0o644)
	var vout, verr bytes.Buffer
	if code := run([]string{"validate", "-config", path}, &vout, &verr); code != 1 || !strings.Contains(verr.String(), "endpoint") {
		t.Errorf("validate: exit %d, stderr %q: want 1 and an endpoint error", code, verr.String())
	}

	outputs := map[string]string{"log": stderr.String(), "stdout": stdout.String(), "validate": vout.String() + verr.String()}
	for p, b := range bodies {
		outputs[p] = b
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows secret %s:\n%s", name, s, out)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range secrets[:3] { // nothing listens for the gRPC exporter
		if !strings.Contains(strings.Join(seen, " "), s) {
			t.Errorf("the backend never received %s: the test did not exercise it", s)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(addr, path string) (string, int) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}
