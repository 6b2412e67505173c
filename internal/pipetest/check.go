package pipetest

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/parse"
)

// check compares the outcome with e and returns one message per failing
// expectation.
func check(e Expect, outs []output, drops, errs map[string]int) []string {
	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	want := -1
	switch {
	case e.Count != nil:
		want = *e.Count
	case e.Records != nil:
		want = len(e.Records)
	}
	if want >= 0 && want != len(outs) {
		var sb strings.Builder
		fmt.Fprintf(&sb, "records: want %d, got %d:", want, len(outs))
		for i, o := range outs {
			fmt.Fprintf(&sb, "\n  [%d] %s", i, compact(o))
		}
		fail("%s", sb.String())
	}
	for i, w := range e.Records {
		if i >= len(outs) {
			break
		}
		fails = append(fails, checkRecord(fmt.Sprintf("records[%d]", i), w, outs[i])...)
	}
	counts := func(name string, want, got map[string]int) {
		if want == nil {
			return
		}
		for _, reason := range slices.Sorted(maps.Keys(merge(want, got))) {
			if g, w := got[reason], want[reason]; g != w {
				fail("%s.%s: want %d, got %d", name, reason, w, g)
			}
		}
	}
	counts("drops", e.Drops, drops)
	counts("errors", e.Errors, errs)
	return fails
}

func merge(a, b map[string]int) map[string]int {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

func checkRecord(at string, w Record, o output) []string {
	var fails []string
	diff := func(field string, want, got any) {
		fails = append(fails, mismatch(at+"."+field, want, got))
	}
	if w.Body != nil {
		if want := normalize(w.Body); !reflect.DeepEqual(want, o.rec.Body) {
			diff("body", want, o.rec.Body)
		}
	}
	subset := func(field string, want map[string]any, got map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(want)) {
			g, has := got[k]
			switch wv := want[k]; {
			case wv == nil && has:
				fails = append(fails, fmt.Sprintf("%s.%s.%s: want it absent, got %s", at, field, k, jsonText(g)))
			case wv == nil:
			case !has:
				fails = append(fails, fmt.Sprintf("%s.%s.%s: want %s, got none", at, field, k, jsonText(normalize(wv))))
			case !reflect.DeepEqual(normalize(wv), g):
				diff(field+"."+k, normalize(wv), g)
			}
		}
	}
	subset("attributes", w.Attributes, o.rec.Attributes)
	subset("resource", w.Resource, o.rec.Resource)
	if w.Severity != nil {
		want, ok := severity(w.Severity)
		if !ok {
			fails = append(fails, fmt.Sprintf("%s.severity: %v is not a severity", at, w.Severity))
		} else if want != o.severity {
			fails = append(fails, fmt.Sprintf("%s.severity: want %s (%d), got %s (%d)", at, want, want, o.severity, o.severity))
		}
	}
	if w.SeverityText != nil && *w.SeverityText != o.sevText {
		diff("severity_text", *w.SeverityText, o.sevText)
	}
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		switch {
		case err != nil:
			fails = append(fails, fmt.Sprintf("%s.time: %v", at, err))
		case t.UnixNano() != o.time:
			diff("time", t.UTC().Format(time.RFC3339Nano), o.rec.Time)
		}
	}
	if w.Flags != nil && !slices.Equal(sorted(*w.Flags), sorted(o.rec.Flags)) {
		diff("flags", sorted(*w.Flags), sorted(o.rec.Flags))
	}
	if w.Exporters != nil && !slices.Equal(sorted(*w.Exporters), sorted(o.exporters)) {
		diff("exporters", sorted(*w.Exporters), sorted(o.exporters))
	}
	if w.Where != "" && o.where != nil {
		fails = append(fails, fmt.Sprintf("%s.where: %q %v for %s", at, w.Where, o.where, compact(o)))
	}
	return fails
}

// mismatch renders one failing value: want and got on a line each, and for
// maps and lists a line-by-line diff.
func mismatch(at string, want, got any) string {
	msg := fmt.Sprintf("%s:\n  want %s\n  got  %s", at, jsonText(want), jsonText(got))
	switch want.(type) {
	case map[string]any, []any:
		msg += "\n  diff (-want +got):\n" + indent(gocmp.Diff(want, got), "  ")
	}
	return msg
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// severity reads an expected severity: a name (ERROR, warn, E) or a number.
func severity(x any) (event.Severity, bool) {
	switch v := x.(type) {
	case int:
		if v >= 1 && v <= 24 {
			return event.Severity(v), true
		}
	case string:
		if n, err := strconv.Atoi(v); err == nil {
			return severity(n)
		}
		return (&parse.SeverityMap{}).Text(v)
	}
	return 0, false
}

// normalize turns a value decoded from YAML into the form tap.Render gives
// record values: int64 integers, map[string]any maps, []any lists.
func normalize(x any) any {
	switch v := x.(type) {
	case int:
		return int64(v)
	case uint64:
		return int64(v)
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = normalize(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = normalize(e)
		}
		return a
	}
	return x
}

func jsonText(x any) string {
	data, err := json.Marshal(x)
	if err != nil {
		return fmt.Sprint(x)
	}
	return string(data)
}

// compact is a one-line rendering of a record for messages.
func compact(o output) string {
	r := o.rec
	var sb strings.Builder
	sb.WriteString(jsonText(r.Body))
	if r.Severity != "" && r.Severity != "UNSPECIFIED" {
		sb.WriteString(" severity=" + r.Severity)
	}
	if r.Time != "" {
		sb.WriteString(" time=" + r.Time)
	}
	if len(r.Attributes) > 0 {
		sb.WriteString(" attributes=" + jsonText(r.Attributes))
	}
	if o.exporters != nil {
		sb.WriteString(" exporters=" + jsonText(o.exporters))
	}
	return sb.String()
}
