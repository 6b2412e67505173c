package transform

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

var fixedNow = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }

// runActions runs actions over one batch of lines and renders the result.
func runActions(t *testing.T, actions []Action, env Env, lines ...string) string {
	t.Helper()
	if env.Now == nil {
		env.Now = fixedNow
	}
	s, err := Transform(Options{Actions: actions}, env)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := stagetest.NewAcks().Batch(stagetest.File{Path: "/var/log/shop/app.log"}, 0, lines...)
	return stagetest.Render(stagetest.Run(s, b), false)
}

func TestComputed(t *testing.T) {
	access := `{"method":"GET","path":"/pay","status":502,"ms":12.5,"user":{"id":"u-17"},"tags":["a","b"]}`
	parse := Action{Parse: "body", As: "json", Into: "attributes.http"}
	tests := []struct {
		name    string
		actions []Action
		lines   []string
	}{
		{"set expr types", []Action{parse,
			{Set: "attributes.route", Expr: `attributes.http.method + " " + attributes.http.path`},
			{Set: "attributes.ratio", Expr: `attributes.http.status / 100`}, // / divides as floats
			{Set: "attributes.status_class", Expr: `int(attributes.http.status / 100) * 100`},
			{Set: "attributes.status_int", Expr: `attributes.http.status % 100`},
			{Set: "attributes.slow", Expr: `attributes.http.ms > 10`},
			{Set: "attributes.user", Expr: `attributes.http.user`},
			{Set: "attributes.tags", Expr: `map(attributes.http.tags, upper(#))`},
			{Set: "attributes.parts", Expr: `split(attributes.http.path, "/")`},
			{Set: "attributes.missing", Expr: `attributes.nope`},
		}, []string{access}},
		{"when and conditionals", []Action{parse,
			{Set: "severity", Expr: `attributes.http.status >= 500 ? ERROR : INFO`},
			{Set: "attributes.alert", Value: true, When: `severity >= ERROR`},
			{Delete: "attributes.http", When: `attributes.http.status < 500`},
		}, []string{access, `{"method":"GET","path":"/","status":200}`}},
		{"severity and time from values", []Action{
			{Parse: "body", As: "logfmt"},
			{Set: "severity", Expr: `body.lvl`},
			{Set: "time", Expr: `body.ts`},
			{Set: "attributes.age", Expr: `now() - time`},
			{Set: "attributes.seen", Expr: `now()`},
		}, []string{`ts=2024-05-01T11:59:58.5Z lvl=warning msg=hi`}},
		{"functions", []Action{
			{Set: "attributes.sha", Expr: `sha256(body)`},
			{Set: "attributes.bucket", Expr: `hash(body) % 16`},
			{Set: "attributes.req", Expr: `capture(body, "(?P<method>[A-Z]+) (?P<path>\\S+)")`},
			{Set: "attributes.first", Expr: `capture(body, "([A-Z]+) (\\S+)")["2"]`},
			{Set: "attributes.nomatch", Expr: `capture(body, "^POST")`},
			{Set: "attributes.lower_file", Expr: `lower(attributes["log.file.name"]) + ":" + string(len(body))`},
		}, []string{`GET /pay 502`}},
		{"parse fields", []Action{
			{Parse: "body", As: "json"},
			{Parse: "body.kv", As: "logfmt", Into: "attributes.kv"},
			{Parse: "body.kv", As: "key_value", Into: "attributes.kv2"},
			{Parse: "body.line", As: "regex", Pattern: `^(?P<ip>\S+) (?P<verb>\w+)`},
			{Parse: "body.n", As: "json", Into: "attributes.n"}, // not a string: counted, unchanged
			{Parse: "body.sys", As: "syslog", Into: "attributes.sys"},
			{Set: "time", Expr: `attributes.sys.time`},
		}, []string{`{"kv":"a=1 b=\"x y\"","line":"10.0.0.1 GET /","n":3,"sys":"<34>Apr 30 13:00:00 web1 sshd[42]: Failed password"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runActions(t, tt.actions, Env{}, tt.lines...)
			stagetest.Golden(t, filepath.Join("testdata", "computed_"+strings.ReplaceAll(tt.name, " ", "_")+".golden"), got, *update)
		})
	}
}

// TestComputedFailures: an action that fails on a record leaves the record
// as it was, the record goes on, the failure is counted by reason and
// reported at most once per interval.
func TestComputedFailures(t *testing.T) {
	var logs bytes.Buffer
	counts := map[string]int{}
	now := fixedNow()
	env := Env{
		Now:    func() time.Time { return now },
		Log:    slog.New(slog.NewTextHandler(&logs, nil)),
		Failed: func(reason string, n int) { counts[reason] += n },
	}
	actions := []Action{
		{Set: "attributes.n", Expr: `body + 1`},                       // string + int: eval error
		{Set: "severity", Expr: `"banana"`},                           // no such level: type error
		{Set: "attributes.ok", Value: "kept"},                         // still applied
		{Parse: "body", As: "json", Into: "attributes.j"},             // not JSON: parse error
		{Set: "attributes.when", Value: 1, When: `attributes.ok > 1`}, // string > int: eval error
		{Set: "time", Expr: `"yesterday"`},                            // not RFC 3339: type error
		{Set: "body.k", Expr: `"v"`},                                  // body not a map: type error
		{Move: "attributes.ok", To: "severity"},                       // "kept" is no level: it stays where it is
	}
	s, err := Transform(Options{Actions: actions}, env)
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	b1, id1 := acks.Batch(stagetest.File{Path: "/a.log"}, 0, "one", "two")
	b2, id2 := acks.Batch(stagetest.File{Path: "/a.log"}, 8, "three")
	out := stagetest.Run(s, b1, b2)
	got := stagetest.Render(out, false)
	stagetest.Golden(t, filepath.Join("testdata", "computed_failures.golden"), got, *update)
	want := map[string]int{FailEval: 6, FailType: 12, FailParse: 3}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("failures %s = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
	if n := strings.Count(logs.String(), "transform action failed"); n != 1 {
		t.Errorf("logged %d reports within one interval, want 1:\n%s", n, logs.String())
	}
	stagetest.Release(out)
	if !acks.Acked(id1) || !acks.Acked(id2) {
		t.Error("batches with failing actions were not acknowledged")
	}
}

func TestComputedConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		action Action
		want   string
	}{
		{"unknown name", Action{Set: "attributes.x", Expr: "bdy + 1"}, `actions[0].expr: compile expression "bdy + 1": unknown name bdy (1:1)`},
		{"syntax column", Action{Set: "attributes.x", Expr: "body +\n  (1"}, `(2:4)`},
		{"bad capture", Action{Set: "attributes.x", Expr: `capture(body, "(")`}, `actions[0].expr: compile expression "capture(body, \"(\")": capture: error parsing regexp`},
		{"capture not constant", Action{Set: "attributes.x", Expr: `capture(body, body)`}, `capture: the pattern must be a string literal (1:1)`},
		{"bad when", Action{Delete: "attributes.x", When: "severity >"}, `actions[0].when: compile condition`},
		{"value and expr", Action{Set: "attributes.x", Value: 1, Expr: "1"}, `actions[0].expr: give value or expr, not both`},
		{"expr on delete", Action{Delete: "attributes.x", Expr: "1"}, `actions[0].expr: is for set actions`},
		{"parse without as", Action{Parse: "body"}, `actions[0].as: missing required key`},
		{"parse unknown format", Action{Parse: "body", As: "xml"}, `actions[0].as: unknown format "xml"`},
		{"parse bad pattern", Action{Parse: "body", As: "regex", Pattern: "(?P<a>"}, `actions[0].pattern: error parsing regexp`},
		{"into on set", Action{Set: "body", Value: "x", Into: "body"}, `actions[0].into: is for parse actions`},
		{"bad into", Action{Parse: "body", As: "json", Into: "attrs.x"}, `actions[0].into: invalid path "attrs.x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Actions: []Action{tt.action}}
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFromExpr(t *testing.T) {
	b := event.NewBatch()
	tests := []struct {
		in   any
		want string
	}{
		{7, "7"},
		{int64(-3), "-3"},
		{uint8(200), "200"},
		{2.5, "double(2.5)"},
		{true, "true"},
		{"x", `"x"`},
		{time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC), `"2024-05-01T12:00:00.000000005Z"`},
		{1500 * time.Millisecond, "1500000000"},
		{map[string]any{"b": 1, "a": []any{"x", nil, map[string]int{"n": 2}}}, `{"a": ["x", <empty>, {"n": 2}], "b": 1}`},
		{[]string{"p", "q"}, `["p", "q"]`},
	}
	for _, tt := range tests {
		v, ok := FromExpr(b, tt.in)
		if got := stagetest.Value(v); !ok || got != tt.want {
			t.Errorf("FromExpr(%#v) = %s, %v; want %s", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := FromExpr(b, func() {}); ok {
		t.Error("FromExpr(func) succeeded")
	}
}
