package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseBadConfigs(t *testing.T) {
	tests := []struct {
		file string
		want []string // every error, in order
	}{
		{"unknown_key.bad.yaml", []string{
			`testdata/unknown_key.bad.yaml:12:5: pipelines.main.procesors: unknown key (did you mean "processors"?)`,
		}},
		{"wrong_type.bad.yaml", []string{
			`testdata/wrong_type.bad.yaml:2:19: shutdown_timeout: want a duration such as 10s or 500ms, got "soon"`,
		}},
		{"missing_pipelines.bad.yaml", []string{
			`testdata/missing_pipelines.bad.yaml:1:1: pipelines: at least one pipeline is required`,
		}},
		{"unknown_reference.bad.yaml", []string{
			`testdata/unknown_reference.bad.yaml:8:15: pipelines.main.sources.0: unknown source "ap" (did you mean "app"?)`,
			`testdata/unknown_reference.bad.yaml:9:22: pipelines.main.exporters.1: unknown exporter "collector"`,
		}},
		{"missing_type.bad.yaml", []string{
			`testdata/missing_type.bad.yaml:4:5: sources.app.type: missing required key`,
		}},
		{"syntax.bad.yaml", []string{
			`testdata/syntax.bad.yaml:3:1: invalid YAML: did not find expected ',' or '}'`,
		}},
		{"source_twice.bad.yaml", []string{
			`testdata/source_twice.bad.yaml:8:17: pipelines.b.sources.0: source "app" is already used by pipeline "a"; a source feeds one pipeline`,
		}},
		{"list_not_map.bad.yaml", []string{
			`testdata/list_not_map.bad.yaml:2:11: resource: want a mapping, got a list`,
		}},
		{"bad_level.bad.yaml", []string{
			`testdata/bad_level.bad.yaml:2:12: log_level: must be one of debug, info, warn, error; got "verbose"`,
		}},
		{"required_env.bad.yaml", []string{
			`testdata/required_env.bad.yaml:7:1: ${LOGPUMP_TEST_UNSET_ENDPOINT}: environment variable LOGPUMP_TEST_UNSET_ENDPOINT must name the collector`,
		}},
		{"duplicate_key.bad.yaml", []string{
			`testdata/duplicate_key.bad.yaml:8:1: state_dir: duplicate key`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			// Errors name the file as the user gave it, on every system.
			_, err := Load("testdata/"+tt.file, func(string) string { return "" })
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%s) error = %v, want config.Errors", tt.file, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Load(%s) errors (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestEveryBadFileIsTested(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) < 10 {
		t.Fatalf("found %d bad configs, want at least 10", len(files))
	}
	for _, f := range files {
		if _, err := Load(f, func(string) string { return "" }); err == nil {
			t.Errorf("Load(%s) succeeded, want an error", f)
		}
	}
}

func TestParseGood(t *testing.T) {
	cfg, err := Load("testdata/good.yaml", func(k string) string {
		if k == "STATE" {
			return "/srv/state"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/srv/state" {
		t.Errorf("StateDir = %q, want /srv/state (from ${STATE})", cfg.StateDir)
	}
	if cfg.ShutdownTimeout != 5*time.Second {
		t.Errorf("ShutdownTimeout = %v, want 5s", cfg.ShutdownTimeout)
	}
	if cfg.Checkpoints.MaxInFlight != 8<<20 || cfg.Checkpoints.FlushInterval != 2*time.Second {
		t.Errorf("Checkpoints = %+v, want 8MiB / 2s", cfg.Checkpoints)
	}
	if cfg.Checkpoints.Retention != Defaults().Checkpoints.Retention {
		t.Errorf("Retention = %v, want the default %v", cfg.Checkpoints.Retention, Defaults().Checkpoints.Retention)
	}
	src := cfg.Sources["app"]
	if src.Type != "file" || src.Key != "sources.app" {
		t.Errorf("source = %+v, want type file, key sources.app", src)
	}
	var opts struct {
		Include []string `yaml:"include"`
	}
	if err := src.Options(&opts); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/var/log/app/*.log"}, opts.Include); diff != "" {
		t.Errorf("include (-want +got):\n%s", diff)
	}
	r := cfg.Pipelines["main"].Routes
	if len(r) != 2 || r[0].When != "severity >= 17" || !r[0].Continue || r[1].Exporters[0] != "cost" {
		t.Errorf("routes = %+v", r)
	}
}

func TestComponentOptionsErrorsAreLocated(t *testing.T) {
	data := []byte(`state_dir: /x
sources:
  app:
    type: file
    include: /not/a/list
    max_line_bytes: huge
exporters:
  out: {type: console}
pipelines:
  main: {sources: [app], exporters: [out]}
`)
	cfg, err := Parse(data, "c.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	var opts struct {
		Include      []string `yaml:"include"`
		MaxLineBytes ByteSize `yaml:"max_line_bytes"`
	}
	err = cfg.Sources["app"].Options(&opts)
	want := "5:14: sources.app.include: want a list, got \"/not/a/list\"\n" +
		"6:21: sources.app.max_line_bytes: invalid size \"huge\" (want e.g. 4096, 64KiB, 1MiB)"
	if err == nil || err.Error() != want {
		t.Errorf("Options error =\n%v\nwant\n%s", err, want)
	}
	located := At(cfg.Sources["app"].Node, "sources.app", Fieldf("include", "bad glob"))
	if got := located.Error(); got != "5:14: sources.app.include: bad glob" {
		t.Errorf("At = %q", got)
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "x", "EMPTY": ""}
	getenv := func(k string) string { return env[k] }
	tests := []struct{ in, want string }{
		{"a: ${A}", "a: x"},
		{"a: ${MISSING}", "a: "},
		{"a: ${EMPTY:-d}", "a: d"},
		{"a: ${A:-d}", "a: x"},
		{"a: $$HOME", "a: $HOME"},
		{"a: $A", "a: $A"},
	}
	for _, tt := range tests {
		got, errs := Expand([]byte(tt.in), getenv)
		if string(got) != tt.want || len(errs) != 0 {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, errs, tt.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
	}{
		{"4096", 4096}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"1.5MB", 1500000}, {"2G", 2 << 30}, {"10 B", 10},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1XB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded, want an error", bad)
		}
	}
}

func TestMain(m *testing.M) {
	// Tests read files relative to the package; keep the error paths stable.
	if !strings.HasSuffix(must(os.Getwd()), "config") {
		panic("tests must run in the config directory")
	}
	os.Exit(m.Run())
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
