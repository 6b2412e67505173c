// Package pipetest runs a configuration's pipelines offline against test
// files (`logpump test`): input lines go through the real processors and
// routes, with a fixed clock and no exporter connected, and the records that
// come out, the drops and the routes are compared with what the test expects.
package pipetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/filter"
	"github.com/logpump/logpump/internal/agent"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/tap"
	"github.com/logpump/logpump/transform"
)

// File is a test file: tests run against one configuration.
type File struct {
	// Now is the fixed time of the tests' clock: the observed time of every
	// input line, now() in expressions, the year of timestamps without one.
	Now   string `yaml:"now"`
	Tests []Test `yaml:"tests"`
}

// Test feeds lines to a pipeline (its processors, then its routes) or to a
// list of processors and states what comes out.
type Test struct {
	Name       string   `yaml:"name"`
	Pipeline   string   `yaml:"pipeline"`
	Processors []string `yaml:"processors"`
	// Source names the source the lines come from (its resource and file
	// attributes); the pipeline's first source by default.
	Source string `yaml:"source"`
	Input  Input  `yaml:"input"`
	Expect Expect `yaml:"expect"`
}

// Input is the lines of one file, or records as a parser would have left
// them (to test a processor alone).
type Input struct {
	Lines []string `yaml:"lines"`
	// Records come after the lines.
	Records []InputRecord `yaml:"records"`
	// File holds the lines instead, one per line; relative to the test file.
	File string `yaml:"file"`
	// Path is the path the lines claim to come from
	// (default /var/log/SOURCE.log).
	Path string `yaml:"path"`
}

// InputRecord is one record given by its parts.
type InputRecord struct {
	// Body is a string, a number or a map.
	Body       any            `yaml:"body"`
	Attributes map[string]any `yaml:"attributes"`
	// Resource attributes are added to the source's.
	Resource map[string]any `yaml:"resource"`
	// Severity is a level name or number; Time an RFC 3339 time.
	Severity any    `yaml:"severity"`
	Time     string `yaml:"time"`
}

// Expect states the outcome. Every part given is checked; parts left out
// are not.
type Expect struct {
	// Records are all the records that leave the processors, in order.
	Records []Record `yaml:"records"`
	// Count is the number of records that leave the processors (implied by
	// Records when those are given).
	Count *int `yaml:"count"`
	// Drops are the records removed, by reason (filter, sample, parse_error,
	// unrouted, ...); a reason not listed must have none.
	Drops map[string]int `yaml:"drops"`
	// Errors are the records a processor failed on and passed on
	// unchanged, by reason (filter_error, transform_eval_error, ...); a
	// reason not listed must have none.
	Errors map[string]int `yaml:"errors"`
}

// Record states what one record holds; fields left out are not checked.
type Record struct {
	// Body is the exact body: a string, a number, or a map.
	Body any `yaml:"body"`
	// Attributes and Resource hold the keys checked (other keys may be
	// there); a key with the value null must be absent.
	Attributes map[string]any `yaml:"attributes"`
	Resource   map[string]any `yaml:"resource"`
	// Severity is a level name (ERROR, warn) or number (17).
	Severity     any     `yaml:"severity"`
	SeverityText *string `yaml:"severity_text"`
	// Time is an RFC 3339 time.
	Time  string    `yaml:"time"`
	Flags *[]string `yaml:"flags"`
	// Exporters are the exporters the pipeline's routes send it to ([] for
	// none).
	Exporters *[]string `yaml:"exporters"`
	// Where is a condition the record must meet.
	Where string `yaml:"where"`
}

// Options configure a run.
type Options struct {
	// Trace prints each stage's output records for a failing test.
	Trace bool
	// Verbose also names the tests that pass.
	Verbose bool
}

// DefaultNow is the tests' clock when a file does not set now.
var DefaultNow = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Hostname is the host.name the agent's resource gets in tests.
const Hostname = "logpump-test"

// Summary counts the tests of a run.
type Summary struct {
	Passed, Failed int
}

