package agent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
	"github.com/logpump/logpump/export/otlp"
)

// discard encodes every request as the OTLP exporters do and throws the
// bytes away: the whole pipeline's cost without a network peer.
type discard struct {
	mu      sync.Mutex // the queue sends from several goroutines
	enc     otlp.Encoder
	buf     []byte
	records atomic.Int64
}

func (d *discard) Send(_ context.Context, batches []*event.Batch) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = d.enc.AppendRequest(d.buf[:0], batches)
	for _, b := range batches {
		d.records.Add(int64(len(b.Records)))
	}
	return nil
}

func (d *discard) Close() error { return nil }

var benchLines = map[string]func(i int) string{
	"plain": func(i int) string {
		return fmt.Sprintf("2026-11-25T10:00:00.000Z INFO  request served method=GET path=/api/v1/orders/%08d status=200 bytes=5120", i)
	},
	"json": func(i int) string {
		return fmt.Sprintf(`{"time":"2026-11-25T10:00:00.000Z","level":"info","msg":"request served","method":"GET","path":"/api/v1/orders","status":200,"seq":%d}`, i)
	},
	"cri": func(i int) string {
		return fmt.Sprintf("2026-11-25T10:00:00.000000000Z stdout F request served method=GET path=/api/v1/orders status=200 seq=%08d", i)
	},
}

var benchProcessors = map[string]string{
	"plain": "",
	"json":  "processors:\n  p: {type: json, timestamp: {field: time}, severity: {field: level}}\n",
	"cri":   "processors:\n  p: {type: cri}\n",
}

// BenchmarkPipeline reads a file of N lines through the whole in-process
// pipeline (tailer, stages, routing, export queue, OTLP encoding) into a
// discarding client. ns/op is per line.
func BenchmarkPipeline(b *testing.B) {
	for _, format := range []string{"plain", "json", "cri"} {
		b.Run(format, func(b *testing.B) {
			dir := b.TempDir()
			logs := filepath.Join(dir, "logs")
			os.MkdirAll(logs, 0o755)
			f, err := os.Create(filepath.Join(logs, "a.log"))
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriter(f)
			n := b.N
			for i := range n {
				fmt.Fprintln(w, benchLines[format](i))
			}
			w.Flush()
			f.Close()
			procs, uses := benchProcessors[format], ""
			if procs != "" {
				uses = "processors: [p], "
			}
			text := configText(dir, procs+`exporters:
  out: {type: console}
pipelines:
  main: {sources: [app], `+uses+`exporters: [out]}
`)
			cfg, err := config.Parse([]byte(text), "bench.yaml", nil)
			if err != nil {
				b.Fatal(err)
			}
			a, err := Build(cfg, Env{Log: slog.New(slog.DiscardHandler), Hostname: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			sink := &discard{}
			q := export.NewQueue("out", sink, export.DefaultQueueOptions(), nil)
			a.exporters[0].client, a.exporters[0].queue = sink, q
			for _, ln := range a.lanes {
				ln.queues = map[string]*export.Queue{"out": q}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			go func() { done <- a.Run(ctx) }()
			for sink.records.Load() < int64(n) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			// CPU time is steadier than wall time on a shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/line")
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
