package main

import (
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/bench/sink"
)

func TestMedRange(t *testing.T) {
	tests := []struct {
		v    []float64
		f    string
		want string
	}{
		{nil, "%.2f", "–"},
		{[]float64{2}, "%.2f", "2.00"},
		{[]float64{3, 1, 2}, "%.2f", "2.00 (1.00–3.00)"},
		{[]float64{4, 1, 2, 3}, "%.1f", "2.5 (1.0–4.0)"},
		{[]float64{0.5, 0.4, 0.45}, "%.2f×", "0.45× (0.40–0.50)"},
		{[]float64{1, -1}, "%+.1f", "+0.0 (-1.0–+1.0)"},
	}
	for _, tt := range tests {
		if got := medRange(tt.v, tt.f); got != tt.want {
			t.Errorf("medRange(%v, %q) = %q, want %q", tt.v, tt.f, got, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"1GiB", 1 << 30}, {"16MiB", 16 << 20}, {"1.5KiB", 1536}, {"500MB", 500e6}, {"4096", 4096}}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize(lots) = nil error")
	}
}

// TestCompressionTable renders the compression table from runs of two
// agents: the extra cost is taken against each agent's own plain run of the
// same repetition, a failed run leaves its repetition out, and the ratio of
// the two agents' extra costs is paired by repetition.
func TestCompressionTable(t *testing.T) {
	h := &harness{cfg: config{Reps: 2, Agents: []string{"logpump", "otelcol"}, Scenarios: []string{"plain", "gzip", "zstd"}}}
	run := func(sc, agent string, rep int, cpuSeconds float64, status string) {
		h.results = append(h.results, result{Scenario: sc, Agent: agent, Rep: rep, Status: status, Expected: 2_000_000,
			User: time.Duration(cpuSeconds * float64(time.Second)), Wall: time.Second,
			Counts: sink.Counts{Records: 2_000_000, WireBytes: 60_000_000, RawBytes: 300_000_000}})
	}
	run("plain", "logpump", 1, 1.0, "ok")
	run("gzip", "logpump", 1, 2.6, "ok") // +0.8 per M lines
	run("plain", "logpump", 2, 1.2, "ok")
	run("gzip", "logpump", 2, 3.0, "ok") // +0.9
	run("zstd", "logpump", 1, 3.0, "ok") // +1.0
	run("zstd", "logpump", 2, 3.0, "lost")
	run("plain", "otelcol", 1, 8.0, "ok")
	run("gzip", "otelcol", 1, 16.0, "ok") // +4.0
	run("plain", "otelcol", 2, 8.0, "ok")
	run("gzip", "otelcol", 2, 18.0, "ok") // +5.0
	run("zstd", "otelcol", 1, 10.0, "ok") // +1.0
	run("zstd", "otelcol", 2, 10.0, "ok") // +1.0
	var b strings.Builder
	h.compressionTable(&b, compressionSets[0], "otelcol", true)
	got := b.String()
	for _, want := range []string{
		"| logpump | none | 2/2 | 2000000 | 0.55 (0.50–0.60) | – | 30.0 | 5.0× |",
		"| logpump | gzip | 2/2 | 2000000 | 1.40 (1.30–1.50) | +0.85 (+0.80–+0.90) |",
		"| logpump | zstd | 1/2 | 2000000 | 1.50 | +1.00 |",
		"| otelcol | gzip | 2/2 | 2000000 | 8.50 (8.00–9.00) | +4.50 (+4.00–+5.00) |",
		"gzip 0.19× (0.18–0.20); zstd 1.00×",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}

	// The same runs as the json set: its own heading, the same figures.
	for i := range h.results {
		h.results[i].Scenario = map[string]string{"plain": "json", "gzip": "json-gzip", "zstd": "json-zstd"}[h.results[i].Scenario]
	}
	b.Reset()
	h.compressionTable(&b, compressionSets[1], "otelcol", true)
	got = b.String()
	for _, want := range []string{
		"## Compression (json lines; \"none\" is the json scenario",
		"| logpump | gzip | 2/2 | 2000000 | 1.40 (1.30–1.50) | +0.85 (+0.80–+0.90) |",
		"gzip 0.19× (0.18–0.20); zstd 1.00×",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("json table lacks %q:\n%s", want, got)
		}
	}
}
