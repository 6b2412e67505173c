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
			`testdata/required_env.bad.yaml:7:15: exporters.out.endpoint: environment variable LOGPUMP_TEST_UNSET_ENDPOINT must name the collector`,
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

func TestExpandString(t *testing.T) {
	env := map[string]string{"A": "x", "EMPTY": "", "B": "y"}
	getenv := func(k string) string { return env[k] }
	tests := []struct{ in, want string }{
		{"${A}", "x"},
		{"pre ${A} post ${B}", "pre x post y"},
		{"${MISSING}", ""},
		{"${EMPTY:-d}", "d"},
		{"${EMPTY-d}", "d"},
		{"${A:-d}", "x"},
		{"${MISSING:-}", ""},
		{"$$HOME", "$HOME"},
		{"$${A}", "${A}"},
		{"$A and $", "$A and $"},
		{"${MISSING:-${A}}", "x"},
		{"${MISSING:-${EMPTY:-deep}}!", "deep!"},
		{"${MISSING:-a}b}", "ab}"},
		{"${MISSING:-$${x}}", "${x}"},
		{"${MISSING:-http://h:4317}", "http://h:4317"},
		{"${A:?unused message}", "x"},
	}
	for _, tt := range tests {
		got, err := ExpandString(tt.in, getenv)
		if got != tt.want || err != nil {
			t.Errorf("ExpandString(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"${A", `unterminated reference "${A": want a closing }`},
		{"${A:-${B}", `unterminated reference "${A:-${B}": want a closing }`},
		{"${}", `want a variable name after ${ in "${}"`},
		{"${1A}", `want a variable name after ${ in "${1A}"`},
		{"${A:x}", `unexpected ':' in reference "${A:x}" (want ${A}, ${A:-default} or ${A:?message})`},
		{"${MISSING:?must name the collector}", "environment variable MISSING must name the collector"},
		{"${EMPTY?}", "environment variable EMPTY is not set"},
		{"${MISSING:-${M2:?needed}}", "environment variable M2 needed"},
		{strings.Repeat("${M:-", 10) + strings.Repeat("}", 10), "references nested deeper than 8"},
	}
	for _, tt := range bad {
		got, err := ExpandString(tt.in, getenv)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ExpandString(%q) = %q, %v; want error %q", tt.in, got, err, tt.want)
		}
	}
}

// Expansion happens in values after parsing: a value cannot add keys or
// shift lines, comments and keys are not expanded, and an error points at
// its value's line.
func TestExpandAfterParsing(t *testing.T) {
	env := map[string]string{
		"STATE":   "/srv/state\nlog_level: debug\nsources: {}",
		"TIMEOUT": "3s",
		"LEVEL":   "warn",
	}
	data := []byte(`# a comment: ${NOT_EXPANDED
state_dir: "${STATE}"
shutdown_timeout: ${TIMEOUT}  # and ${THIS
log_level: ${LEVEL}
${KEY}: 1
sources:
  app: {type: file, include: ["${MISSING:-/var/log}/*.log"]}
exporters:
  out: {type: console}
pipelines:
  main: {sources: [app], exporters: [out]}
`)
	_, err := Parse(data, "c.yaml", func(k string) string { return env[k] })
	want := "c.yaml:5:1: ${KEY}: unknown key"
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error = %v, want only %q", err, want)
	}
	data = []byte(strings.Replace(string(data), "${KEY}: 1\n", "", 1))
	cfg, err := Parse(data, "c.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != env["STATE"] || cfg.LogLevel != "warn" || cfg.ShutdownTimeout != 3*time.Second {
		t.Errorf("state_dir %q, log_level %q, shutdown_timeout %v: want the variables' values, nothing injected",
			cfg.StateDir, cfg.LogLevel, cfg.ShutdownTimeout)
	}
	var opts struct {
		Include []string `yaml:"include"`
	}
	if err := cfg.Sources["app"].Options(&opts); err != nil || opts.Include[0] != "/var/log/*.log" {
		t.Errorf("include = %q, %v; want [/var/log/*.log]", opts.Include, err)
	}

	// Errors keep their lines even when an earlier value expands to several.
	data = []byte(`state_dir: ${STATE}
shutdown_timeout: ${TIMEOUT
log_level: ${LEVEL:?}
sources:
  app: {type: file, include: ["${NOPE:?must be set}"]}
pipelines: {}
`)
	_, err = Parse(data, "c.yaml", func(k string) string { return map[string]string{"STATE": "a\nb\nc"}[k] })
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error = %v, want Errors", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	wantAll := []string{
		`c.yaml:2:19: shutdown_timeout: unterminated reference "${TIMEOUT": want a closing }`,
		`c.yaml:3:12: log_level: environment variable LEVEL is not set`,
		`c.yaml:5:31: sources.app.include[0]: environment variable NOPE must be set`,
		`c.yaml:6:12: pipelines: at least one pipeline is required`,
	}
	if diff := cmp.Diff(wantAll, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
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

// An unquoted reference inside a flow collection is a syntax error that
// says how to write it.
func TestFlowReferenceHint(t *testing.T) {
	data := []byte("state_dir: /x\nsources:\n  app:\n    type: file\n    include: [${DIR}/*.log]\n")
	_, err := Parse(data, "c.yaml", nil)
	want := `c.yaml:5:1: invalid YAML: did not find expected ',' or ']' (quote a value holding ${...} inside [...] or {...}, e.g. ["${DIR}/*.log"])`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
}

// Nested aliases that would stand for billions of values are refused
// before decoding; a few aliases are fine.
func TestAliasBomb(t *testing.T) {
	bomb := "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
	for i, c := range "bcdefgh" {
		prev := string("abcdefgh"[i])
		bomb += string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
	}
	_, err := Parse([]byte(bomb+"sources: {app: {type: file, include: *h}}\n"), "c.yaml", nil)
	want := "c.yaml:1:1: aliases expand the document to more than 1000000 values"
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
	ok := "state_dir: &d /x\nlog_level: info\nresource: {a: *d, b: *d}\nsources: {app: {type: file}}\nexporters: {out: {type: console}}\npipelines: {main: {sources: [app], exporters: [out]}}\n"
	cfg, err := Parse([]byte(ok), "c.yaml", nil)
	if err != nil || cfg.Resource["b"] != "/x" {
		t.Errorf("Parse = %v, %v; want resource b = /x", cfg, err)
	}
}
