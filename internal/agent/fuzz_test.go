package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/logpump/logpump/config"
)

// FuzzBuildPartial builds whatever a configuration with errors decoded to,
// as logpump validate does to list the components' errors with the file's:
// it must never panic, whatever is missing or malformed.
func FuzzBuildPartial(f *testing.F) {
	files, _ := filepath.Glob("../../config/testdata/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("sources: {a: {type: file, include: [/x/*.log]}}\nprocessors: {p: {type: multiline, start: x}}\npipelines: {m: {sources: [a, b], processors: [p, q], routes: [{when: 'severity >', exporters: [e]}]}}\n")
	f.Add("exporters: {e: {type: otlp_http, endpoint: '${E:-http://u:p@h/v1/logs}'}}\npipelines: {m: {sources: [a], exporters: [e]}}\nsources: [x]\n")
	f.Fuzz(func(t *testing.T, data string) {
		if len(data) > 1<<14 {
			return
		}
		cfg, _ := config.ParsePartial([]byte(data), "f.yaml", func(string) string { return "" })
		if cfg == nil {
			return
		}
		cfg.StateDir = t.TempDir()
		a, err := Build(cfg, Env{Log: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }})
		if err == nil {
			for _, ex := range a.exporters {
				ex.client.Close()
			}
		}
	})
}
