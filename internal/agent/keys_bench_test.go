package agent

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/logpump/logpump/config"
)

// BenchmarkBuildManyKeys parses and builds a configuration whose mappings
// hold n keys (resource attributes, a source's resource, static attributes,
// headers). The time per key must not grow with n: decoding and building
// are linear in the keys of a mapping.
func BenchmarkBuildManyKeys(b *testing.B) {
	for _, n := range []int{1000, 8000, 32000} {
		data := manyKeys(n)
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				cfg, err := config.Parse(data, "many.yaml", func(string) string { return "v" })
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Build(cfg, Env{Log: slog.New(slog.DiscardHandler)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(4*n), "ns/key")
		})
	}
}

func manyKeys(n int) []byte {
	var b strings.Builder
	keys := func(indent string) {
		for i := range n {
			fmt.Fprintf(&b, "%sk%d: ${V:-x}\n", indent, i)
		}
	}
	b.WriteString("state_dir: /tmp/logpump-bench\nresource:\n")
	keys("  ")
	b.WriteString("sources:\n  app:\n    type: file\n    include: [/tmp/logpump-bench/*.log]\n    resource:\n")
	keys("      ")
	b.WriteString("processors:\n  st:\n    type: static\n    attributes:\n")
	keys("      ")
	b.WriteString("exporters:\n  out:\n    type: otlp_http\n    headers:\n")
	keys("      ")
	b.WriteString("pipelines:\n  main: {sources: [app], processors: [st], exporters: [out]}\n")
	return []byte(b.String())
}
