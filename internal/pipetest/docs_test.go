package pipetest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDocsExamples runs every example of docs/stages.md under logpump test:
// each YAML block names its test file in a first-line comment
// ("# tested by tests/stages/NAME.yaml", relative to docs/), and the block,
// completed into a configuration, must pass it. So the reference cannot
// drift from the code.
func TestDocsExamples(t *testing.T) {
	data, err := os.ReadFile("../../docs/stages.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 19 {
		t.Fatalf("found %d yaml examples, want at least 19", len(blocks))
	}
	testedBy := regexp.MustCompile(`^# tested by (tests/stages/[a-z0-9_]+\.yaml)\n`)
	used := map[string]bool{}
	for i, m := range blocks {
		src := m[1]
		if strings.HasPrefix(src, "# needs a Kubernetes API server") && strings.Contains(src, "metadata:") {
			continue // pod metadata from the API: enrich and internal/stages test it against a fake API
		}
		tm := testedBy.FindStringSubmatch(src)
		if tm == nil {
			t.Errorf("example %d (%.40q...): no first line \"# tested by tests/stages/NAME.yaml\"", i, src)
			continue
		}
		testFile := filepath.Join("../../docs", tm[1])
		used[filepath.Base(testFile)] = true
		t.Run(strings.TrimSuffix(filepath.Base(testFile), ".yaml"), func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(cfg, complete(t, src), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			sum, err := Run(cfg, []string{testFile}, Options{Trace: true}, &out)
			if err != nil {
				t.Fatalf("%s: %v", tm[1], err)
			}
			if sum.Failed > 0 || sum.Passed == 0 {
				t.Errorf("%s: %d passed, %d failed:\n%s", tm[1], sum.Passed, sum.Failed, out.String())
			}
		})
	}
	files, _ := filepath.Glob("../../docs/tests/stages/*.yaml")
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("%s tests no example of docs/stages.md", f)
		}
	}
}

// complete turns an example into a configuration: a source app (and any
// source a pipeline names) and a console exporter for every exporter named,
// and a pipeline when there is none.
func complete(t *testing.T, src string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	section := func(name string) map[string]any {
		m, _ := doc[name].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[name] = m
		}
		return m
	}
	sources, exporters, pipelines := section("sources"), section("exporters"), section("pipelines")
	addSource := func(name string) {
		if sources[name] == nil {
			sources[name] = map[string]any{"type": "file", "include": []any{"/var/log/" + name + "/*.log"}}
		}
	}
	addExporter := func(name string) {
		if exporters[name] == nil {
			exporters[name] = map[string]any{"type": "console"}
		}
	}
	if len(pipelines) == 0 {
		addSource("app")
		addExporter("out")
		pipelines["test"] = map[string]any{"sources": []any{"app"}, "exporters": []any{"out"}}
	}
	for _, p := range pipelines {
		p := p.(map[string]any)
		names := func(key string, m map[string]any) []string {
			var out []string
			l, _ := m[key].([]any)
			for _, n := range l {
				out = append(out, n.(string))
			}
			return out
		}
		for _, s := range names("sources", p) {
			addSource(s)
		}
		for _, e := range names("exporters", p) {
			addExporter(e)
		}
		routes, _ := p["routes"].([]any)
		for _, r := range routes {
			for _, e := range names("exporters", r.(map[string]any)) {
				addExporter(e)
			}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestREADMEExample: examples/collector.yaml is the README's "Ship logs to a
// collector" block, and passes examples/tests, as the README's commands run
// them.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("../../examples/collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, append([]byte("```yaml\n"), file...)) {
		t.Error("examples/collector.yaml differs from the README's block that starts with its name")
	}
	tests, _ := filepath.Glob("../../examples/tests/*.yaml")
	var out bytes.Buffer
	sum, err := Run("../../examples/collector.yaml", tests, Options{}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed > 0 || sum.Passed < 2 {
		t.Errorf("%d passed, %d failed:\n%s", sum.Passed, sum.Failed, out.String())
	}
}
