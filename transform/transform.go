// Package transform holds the stages that reshape records: transform (set a
// constant or a computed value, parse a field, rename, move, copy, delete,
// flatten, unflatten, truncate; each action optionally under a condition)
// and redact (mask or hash secrets and personal data).
//
// Strings a stage creates are copied into the batch's arena; values it takes
// from configuration are constants shared by all records.
package transform

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/filter"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/parse"
)

// Path names a place in a record: "body", "body.KEY" (a field of a map
// body), "attributes.KEY" (KEY is the whole rest, dots included),
// "severity_text", "severity" (the OpenTelemetry number) or "time".
type Path struct {
	kind pathKind
	key  string
}

type pathKind uint8

const (
	pathBody pathKind = iota + 1
	pathBodyField
	pathAttr
	pathSeverityText
	pathSeverity
	pathTime
)

// ParsePath parses a path.
func ParsePath(s string) (Path, error) {
	switch {
	case s == "body":
		return Path{kind: pathBody}, nil
	case s == "severity_text":
		return Path{kind: pathSeverityText}, nil
	case s == "severity":
		return Path{kind: pathSeverity}, nil
	case s == "time":
		return Path{kind: pathTime}, nil
	case strings.HasPrefix(s, "body.") && len(s) > 5:
		return Path{kind: pathBodyField, key: s[5:]}, nil
	case strings.HasPrefix(s, "attributes.") && len(s) > 11:
		return Path{kind: pathAttr, key: s[11:]}, nil
	}
	return Path{}, fmt.Errorf("invalid path %q (want body, body.KEY, attributes.KEY, severity_text, severity or time)", s)
}

func (p Path) get(r *event.Record) (event.Value, bool) {
	switch p.kind {
	case pathBody:
		return r.Body, r.Body.Kind != event.KindEmpty
	case pathBodyField:
		if r.Body.Kind != event.KindMap {
			return event.Value{}, false
		}
		return event.Lookup(r.Body.List, p.key)
	case pathAttr:
		return event.Lookup(r.Attrs, p.key)
	case pathSeverityText:
		return event.String(r.SeverityText), r.SeverityText != ""
	case pathSeverity:
		return event.Int(int64(r.Severity)), r.Severity != 0
	case pathTime:
		return event.Int(r.Time), r.Time != 0
	}
	return event.Value{}, false
}

// set stores v at p. Setting a field of a body that is not a map, a
// severity that is not a severity, or a time that is not a time is a no-op
// reported as false. A severity is a number 1-24 or a level name (stored
// as the severity text too); a time is an RFC 3339 string or an integer of
// Unix nanoseconds.
func (p Path) set(r *event.Record, v event.Value) bool {
	switch p.kind {
	case pathBody:
		r.Body = v
	case pathBodyField:
		if r.Body.Kind != event.KindMap {
			return false
		}
		// The body's list may be shared with a slab: replacing in place is
		// fine (the record owns its body); appending copies when full.
		r.Body.List = event.Set(r.Body.List, p.key, v)
	case pathAttr:
		r.Attrs = event.Set(r.Attrs, p.key, v)
	case pathSeverityText:
		if v.Kind != event.KindString {
			return false
		}
		r.SeverityText = v.Str
	case pathSeverity:
		switch v.Kind {
		case event.KindInt:
			n := v.AsInt()
			if n < 1 || n > 24 {
				return false
			}
			r.Severity = event.Severity(n)
		case event.KindString:
			sev, ok := severities.Text(v.Str)
			if !ok {
				return false
			}
			r.Severity, r.SeverityText = sev, v.Str
		default:
			return false
		}
	case pathTime:
		switch v.Kind {
		case event.KindInt:
			r.Time = v.AsInt()
		case event.KindString:
			ns, err := rfc3339.Parse(v.Str)
			if err != nil {
				return false
			}
			r.Time = ns
		default:
			return false
		}
	}
	return true
}

// severities knows the level names (info, WARNING, E, ERROR3, ...).
var severities = &parse.SeverityMap{}

// rfc3339 reads computed times given as text; it is read-only.
var rfc3339, _ = parse.NewTimeParser("rfc3339", "UTC", nil)

func (p Path) del(r *event.Record) {
	switch p.kind {
	case pathBody:
		r.Body = event.Value{}
	case pathBodyField:
		if r.Body.Kind == event.KindMap {
			r.Body.List = event.Delete(r.Body.List, p.key)
		}
	case pathAttr:
		r.Attrs = event.Delete(r.Attrs, p.key)
	case pathSeverityText:
		r.SeverityText = ""
	case pathSeverity:
		r.Severity = 0
	case pathTime:
		r.Time = 0
	}
}