// Run loads the configuration at cfgPath and runs every test of the files,
// writing failures (and with opts.Verbose passes) to w. An error means a
// configuration or test file could not be used; failing tests are counted
// in the summary.
func Run(cfgPath string, files []string, opts Options, w io.Writer) (Summary, error) {
	var sum Summary
	if len(files) == 0 {
		return sum, errors.New("no test files given")
	}
	getenv := func(k string) string {
		switch k {
		case "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "K8S_NODE_NAME":
			return "" // tests see the same resource on every host
		}
		return os.Getenv(k)
	}
	cfg, err := config.Load(cfgPath, getenv)
	if err != nil {
		return sum, err
	}
	for _, f := range files {
		tf, now, err := LoadFile(f)
		if err != nil {
			return sum, err
		}
		clock := func() time.Time { return now }
		ag, err := agent.Build(cfg, agent.Env{Getenv: getenv, Log: slog.New(slog.DiscardHandler),
			Hostname: Hostname, Now: clock, Stdout: io.Discard})
		if err != nil {
			return sum, err
		}
		for i, t := range tf.Tests {
			name := fmt.Sprintf("%s: %s", f, t.Name)
			if t.Name == "" {
				name = fmt.Sprintf("%s: tests[%d]", f, i)
			}
			res, err := runTest(ag, t, filepath.Dir(f), now)
			if err != nil {
				return sum, fmt.Errorf("%s: tests[%d]: %w", f, i, err)
			}
			if len(res.failures) == 0 {
				sum.Passed++
				if opts.Verbose {
					fmt.Fprintf(w, "ok   %s\n", name)
				}
				continue
			}
			sum.Failed++
			fmt.Fprintf(w, "FAIL %s\n", name)
			for _, msg := range res.failures {
				fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", "\n    "))
			}
			if opts.Trace {
				fmt.Fprintln(w, "    trace (records after each stage):")
				for _, line := range res.trace {
					fmt.Fprintf(w, "      %s\n", line)
				}
			}
		}
	}
	return sum, nil
}

// LoadFile reads and strictly decodes a test file: an unknown key or a value
// of the wrong type is an error naming the key and its line.
func LoadFile(path string) (*File, time.Time, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read test file: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	located := func(err error) error {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				e.File = path
			}
		}
		return err
	}
	var f File
	if err := config.Decode(&root, "", &f); err != nil {
		return nil, time.Time{}, located(err)
	}
	now := DefaultNow
	if f.Now != "" {
		if now, err = time.Parse(time.RFC3339Nano, f.Now); err != nil {
			return nil, time.Time{}, located(config.At(config.Find(&root, "now"), "now", err).Err())
		}
	}
	if len(f.Tests) == 0 {
		return nil, time.Time{}, fmt.Errorf("%s: no tests", path)
	}
	return &f, now, nil
}

// output is one record that left the processors.
type output struct {
	rec       tap.Record
	severity  event.Severity
	sevText   string
	time      int64
	exporters []string
	where     error // the Where condition's failure, if any
}

type result struct {
	failures []string
	trace    []string
}

