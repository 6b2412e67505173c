package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestReloadUnderLoad sends SIGHUP 20 times while lines are written, each
// time with a configuration that changes the pipeline's filter and switches
// the exporter between OTLP/gRPC and OTLP/HTTP (both reach the same
// receiver). Every line must arrive exactly once: a reload neither loses nor
// duplicates.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: 20 reloads under load")
	}
	const (
		reloads = 20
		total   = 200_000
		lineLen = 120
	)
	tally := otlpsink.NewTally()
	e := newEnv(t, setup{onBody: tally.AddBody})
	base, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	grpcExporter := fmt.Sprintf("type: otlp_grpc\n    endpoint: %s", e.sink.GRPCEndpoint())
	httpExporter := fmt.Sprintf("type: otlp_http\n    endpoint: %s", e.sink.HTTPEndpoint())
	variant := func(i int) string {
		cfg := string(base)
		if i%2 == 1 {
			cfg = strings.Replace(cfg, grpcExporter, httpExporter, 1)
		}
		// A filter that changes every time and drops nothing of the stream.
		cfg = strings.Replace(cfg, "    exporters: [collector]",
			"    processors: [keep]\n    exporters: [collector]", 1)
		cfg += fmt.Sprintf("processors:\n  keep: {type: filter, drop: 'body == \"never-%d\"'}\n", i)
		return cfg
	}

	s := e.newStream("reload", lineLen, "a.log", "b.log")
	p := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.pace(ctx, total, 40_000) }()

	interval := time.Duration(float64(total)/40_000*float64(time.Second)) / (reloads + 2)
	for i := range reloads {
		time.Sleep(interval)
		if err := os.WriteFile(e.cfgPath, []byte(variant(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		p.signal(syscall.SIGHUP)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !waitUntil(60*time.Second, func() bool { return tally.Distinct(total) == total }) {
		t.Logf("only %d of %d lines arrived within 60 s", tally.Distinct(total), total)
	}
	// Reloads are applied one after another, each once the lanes it
	// replaces handed on what they read and the exporter it retires sent
	// what it held.
	applied := func() int { return strings.Count(readLog(t, e), `"msg":"configuration reloaded"`) }
	waitUntil(30*time.Second, func() bool { return applied() >= reloads })
	p.stop(15 * time.Second)
	rep := tally.Report(total)
	summary(t, "reload", "written=%d delivered=%d missing=%d duplicates=%d reloads=%d applied=%d",
		rep.Written, rep.Delivered, rep.Missing, rep.Duplicates, reloads, applied())
	if rep.Missing != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 {
		t.Errorf("want every line exactly once across %d reloads: %v", reloads, rep)
	}
	if got := applied(); got != reloads {
		t.Errorf("%d reloads applied, want %d", got, reloads)
	}
}

func readLog(t *testing.T, e *env) string {
	t.Helper()
	data, err := os.ReadFile(e.agentLog)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