// Action is one step of a transform; set exactly one of the verbs.
type Action struct {
	// When, a condition (see [filter.Condition]), applies the action only
	// to the records for which it holds.
	When string `yaml:"when"`
	// Set stores at this path Value, a constant, or the result of Expr, an
	// expression over the record (see [filter.Expr]) computed per record.
	Set   string `yaml:"set"`
	Value any    `yaml:"value"`
	Expr  string `yaml:"expr"`
	// Parse parses the string at this path As json, logfmt, key_value,
	// regex (with Pattern) or syslog into the map stored at Into (default:
	// the same path).
	Parse   string `yaml:"parse"`
	As      string `yaml:"as"`
	Pattern string `yaml:"pattern"`
	Into    string `yaml:"into"`
	// Rename and Move take the value at this path to To (rename is move
	// within attributes by convention; both delete the source).
	Rename string `yaml:"rename"`
	Move   string `yaml:"move"`
	// Copy duplicates the value at this path to To.
	Copy string `yaml:"copy"`
	To   string `yaml:"to"`
	// Delete removes the value at this path.
	Delete string `yaml:"delete"`
	// Flatten turns nested maps under "attributes" or "body" into dotted
	// keys ({"http": {"status": 200}} becomes "http.status": 200);
	// Unflatten does the reverse. Separator defaults to ".".
	Flatten   string `yaml:"flatten"`
	Unflatten string `yaml:"unflatten"`
	Separator string `yaml:"separator"`
	// Truncate cuts the string at this path to MaxBytes (at a UTF-8
	// boundary) and flags the record Truncated.
	Truncate string          `yaml:"truncate"`
	MaxBytes config.ByteSize `yaml:"max_bytes"`
}

// Options configure the transform processor.
type Options struct {
	Actions []Action `yaml:"actions"`
}

type op struct {
	verb     string
	from, to Path
	value    event.Value
	sep      string
	max      int
	where    string // flatten/unflatten target: attributes or body
	// when, expr and field are compiled once per run of the stage: they
	// keep evaluation state and are used by one goroutine.
	when  *filter.Condition
	expr  *filter.Expr
	field *parse.FieldParser
}

// Validate checks o.
func (o *Options) Validate() error {
	_, err := compile(o.Actions, nil)
	return err
}

func compile(actions []Action, now func() time.Time) ([]op, error) {
	var errs []error
	if len(actions) == 0 {
		errs = append(errs, config.Fieldf("actions", "at least one action is required"))
	}
	var ops []op
	for i, a := range actions {
		key := fmt.Sprintf("actions[%d]", i)
		verbs := map[string]string{"set": a.Set, "rename": a.Rename, "move": a.Move, "copy": a.Copy,
			"delete": a.Delete, "flatten": a.Flatten, "unflatten": a.Unflatten, "truncate": a.Truncate,
			"parse": a.Parse}
		var verb, arg string
		n := 0
		for v, s := range verbs {
			if s != "" {
				verb, arg = v, s
				n++
			}
		}
		if n != 1 {
			errs = append(errs, config.Fieldf(key, "give exactly one of set, parse, rename, move, copy, delete, flatten, unflatten, truncate"))
			continue
		}
		o := op{verb: verb, sep: a.Separator, max: int(a.MaxBytes)}
		if o.sep == "" {
			o.sep = "."
		}
		bad := func(field string, err error) {
			errs = append(errs, config.Fieldf(key+"."+field, "%v", err))
		}
		if a.When != "" {
			c, err := filter.CompileWith(a.When, now)
			if err != nil {
				bad("when", err)
			}
			o.when = c
		}
		only := func(field string, set bool, verb string) {
			if set {
				bad(field, fmt.Errorf("is for %s actions", verb))
			}
		}
		only("expr", a.Expr != "" && verb != "set", "set")
		only("value", a.Value != nil && verb != "set", "set")
		for _, f := range []struct {
			name string
			set  bool
		}{{"as", a.As != ""}, {"pattern", a.Pattern != ""}, {"into", a.Into != ""}} {
			only(f.name, f.set && verb != "parse", "parse")
		}
		switch verb {
		case "flatten", "unflatten":
			if arg != "attributes" && arg != "body" {
				bad(verb, fmt.Errorf("want attributes or body, got %q", arg))
			}
			o.where = arg
		default:
			p, err := ParsePath(arg)
			if err != nil {
				bad(verb, err)
			}
			o.from = p
		}
		switch verb {
		case "set":
			o.to = o.from
			switch {
			case a.Expr != "" && a.Value != nil:
				bad("expr", errors.New("give value or expr, not both"))
			case a.Expr != "":
				e, err := filter.CompileExpr(a.Expr, now)
				if err != nil {
					bad("expr", err)
				}
				o.expr = e
			default:
				v, err := event.Scalar(a.Value)
				if err != nil {
					bad("value", err)
				}
				o.value = v
			}
		case "parse":
			o.to = o.from
			if a.Into != "" {
				p, err := ParsePath(a.Into)
				if err != nil {
					bad("into", err)
				}
				o.to = p
			}
			if a.As == "" {
				bad("as", fmt.Errorf("missing required key (one of %s)", strings.Join(parse.FieldParsers, ", ")))
				break
			}
			fp, err := parse.NewFieldParser(a.As, a.Pattern, now)
			if err != nil {
				field := "as"
				if a.Pattern != "" {
					field = "pattern"
				}
				bad(field, err)
			}
			o.field = fp
		case "rename", "move", "copy":
			p, err := ParsePath(a.To)
			if err != nil {
				bad("to", err)
			}
			o.to = p
		case "truncate":
			if a.MaxBytes <= 0 {
				bad("max_bytes", errors.New("must be positive"))
			}
		}
		ops = append(ops, o)
	}
	return ops, errors.Join(errs...)
}