func runTest(ag *agent.Agent, t Test, dir string, now time.Time) (*result, error) {
	drops, errs := map[string]int{}, map[string]int{}
	off, err := ag.Offline(agent.OfflineSpec{Pipeline: t.Pipeline, Processors: t.Processors, Source: t.Source,
		Dropped: func(_, reason string, n int) { drops[reason] += n },
		Errored: func(_, reason string, n int) { errs[reason] += n }})
	if err != nil {
		return nil, err
	}
	if t.Pipeline == "" && len(t.Processors) == 0 {
		return nil, errors.New("name a pipeline or processors")
	}
	lines := t.Input.Lines
	if t.Input.File != "" {
		p := t.Input.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read input: %w", err)
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
	}
	path := t.Input.Path
	if path == "" {
		path = "/var/log/" + off.Source + ".log"
	}
	inputs, err := inputRecords(t.Input.Records, off.Resource)
	if err != nil {
		return nil, err
	}
	wheres := make([]*filter.Condition, len(t.Expect.Records))
	for i, r := range t.Expect.Records {
		if r.Where != "" {
			if wheres[i], err = filter.CompileWith(r.Where, func() time.Time { return now }); err != nil {
				return nil, fmt.Errorf("expect.records[%d].where: %w", i, err)
			}
		}
	}

	res := &result{}
	tracer := func(point string) pipe.Stage {
		return pipe.Map(func(b *event.Batch) {
			for i := range b.Records {
				line, _ := json.Marshal(tap.Render(point, b, &b.Records[i]))
				res.trace = append(res.trace, string(line))
			}
		})
	}
	chain := []pipe.Stage{tracer("source/" + off.Source)}
	for _, st := range off.Stages {
		chain = append(chain, st.Stage, tracer("processor/"+st.Name))
	}
	in := func(yield func(*event.Batch) bool) {
		b := event.NewBatch()
		b.Source, b.Path, b.Resource = off.Source, path, off.Resource
		b.File = event.FileID{Dev: 1, Ino: 1}
		var o int64
		for _, l := range lines {
			r := b.Next()
			r.Offset, r.Observed = o, now.UnixNano()
			if utf8.ValidString(l) {
				r.SetValidBody(b.CopyString(l))
			} else {
				r.Body = event.String(b.CopyString(l))
				r.Flags |= event.InvalidUTF8
			}
			r.Attrs = append(r.Attrs, off.FileAttrs(path)...)
			o += int64(len(l)) + 1
		}
		for _, ir := range inputs {
			r := b.Next()
			r.Offset, r.Observed = o, now.UnixNano()
			*r = ir(b, *r)
			r.Attrs = append(off.FileAttrs(path), r.Attrs...)
			o++
		}
		b.End = o
		yield(b)
	}
	var outs []output
	for b := range pipe.Chain(chain...)(iter.Seq[*event.Batch](in)) {
		for i := range b.Records {
			r := &b.Records[i]
			o := output{rec: tap.Render("", b, r), severity: r.Severity, sevText: strings.Clone(r.SeverityText), time: r.Time}
			if off.Routes != nil {
				o.exporters = off.Routes.Route(b, r)
				if len(o.exporters) == 0 {
					drops["unrouted"]++
				}
			}
			if n := len(outs); n < len(wheres) && wheres[n] != nil {
				ok, err := wheres[n].Match(b, r)
				if err == nil && !ok {
					err = errors.New("is false")
				}
				o.where = err
			}
			outs = append(outs, o)
		}
		b.Done()
	}
	res.failures = check(t.Expect, outs, drops, errs)
	return res, nil
}

// inputRecords checks the input records and returns, for each, a function
// filling a record of the input batch.
func inputRecords(in []InputRecord, res *event.Resource) ([]func(*event.Batch, event.Record) event.Record, error) {
	var out []func(*event.Batch, event.Record) event.Record
	for i, ir := range in {
		at := fmt.Sprintf("input.records[%d]", i)
		var sev event.Severity
		if ir.Severity != nil {
			var ok bool
			if sev, ok = severity(ir.Severity); !ok {
				return nil, fmt.Errorf("%s.severity: %v is not a severity", at, ir.Severity)
			}
		}
		var ns int64
		if ir.Time != "" {
			t, err := time.Parse(time.RFC3339Nano, ir.Time)
			if err != nil {
				return nil, fmt.Errorf("%s.time: %w", at, err)
			}
			ns = t.UnixNano()
		}
		b := event.NewBatch() // values are checked here, built again per run
		if _, ok := transform.FromExpr(b, normalizeIn(ir.Body)); !ok {
			return nil, fmt.Errorf("%s.body: not a value", at)
		}
		out = append(out, func(b *event.Batch, r event.Record) event.Record {
			r.Body, _ = transform.FromExpr(b, normalizeIn(ir.Body))
			r.Severity, r.Time = sev, ns
			if ir.Severity != nil {
				if s, ok := ir.Severity.(string); ok {
					r.SeverityText = s
				}
			}
			r.Attrs = r.Attrs[:0]
			if m, _ := transform.FromExpr(b, normalizeIn(ir.Attributes)); m.Kind == event.KindMap {
				r.Attrs = append(r.Attrs, m.List...)
			}
			if len(ir.Resource) > 0 {
				attrs := slices.Clone(res.Attrs)
				m, _ := transform.FromExpr(b, normalizeIn(ir.Resource))
				for _, kv := range m.List {
					attrs = event.Set(attrs, kv.Key, kv.Value)
				}
				r.Resource = &event.Resource{Attrs: attrs}
			}
			return r
		})
	}
	return out, nil
}

// normalizeIn makes a YAML value one FromExpr converts: nil maps stay nil.
func normalizeIn(x any) any {
	if m, ok := x.(map[string]any); ok && m == nil {
		return nil
	}
	return x
}
