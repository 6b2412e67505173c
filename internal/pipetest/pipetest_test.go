package pipetest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const agentYAML = `
sources:
  app: {type: file, include: [/var/log/app/*.log]}
processors:
  fields: {type: json, target: body}
  traces: {type: multiline, preset: java, flush_timeout: 1h}
exporters:
  out: {type: console}
pipelines:
  main: {sources: [app], processors: [traces, fields], exporters: [out]}
`

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunFailures: each failing expectation is reported on its own, with
// want and got, and the run counts the test failed.
func TestRunFailures(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, dir, "agent.yaml", agentYAML)
	tf := write(t, dir, "t.yaml", `
tests:
  - name: all wrong
    pipeline: main
    input:
      lines: ['{"a":1,"b":{"c":[1,2]}}', 'Exception in thread "main" x', '	at A.b(A.java:1)']
    expect:
      records:
        - body: {a: 1, b: {c: [1, 3]}}
          severity_text: ""
          exporters: [out, other]
      drops: {}
`)
	var out bytes.Buffer
	sum, err := Run(cfg, []string{tf}, Options{}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 1 || sum.Passed != 0 {
		t.Errorf("summary %+v, want one failure", sum)
	}
	got := out.String()
	for _, want := range []string{
		"FAIL " + tf + ": all wrong\n",
		"    records: want 1, got 2:\n",
		`      [1] "Exception in thread \"main\" x\n\tat A.b(A.java:1)" attributes={"log.file.name":"app.log","log.parse.error":"parse json: invalid JSON"} exporters=["out"]`,
		"    records[0].body:\n      want {\"a\":1,\"b\":{\"c\":[1,3]}}\n      got  {\"a\":1,\"b\":{\"c\":[1,2]}}\n      diff (-want +got):\n",
		"    records[0].exporters:\n      want [\"other\",\"out\"]\n      got  [\"out\"]\n",
		"    drops.parse_error: want 0, got 0", // never printed: see below
	} {
		if strings.HasPrefix(want, "    drops.") {
			if strings.Contains(got, want) {
				t.Errorf("a reason with no drops on either side is reported:\n%s", got)
			}
			continue
		}
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ data, want string }{
		{"tests:\n  - name: x\n    inputs: {}\n", "t.yaml:3:5: tests[0].inputs: unknown key"},
		{"now: yesterday\ntests: [{name: x}]\n", "t.yaml:1:6: now: parsing time"},
		{"tests: []\n", "no tests"},
		{"tests:\n  - expect: {count: many}\n", "t.yaml:2:21: tests[0].expect.count: want"},
	} {
		p := write(t, dir, "t.yaml", tt.data)
		_, _, err := LoadFile(p)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadFile(%q) = %v, want %q", tt.data, err, tt.want)
		}
	}
}