// Env is what a transform takes from the agent; zero fields discard.
type Env struct {
	// Now is the clock of now() in expressions; time.Now when nil.
	Now func() time.Time
	// Log receives the rate-limited reports of failing actions; it should
	// name the processor.
	Log *slog.Logger
	// Failed counts records on which an action failed, by reason (see
	// [Transform]); the records go on unchanged by that action.
	Failed func(reason string, n int)
}

// Reasons an action fails on a record.
const (
	// FailEval: a when condition or an expression failed to evaluate
	// (comparing a string with a number, a missing field used as a number).
	FailEval = "transform_eval_error"
	// FailType: a computed value does not fit its path (a map as the
	// severity, text that is no level name, a body field of a body that is
	// not a map) or a parsed field holds no string.
	FailType = "transform_type_error"
	// FailParse: the string of a parse action is not in its format.
	FailParse = "transform_parse_error"
)

var failReasons = [...]string{FailEval, FailType, FailParse}

// logEvery is the least time between two reports of failing actions of one
// transform.
const logEvery = 10 * time.Second

// Transform returns a stage applying the actions in order to every record.
// Actions on a missing source do nothing. An action that fails on a record
// (see the Fail reasons) leaves it as it was and the record goes on: the
// failure is counted through env.Failed and reported on env.Log at most once
// per 10 s, with how many failed since the last report.
//
// Conditions and expressions are compiled once per run of the stage, never
// per record. A constant set does not allocate; flatten and unflatten
// allocate the reshaped maps, a computed set what its expression builds.
func Transform(o Options, env Env) (pipe.Stage, error) {
	if _, err := compile(o.Actions, env.Now); err != nil {
		return nil, err
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			ops, err := compile(o.Actions, env.Now) // checked above
			if err != nil {
				env.Log.Error("compile transform", "err", err)
				return
			}
			var (
				fails    [len(failReasons)]int
				lastLog  time.Time
				unlogged int
			)
			for b := range in {
				var lastErr error
				for i := range b.Records {
					r := &b.Records[i]
					for j := range ops {
						if reason, err := apply(b, r, &ops[j]); err != nil {
							fails[reason]++
							lastErr = err
						}
					}
				}
				if lastErr != nil {
					n := 0
					for k, c := range fails {
						if c > 0 && env.Failed != nil {
							env.Failed(failReasons[k], c)
						}
						n += c
					}
					fails = [len(failReasons)]int{}
					unlogged += n
					if now := env.Now(); lastLog.IsZero() || now.Sub(lastLog) >= logEvery {
						env.Log.Warn("transform action failed; records go on unchanged by it",
							"records", unlogged, "last_err", lastErr.Error())
						lastLog, unlogged = now, 0
					}
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}

// apply runs o on r. A failure returns the index of its reason in
// failReasons and the error; r is then as it was before o.
func apply(b *event.Batch, r *event.Record, o *op) (int, error) {
	if o.when != nil {
		ok, err := o.when.Match(b, r)
		if err != nil {
			return 0, fmt.Errorf("when %s: %w", o.when, err)
		}
		if !ok {
			return 0, nil
		}
	}
	switch o.verb {
	case "set":
		v := o.value
		if o.expr != nil {
			out, err := o.expr.Eval(b, r)
			if err != nil {
				return 0, fmt.Errorf("expr %s: %w", o.expr, err)
			}
			if out == nil {
				return 0, nil // nothing computed: like a missing source
			}
			var ok bool
			if v, ok = FromExpr(b, out); !ok {
				return 1, fmt.Errorf("expr %s: a %T cannot be stored", o.expr, out)
			}
		}
		if !o.to.set(r, v) {
			return 1, fmt.Errorf("set: %s does not take a %s", o.to, kindName(v.Kind))
		}
	case "parse":
		v, ok := o.from.get(r)
		if !ok {
			return 0, nil
		}
		if v.Kind != event.KindString && v.Kind != event.KindBytes {
			return 1, fmt.Errorf("parse %s: holds a %s, not a string", o.from, kindName(v.Kind))
		}
		fields, msg, ok := o.field.Parse(b, v.Str)
		if !ok {
			return 2, fmt.Errorf("parse %s: %s", o.from, msg)
		}
		if !o.to.set(r, event.Map(fields)) {
			return 1, fmt.Errorf("parse: %s does not take a map", o.to)
		}
	case "rename", "move", "copy":
		v, ok := o.from.get(r)
		if !ok {
			return 0, nil
		}
		// Store first: a target that does not take the value (a map as
		// the severity) leaves the source where it was.
		if !o.to.set(r, v) {
			return 1, fmt.Errorf("%s %s: %s does not take a %s", o.verb, o.from, o.to, kindName(v.Kind))
		}
		if o.verb != "copy" && o.from != o.to {
			o.from.del(r)
		}
	case "delete":
		o.from.del(r)
	case "truncate":
		v, ok := o.from.get(r)
		if !ok || v.Kind != event.KindString || len(v.Str) <= o.max {
			return 0, nil
		}
		cut := o.max
		for cut > 0 && v.Str[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		o.from.set(r, event.String(v.Str[:cut]))
		r.Flags |= event.Truncated
	case "flatten":
		if o.where == "attributes" {
			r.Attrs = flatten(b, r.Attrs, o.sep)
		} else if r.Body.Kind == event.KindMap {
			r.Body.List = flatten(b, r.Body.List, o.sep)
		}
	case "unflatten":
		if o.where == "attributes" {
			r.Attrs = unflatten(r.Attrs, o.sep)
		} else if r.Body.Kind == event.KindMap {
			r.Body.List = unflatten(r.Body.List, o.sep)
		}
	}
	return 0, nil
}

// flatten replaces nested maps in kvs by dotted keys, in place order.
func flatten(b *event.Batch, kvs []event.KeyValue, sep string) []event.KeyValue {
	nested := false
	for _, kv := range kvs {
		if kv.Value.Kind == event.KindMap {
			nested = true
			break
		}
	}
	if !nested {
		return kvs
	}
	out := make([]event.KeyValue, 0, len(kvs)+4)
	var walk func(prefix string, kvs []event.KeyValue)
	walk = func(prefix string, kvs []event.KeyValue) {
		for _, kv := range kvs {
			key := kv.Key
			if prefix != "" {
				key = b.CopyString(prefix + sep + kv.Key)
			}
			if kv.Value.Kind == event.KindMap && len(kv.Value.List) > 0 {
				walk(key, kv.Value.List)
				continue
			}
			out = append(out, event.KeyValue{Key: key, Value: kv.Value})
		}
	}
	walk("", kvs)
	return out
}

// unflatten turns dotted keys into nested maps; keys are split at sep.
func unflatten(kvs []event.KeyValue, sep string) []event.KeyValue {
	dotted := false
	for _, kv := range kvs {
		if strings.Contains(kv.Key, sep) {
			dotted = true
			break
		}
	}
	if !dotted {
		return kvs
	}
	var out []event.KeyValue
	for _, kv := range kvs {
		out = insert(out, strings.Split(kv.Key, sep), kv.Value)
	}
	return out
}

func insert(kvs []event.KeyValue, parts []string, v event.Value) []event.KeyValue {
	if len(parts) == 1 {
		return event.Set(kvs, parts[0], v)
	}
	for i := range kvs {
		if kvs[i].Key == parts[0] && kvs[i].Value.Kind == event.KindMap {
			kvs[i].Value.List = insert(kvs[i].Value.List, parts[1:], v)
			return kvs
		}
	}
	return event.Set(kvs, parts[0], event.Map(insert(nil, parts[1:], v)))
}
