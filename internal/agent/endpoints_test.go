package agent

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/logpump/logpump/export/otlp"
)

// TestReadyWhileOneEndpointAccepts: an exporter with two endpoints, one
// refusing every request (503): every line arrives through the other, the
// agent stays ready, and /debug/pipeline shows one endpoint up and one
// down with its reason.
func TestReadyWhileOneEndpointAccepts(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer refusing.Close()
	var mu sync.Mutex
	var bodies []string
	accepting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var req collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					bodies = append(bodies, lr.Body.GetStringValue())
				}
			}
		}
		mu.Unlock()
	}))
	defer accepting.Close()
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), bodies...)
	}

	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	h := start(t, dir, fmt.Sprintf(`exporters:
  gw:
    type: otlp_http
    endpoints: [%s, %s]
    compression: none
    batch: {max_records: 50, timeout: 20ms}
    retry: {initial_interval: 10s, max_interval: 10s}
pipelines:
  main: {sources: [app], exporters: [gw]}
`, refusing.URL, accepting.URL))
	waitFor(t, "the pipeline to run", func() bool { return h.a.Ready() == nil })
	for i := 0; i < 1000; i += 100 {
		appendLines(t, log, i, i+100)
		if err := h.a.Ready(); err != nil {
			t.Errorf("Ready = %v with one endpoint accepting, want nil", err)
		}
	}
	waitFor(t, "1000 records", func() bool { return len(received()) >= 1000 })
	eps := h.a.Pipeline().Exporters[0].Endpoints
	if len(eps) != 2 || eps[0].State != otlp.EndpointDown || eps[0].Reason != "unavailable" || eps[1].State != otlp.EndpointUp {
		t.Errorf("endpoints %+v, want the refusing one down (unavailable) and the other up", eps)
	}
	if err := h.a.Ready(); err != nil {
		t.Errorf("Ready = %v, want nil", err)
	}
	want := "endpoint down: exporter gw: " + refusing.URL + "/v1/logs since "
	if w := h.a.Warnings(false); len(w) != 1 || !strings.HasPrefix(w[0], want) || !strings.Contains(w[0], "(unavailable)") {
		t.Errorf("Warnings = %q, want one line starting %q naming the reason", w, want)
	}
	h.shutdown()
	checkSequence(t, received(), 1000)
}
