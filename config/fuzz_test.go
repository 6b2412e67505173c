package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse decodes arbitrary configurations with ${...} references: Parse
// never panics, returns a config or located Errors (never both, never
// neither), and a text whose every "$" is escaped as "$$" expands back to
// itself.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("state_dir: ${A:-${B:-/x}}\nlog_level: ${LEVEL:?need}\n")
	f.Add("a: [${A}]\nb: {c: ${C}}\n# ${D\n")
	f.Add("k: ${A:-$${B}}}\nx: &a ${A}\ny: *a\n")
	env := map[string]string{"A": "a", "B": "${A}", "LEVEL": "debug", "NL": "x\ny: z"}
	getenv := func(k string) string { return env[k] }
	f.Fuzz(func(t *testing.T, data string) {
		if len(data) > 1<<16 {
			return
		}
		cfg, err := Parse([]byte(data), "f.yaml", getenv)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one of them", cfg, err)
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Parse error %T %v: want non-empty Errors", err, err)
			}
		}
		escaped := strings.ReplaceAll(data, "$", "$$")
		if got, err := ExpandString(escaped, getenv); err != nil || got != data {
			t.Fatalf("ExpandString(%q) = %q, %v: want the text back", escaped, got, err)
		}
	})
}
