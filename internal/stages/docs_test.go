package stages

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/route"
)

// TestDocsExamples builds every processor shown in docs/stages.md and
// compiles every route, so that the reference cannot drift from the code.
func TestDocsExamples(t *testing.T) {
	data, err := os.ReadFile("../../docs/stages.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 15 {
		t.Fatalf("found %d yaml examples, want one per processor type", len(blocks))
	}
	seen := map[string]bool{}
	for i, m := range blocks {
		var doc struct {
			Processors map[string]config.Component `yaml:"processors"`
			Pipelines  map[string]config.Pipeline  `yaml:"pipelines"`
		}
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(m[1]), &root); err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		if errs := config.ExpandNode(&root, func(string) string { return "" }); len(errs) > 0 {
			t.Fatalf("example %d: %v", i, errs)
		}
		if err := root.Decode(&doc); err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		for name, c := range doc.Processors {
			c.Key = "processors." + name
			_, err := Build(c, Env{Hostname: "node-a", NodeName: "node-a"})
			if err != nil && !podMetadataBuilt && c.Type == "kubernetes" && strings.Contains(err.Error(), "-tags k8smeta") {
				// Documented as needing the k8smeta build.
				err = nil
			}
			if err != nil {
				t.Errorf("example %d, processor %s: %v", i, name, err)
			}
			seen[c.Type] = true
		}
		for name, p := range doc.Pipelines {
			var rules []route.Rule
			for _, r := range p.Routes {
				rules = append(rules, route.Rule{When: r.When, Exporters: r.Exporters, Continue: r.Continue})
			}
			if _, err := route.New(rules); err != nil {
				t.Errorf("example %d, pipeline %s: %v", i, name, err)
			}
		}
	}
	var missing []string
	for _, typ := range Types() {
		if !seen[typ] {
			missing = append(missing, typ)
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/stages.md has no example of %s", strings.Join(missing, ", "))
	}
}
