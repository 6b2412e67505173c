// Package transform holds the stages that reshape records: transform (set,
// rename, move, copy, delete, flatten, unflatten, truncate) and redact (mask
// or hash secrets and personal data).
//
// Strings a stage creates are copied into the batch's arena; values it takes
// from configuration are constants shared by all records.
package transform

import (
	"errors"
	"fmt"
	"strings"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// Path names a place in a record: "body", "body.KEY" (a field of a map
// body), "attributes.KEY" (KEY is the whole rest, dots included) or
// "severity_text".
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
)

// ParsePath parses a path.
func ParsePath(s string) (Path, error) {
	switch {
	case s == "body":
		return Path{kind: pathBody}, nil
	case s == "severity_text":
		return Path{kind: pathSeverityText}, nil
	case strings.HasPrefix(s, "body.") && len(s) > 5:
		return Path{kind: pathBodyField, key: s[5:]}, nil
	case strings.HasPrefix(s, "attributes.") && len(s) > 11:
		return Path{kind: pathAttr, key: s[11:]}, nil
	}
	return Path{}, fmt.Errorf("invalid path %q (want body, body.KEY, attributes.KEY or severity_text)", s)
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
	}
	return event.Value{}, false
}

// set stores v at p. Setting a field of a body that is not a map is a no-op
// reported as false.
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
	}
	return true
}

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
	}
}

// Action is one step of a transform; set exactly one of the verbs.
type Action struct {
	// Set stores Value at this path.
	Set   string `yaml:"set"`
	Value any    `yaml:"value"`
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
}

// Validate checks o.
func (o *Options) Validate() error {
	_, err := compile(o.Actions)
	return err
}

func compile(actions []Action) ([]op, error) {
	var errs []error
	if len(actions) == 0 {
		errs = append(errs, config.Fieldf("actions", "at least one action is required"))
	}
	var ops []op
	for i, a := range actions {
		key := fmt.Sprintf("actions[%d]", i)
		verbs := map[string]string{"set": a.Set, "rename": a.Rename, "move": a.Move, "copy": a.Copy,
			"delete": a.Delete, "flatten": a.Flatten, "unflatten": a.Unflatten, "truncate": a.Truncate}
		var verb, arg string
		n := 0
		for v, s := range verbs {
			if s != "" {
				verb, arg = v, s
				n++
			}
		}
		if n != 1 {
			errs = append(errs, config.Fieldf(key, "give exactly one of set, rename, move, copy, delete, flatten, unflatten, truncate"))
			continue
		}
		o := op{verb: verb, sep: a.Separator, max: int(a.MaxBytes)}
		if o.sep == "" {
			o.sep = "."
		}
		bad := func(field string, err error) {
			errs = append(errs, config.Fieldf(key+"."+field, "%v", err))
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
			v, err := event.Scalar(a.Value)
			if err != nil {
				bad("value", err)
			}
			o.to, o.value = o.from, v
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

// Transform returns a stage applying the actions in order to every record.
// Actions on a missing source do nothing. It allocates only for flatten and
// unflatten (new slices for the reshaped maps) and for keys flatten builds.
func Transform(o Options) (pipe.Stage, error) {
	ops, err := compile(o.Actions)
	if err != nil {
		return nil, err
	}
	return pipe.Records(func(b *event.Batch, r *event.Record) bool {
		for i := range ops {
			apply(b, r, &ops[i])
		}
		return true
	}), nil
}

func apply(b *event.Batch, r *event.Record, o *op) {
	switch o.verb {
	case "set":
		o.to.set(r, o.value)
	case "rename", "move", "copy":
		v, ok := o.from.get(r)
		if !ok {
			return
		}
		if o.verb != "copy" {
			o.from.del(r)
		}
		o.to.set(r, v)
	case "delete":
		o.from.del(r)
	case "truncate":
		v, ok := o.from.get(r)
		if !ok || v.Kind != event.KindString || len(v.Str) <= o.max {
			return
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
