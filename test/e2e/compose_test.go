package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// composePods are the pod logs of TestCompose: kubelet paths
// /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log holding
// the CRI lines of testdata/compose/<src>.
var composePods = []struct{ dir, container, file, src string }{
	{"shop_checkout-6d5f7c9b8-q7x2p_5b2e8c1d-7a3f-4e9b-8c6d-0f1a2b3c4d5e", "checkout", "0.log", "checkout.log"},
	{"payments_api-5f7d8c9b6-w4x8z_9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "api", "1.log", "api.log"},
}

// composeConfig is the agent's configuration; %[1]s is the state
// directory, %[2]s the root the pod logs are under, %[3]s and %[4]s the
// receivers' gRPC and HTTP endpoints.
const composeConfig = `state_dir: %[1]s
shutdown_timeout: 10s
resource: {service.name: checkout-node, deployment.environment.name: e2e}
checkpoints: {flush_interval: 200ms}
sources:
  pods:
    type: file
    include: [%[2]s/var/log/pods/*/*/*.log]
    start_at: beginning
    include_file_path: true
    flush_timeout: 200ms
processors:
  container: {type: container}
  # The default flush_timeout (1s): the tailer keeps ticking while the last
  # event of each stream is held, so it goes out without a new line.
  stacktraces: {type: multiline, preset: java}
  json:
    type: json
    body_field: msg
    timestamp: {field: time}
    severity: {field: level}
  no_health: {type: filter, drop: 'body endsWith "/healthz 200"'}
  pod: {type: kubernetes, node_name: node-a}
  pii: {type: redact, presets: [email, credit_card]}
exporters:
  main:
    type: otlp_grpc
    endpoint: %[3]s
    tls: {insecure: true}
    batch: {timeout: 100ms}
    retry: {initial_interval: 100ms, max_interval: 1s}
  alerts:
    type: otlp_http
    endpoint: %[4]s
    tls: {insecure: true}
    batch: {timeout: 100ms}
    retry: {initial_interval: 100ms, max_interval: 1s}
pipelines:
  k8s:
    sources: [pods]
    processors: [container, stacktraces, json, no_health, pod, pii]
    routes:
      - when: 'severity >= ERROR'
        exporters: [alerts]
        continue: true
      - exporters: [main]
`

// TestCompose runs the agent binary with the pipeline
// container -> multiline -> json -> filter -> kubernetes -> redact -> route
// over CRI pod logs, exporting to two real OTLP receivers (main over gRPC,
// alerts over HTTP), and compares what each receiver accepted with
// testdata/compose/<exporter>.golden.json (-update rewrites them). After a
// graceful stop the checkpoint of every file is its size: every line was
// acknowledged, the filtered ones included.
func TestCompose(t *testing.T) {
	e := newEnv(t, setup{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alerts, err := otlpsink.Start(ctx, otlpsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := alerts.Stop(ctx); err != nil {
			t.Errorf("stop sink: %v", err)
		}
	})
	sinks := map[string]*otlpsink.Sink{"main": e.sink, "alerts": alerts}

	sizes := map[string]int64{} // path -> bytes
	for _, p := range composePods {
		data, err := os.ReadFile(filepath.Join("testdata", "compose", p.src))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(e.dir, "var", "log", "pods", p.dir, p.container)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, p.file)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sizes[path] = int64(len(data))
	}
	cfg := fmt.Sprintf(composeConfig, e.stateDir, e.dir, e.sink.GRPCEndpoint(), alerts.HTTPEndpoint())
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	p := e.start()
	// Every byte acknowledged means every record that was not filtered was
	// accepted by every receiver its route names.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if diff := checkpointDiff(t, e.stateDir, sizes); diff == "" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("checkpoints never reached the file sizes: %s", diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop(10 * time.Second)
	if diff := checkpointDiff(t, e.stateDir, sizes); diff != "" {
		t.Errorf("after a graceful stop: %s", diff)
	}

	got := map[string][]composeRecord{}
	for name, s := range sinks {
		for _, r := range s.Records() {
			if r.Observed.Before(started.Add(-time.Second)) || r.Observed.After(time.Now()) {
				t.Errorf("%s: observed time %v is not from this run", name, r.Observed)
			}
			got[name] = append(got[name], normalize(r, e.dir))
		}
		slices.SortFunc(got[name], compareRecords)
	}

	// What routing promises, whatever the golden files say: alerts get
	// the records of severity ERROR and above, and main gets them too.
	if len(got["alerts"]) == 0 {
		t.Error("alerts received nothing")
	}
	for _, r := range got["alerts"] {
		if r.Severity < 17 {
			t.Errorf("alerts got severity %d: %s", r.Severity, r.Body)
		}
		if !slices.ContainsFunc(got["main"], func(m composeRecord) bool { return compareRecords(m, r) == 0 }) {
			t.Errorf("an alert is missing from main: %s", r.Body)
		}
	}

	for _, name := range []string{"main", "alerts"} {
		var text strings.Builder
		enc := json.NewEncoder(&text)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(got[name]); err != nil {
			t.Fatal(err)
		}
		golden(t, filepath.Join("testdata", "compose", name+".golden.json"), text.String())
	}
	summary(t, "compose", "files=%d main=%d alerts=%d", len(sizes), len(got["main"]), len(got["alerts"]))
}

// composeRecord is a received record with what depends on the host and the
// run taken out: observed time (checked separately), host.name, and the
// temporary directory in file paths.
type composeRecord struct {
	Resource     map[string]any `json:"resource"`
	Time         string         `json:"time,omitempty"`
	Severity     int32          `json:"severity_number,omitempty"`
	SeverityText string         `json:"severity_text,omitempty"`
	BodyType     string         `json:"body_type"`
	Body         string         `json:"body"`
	Attributes   map[string]any `json:"attributes"`
}

func normalize(r otlpsink.Record, root string) composeRecord {
	c := composeRecord{
		Resource: r.Resource, Severity: r.SeverityNumber, SeverityText: r.SeverityText,
		BodyType: r.BodyType, Body: r.Body, Attributes: r.Attributes,
	}
	if !r.Timestamp.IsZero() {
		c.Time = r.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	if _, ok := c.Resource["host.name"]; ok {
		c.Resource["host.name"] = "<host>"
	}
	if p, ok := c.Attributes["log.file.path"].(string); ok {
		c.Attributes["log.file.path"] = "<root>" + strings.TrimPrefix(p, root)
	}
	return c
}

// compareRecords orders records by pod, time, body, then everything else.
func compareRecords(a, b composeRecord) int {
	if c := strings.Compare(fmt.Sprint(a.Resource["k8s.pod.name"]), fmt.Sprint(b.Resource["k8s.pod.name"])); c != 0 {
		return c
	}
	if c := strings.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.Body, b.Body); c != 0 {
		return c
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return strings.Compare(string(ja), string(jb))
}

// checkpointFile is the part of `logpump checkpoints` (format version 1)
// this test reads: the acknowledged offset of each file.
type checkpointFile struct {
	Version int `json:"version"`
	Files   []struct {
		Path   string `json:"path"`
		Offset int64  `json:"offset"`
	} `json:"files"`
}

// checkpointDiff compares the committed checkpoint of every file with its
// size; "" when they are equal.
func checkpointDiff(t *testing.T, stateDir string, sizes map[string]int64) string {
	t.Helper()
	got := map[string]int64{}
	out, err := exec.Command(agentBin, "checkpoints", "-state", stateDir).Output()
	if err != nil {
		t.Fatalf("logpump checkpoints: %v", err)
	}
	var f checkpointFile
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("decode checkpoints: %v", err)
	}
	if f.Version != 1 {
		t.Fatalf("checkpoints version %d, want 1", f.Version)
	}
	for _, en := range f.Files {
		got[en.Path] = en.Offset
	}
	var diffs []string
	for _, path := range slices.Sorted(maps.Keys(sizes)) {
		if off, ok := got[path]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: no checkpoint, size %d", path, sizes[path]))
		} else if off != sizes[path] {
			diffs = append(diffs, fmt.Sprintf("%s: checkpoint %d, size %d", path, off, sizes[path]))
		}
	}
	return strings.Join(diffs, "; ")
}

// golden compares got with the file at path, or rewrites the file with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got == string(want) {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("%s differs at line %d:\n got: %s\nwant: %s\nwhole output:\n%s", path, i+1, g, w, got)
			return
		}
	}
}
