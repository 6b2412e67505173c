package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is the console exporters' output, read while the agent runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// bodies returns the body of every JSON line printed, in order.
func (s *syncBuffer) bodies(t *testing.T) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Body string `json:"body"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("console printed %q: %v", line, err)
		}
		out = append(out, r.Body)
	}
	return out
}

type harness struct {
	t    *testing.T
	dir  string
	out  *syncBuffer
	a    *Agent
	stop context.CancelFunc
	done chan error
}

func configText(dir, extra string) string {
	return fmt.Sprintf(`state_dir: %[1]s/state
shutdown_timeout: 5s
sources:
  app:
    type: file
    include: [%[1]s/logs/*.log]
    start_at: beginning
    scan_interval: 100ms
%[2]s`, dir, extra)
}

func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "test.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func start(t *testing.T, dir, extra string) *harness {
	t.Helper()
	return startWith(t, dir, configText(dir, extra), Env{})
}

// startWith runs the configuration text with env, whose output, logger and
// host name the harness sets.
func startWith(t *testing.T, dir, text string, env Env) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, out: &syncBuffer{}, done: make(chan error, 1)}
	env.Stdout, env.Log, env.Hostname = h.out, slog.New(slog.DiscardHandler), "test-host"
	a, err := Build(parse(t, text), env)
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- a.Run(ctx) }()
	return h
}

func (h *harness) shutdown() {
	h.t.Helper()
	h.stop()
	if err := <-h.done; err != nil {
		h.t.Fatalf("Run = %v, want a clean drain", err)
	}
}

func appendLines(t *testing.T, path string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := from; i < to; i++ {
		fmt.Fprintf(f, "seq=%06d\n", i)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkSequence reports missing and duplicated sequence numbers in [0, n).
func checkSequence(t *testing.T, bodies []string, n int) {
	t.Helper()
	seen := make([]int, n)
	for _, b := range bodies {
		var i int
		if _, err := fmt.Sscanf(b, "seq=%d", &i); err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected body %q", b)
		}
		seen[i]++
	}
	missing, dups := 0, 0
	for _, c := range seen {
		if c == 0 {
			missing++
		}
		if c > 1 {
			dups += c - 1
		}
	}
	t.Logf("written=%d delivered=%d missing=%d duplicates=%d", n, len(bodies), missing, dups)
	if missing != 0 || dups != 0 {
		t.Errorf("missing=%d duplicates=%d, want 0 and 0", missing, dups)
	}
}

const consoleCfg = `exporters:
  out: {type: console, format: json, batch: {timeout: 20ms}}
pipelines:
  main: {sources: [app], exporters: [out]}
`

func TestRunDeliversAndCheckpointsEverything(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	appendLines(t, log, 0, 500) // before the start
	h := start(t, dir, consoleCfg)
	appendLines(t, log, 500, 1000) // while running
	waitFor(t, "1000 records", func() bool { return len(h.out.bodies(t)) >= 1000 })
	h.shutdown()
	checkSequence(t, h.out.bodies(t), 1000)

	entries, err := checkpoint.NewStore(filepath.Join(dir, "state")).Load()
	if err != nil {
		t.Fatal(err)
	}
	// The source's last-scan record (device and inode 0) is there once a
	// scan after the first one ran before the stop: not a file.
	entries = slices.DeleteFunc(entries, func(e checkpoint.Entry) bool { return e.Dev == 0 && e.Ino == 0 })
	st, _ := os.Stat(log)
	if len(entries) != 1 || entries[0].Offset != st.Size() {
		t.Errorf("checkpoints = %+v, want one entry at offset %d (the file size)", entries, st.Size())
	}

	// A restart on the same state sends nothing again, then the new lines.
	h2 := start(t, dir, consoleCfg)
	appendLines(t, log, 1000, 1100)
	waitFor(t, "100 new records", func() bool { return len(h2.out.bodies(t)) >= 100 })
	h2.shutdown()
	got := h2.out.bodies(t)
	if len(got) != 100 || got[0] != "seq=001000" {
		t.Errorf("after restart got %d records starting %q, want 100 starting seq=001000", len(got), got[0])
	}
}

func TestSettledOnceEveryExporterAnswered(t *testing.T) {
	run := func(t *testing.T, exporters string, lines int) (h *harness, settled *atomic.Int32) {
		dir := t.TempDir()
		log := filepath.Join(dir, "logs", "a.log")
		os.MkdirAll(filepath.Dir(log), 0o755)
		settled = new(atomic.Int32)
		text := strings.Replace(configText(dir, exporters), "shutdown_timeout: 5s", "shutdown_timeout: 300ms", 1)
		h = startWith(t, dir, text, Env{Settled: func() { settled.Add(1) }})
		waitFor(t, "the pipeline to run", func() bool { return h.a.Ready() == nil })
		time.Sleep(100 * time.Millisecond)
		if n := settled.Load(); n != 0 {
			t.Errorf("Settled called %d times before any request, want 0", n)
		}
		appendLines(t, log, 0, lines)
		return h, settled
	}
	t.Run("every exporter answered", func(t *testing.T) {
		h, settled := run(t, `exporters:
  one: {type: console, format: json, batch: {timeout: 20ms}}
  two: {type: console, format: json, batch: {timeout: 20ms}}
pipelines:
  main: {sources: [app], exporters: [one, two]}
`, 100)
		waitFor(t, "100 records from each exporter", func() bool { return len(h.out.bodies(t)) >= 200 })
		waitFor(t, "Settled", func() bool { return settled.Load() > 0 })
		appendLines(t, filepath.Join(h.dir, "logs", "a.log"), 100, 200)
		waitFor(t, "200 records from each exporter", func() bool { return len(h.out.bodies(t)) >= 400 })
		h.shutdown()
		if n := settled.Load(); n != 1 {
			t.Errorf("Settled called %d times, want once", n)
		}
	})
	t.Run("one exporter never answers", func(t *testing.T) {
		h, settled := run(t, `exporters:
  out: {type: console, format: json, batch: {timeout: 20ms}}
  down:
    type: otlp_grpc
    endpoint: 127.0.0.1:1
    tls: {insecure: true}
    batch: {timeout: 20ms}
pipelines:
  main: {sources: [app], exporters: [out, down]}
`, 100)
		waitFor(t, "100 records from the console", func() bool { return len(h.out.bodies(t)) >= 100 })
		time.Sleep(300 * time.Millisecond)
		h.stop()
		<-h.done // the unreachable exporter ends the drain at shutdown_timeout
		if n := settled.Load(); n != 0 {
			t.Errorf("Settled called %d times with an exporter that never answered, want 0", n)
		}
	})
}

func TestReloadKeepsUnchangedLanesAndRestartsChangedOnes(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	h := start(t, dir, consoleCfg)
	waitFor(t, "the pipeline to run", func() bool { return h.a.Ready() == nil })
	appendLines(t, log, 0, 300)
	waitFor(t, "300 records", func() bool { return len(h.out.bodies(t)) >= 300 })

	// Same configuration: the lane keeps running, untouched.
	h.a.mu.Lock()
	before := h.a.lanes[0]
	h.a.mu.Unlock()
	if err := h.a.Reload(parse(t, configText(dir, consoleCfg))); err != nil {
		t.Fatal(err)
	}
	h.a.mu.Lock()
	kept := h.a.lanes[0] == before
	h.a.mu.Unlock()
	if !kept {
		t.Error("reload with an unchanged configuration restarted the lane")
	}

	// A new processor while lines keep coming: the lane restarts, nothing
	// is lost or read twice.
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 300; i < 2000; i += 100 {
			appendLines(t, log, i, i+100)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	changed := strings.Replace(consoleCfg, "exporters: [out]}", "processors: [keep], exporters: [out]}", 1) +
		"processors:\n  keep: {type: filter, drop: 'body == \"never\"'}\n"
	for range 5 {
		if err := h.a.Reload(parse(t, configText(dir, changed))); err != nil {
			t.Fatal(err)
		}
		if err := h.a.Reload(parse(t, configText(dir, consoleCfg))); err != nil {
			t.Fatal(err)
		}
	}
	<-writing
	waitFor(t, "2000 records", func() bool { return len(h.out.bodies(t)) >= 2000 })
	h.shutdown()
	checkSequence(t, h.out.bodies(t), 2000)
}

func TestReloadRejectsBadConfigAndKeepsRunning(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	h := start(t, dir, consoleCfg)
	waitFor(t, "the pipeline to run", func() bool { return h.a.Ready() == nil })
	bad := strings.Replace(consoleCfg, "format: json", "format: yaml", 1)
	err := h.a.Reload(parse(t, configText(dir, bad)))
	if err == nil || !strings.Contains(err.Error(), "exporters.out.format") {
		t.Errorf("Reload(bad) = %v, want an error naming exporters.out.format", err)
	}
	appendLines(t, log, 0, 50)
	waitFor(t, "50 records", func() bool { return len(h.out.bodies(t)) >= 50 })
	if err := h.a.Ready(); err != nil {
		t.Errorf("Ready = %v, want nil", err)
	}
	h.shutdown()
	if err := h.a.Ready(); err == nil {
		t.Error("Ready after stop = nil, want an error")
	}
	checkSequence(t, h.out.bodies(t), 50)
}

// TestReadyNamesFailingExporter: while its destination refuses every
// request (401), the agent is not ready; the reason names the exporter,
// why, and since when (the first failure, not the last attempt). Once the
// destination accepts again, the agent is ready and every line arrives.
func TestReadyNamesFailingExporter(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse.Load() {
			http.Error(w, "token expired", http.StatusUnauthorized)
			return
		}
		io.Copy(io.Discard, r.Body)
		received.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	appendLines(t, log, 0, 100)
	h := start(t, dir, fmt.Sprintf(`exporters:
  gw: {type: otlp_http, endpoint: %s, compression: none, retry: {initial_interval: 50ms, max_interval: 100ms}}
pipelines:
  main: {sources: [app], exporters: [gw]}
`, srv.URL))
	var first string
	waitFor(t, "the agent to say the exporter fails", func() bool {
		err := h.a.Ready()
		if err == nil || !strings.Contains(err.Error(), "failing") {
			return false
		}
		first = err.Error()
		return true
	})
	for _, want := range []string{"exporter gw failing since", "(auth)", "401"} {
		if !strings.Contains(first, want) {
			t.Errorf("Ready = %q, want it to contain %q", first, want)
		}
	}
	time.Sleep(1200 * time.Millisecond) // more failed attempts
	if err := h.a.Ready(); err == nil || !strings.HasPrefix(err.Error(), first[:strings.Index(first, "(")]) {
		t.Errorf("Ready = %v later, want the same start of trouble as %q", err, first)
	}
	if received.Load() != 0 {
		t.Fatal("requests accepted while refused")
	}
	refuse.Store(false)
	waitFor(t, "the agent to be ready again", func() bool { return h.a.Ready() == nil })
	h.shutdown()
	if received.Load() == 0 {
		t.Error("nothing was delivered once the destination accepted")
	}
}

// checkpoints settings change only on restart, so a reload's stages are
// checked against the running max_in_flight, not the one the new file names
// (which is ignored): a multiline max_bytes within the running cap is taken.
func TestReloadChecksStagesAgainstRunningCheckpointSettings(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	cfg := func(inFlight string) string {
		return `checkpoints: {max_in_flight: ` + inFlight + `}
processors:
  joined: {type: multiline, start: '^seq=', max_bytes: 2MiB}
exporters:
  out: {type: console, format: json, batch: {timeout: 20ms}}
pipelines:
  main: {sources: [app], processors: [joined], exporters: [out]}
`
	}
	h := start(t, dir, cfg("4MiB"))
	waitFor(t, "the pipeline to run", func() bool { return h.a.Ready() == nil })
	if err := h.a.Reload(parse(t, configText(dir, cfg("1MiB")))); err != nil {
		t.Errorf("Reload with a new max_in_flight (ignored until restart) = %v, want nil", err)
	}
	appendLines(t, log, 0, 50)
	waitFor(t, "50 records", func() bool { return len(h.out.bodies(t)) >= 50 })
	h.shutdown()
	checkSequence(t, h.out.bodies(t), 50)
}
