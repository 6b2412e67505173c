package journald

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/logpump/logpump/config"
)

// TestREADMEListsEveryOption: the README's table of journald keys names
// every option and nothing else, so that the reference cannot drift.
func TestREADMEListsEveryOption(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "### Sources: `type: journald`")
	if !ok {
		t.Fatal("README has no section \"Sources: `type: journald`\"")
	}
	section, _, _ = strings.Cut(section, "\n#")
	var documented []string
	for _, row := range regexp.MustCompile("(?m)^\\| ((?:`[a-z_]+`(?:, )?)+) \\|").FindAllStringSubmatch(section, -1) {
		for _, k := range strings.Split(row[1], ", ") {
			documented = append(documented, strings.Trim(k, "`"))
		}
	}
	want := []string{"resource"} // decoded by the agent beside the options
	ty := reflect.TypeFor[Options]()
	for i := range ty.NumField() {
		if tag := ty.Field(i).Tag.Get("yaml"); tag != "-" {
			want = append(want, tag)
		}
	}
	slices.Sort(documented)
	slices.Sort(want)
	if !slices.Equal(documented, want) {
		t.Errorf("README documents %v,\nthe options are %v", documented, want)
	}
}

// TestDocsExamplesAreValid: every YAML example of docs/journald.md is a
// valid configuration of its sources.
func TestDocsExamplesAreValid(t *testing.T) {
	data, err := os.ReadFile("../docs/journald.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) == 0 {
		t.Fatal("docs/journald.md has no YAML example")
	}
	for _, b := range blocks {
		cfg, err := config.Parse([]byte(b[1]+"exporters: {out: {type: console}}\npipelines: {main: {sources: [journal], exporters: [out]}}\n"), "journald.md", os.Getenv)
		if err != nil {
			t.Fatalf("example %q: %v", b[1], err)
		}
		for name, c := range cfg.Sources {
			o := DefaultOptions()
			if err := c.Options(&o); err != nil {
				t.Errorf("example source %s: %v", name, err)
			} else if err := o.Validate(); err != nil {
				t.Errorf("example source %s: %v", name, err)
			}
		}
	}
}
