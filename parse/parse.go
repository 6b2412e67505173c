// Package parse holds the parser stages: they turn a record's raw line into
// structured data (json, logfmt, regex, syslog), unwrap container runtime
// formats (cri, docker, container) and join lines into events (multiline).
//
// Every parser is a [pipe.Stage] built from an options struct that is decoded
// from the YAML of a processor. Parsers rewrite records in place:
//
//   - strings they create are substrings of the body (which lives as long as
//     the batch), copies in the batch's arena ([event.Batch.Copy]) or
//     constants, so a record never points into a parser's buffer;
//   - nested maps and arrays use slices carved from a per-stage slab, so
//     parsing allocates only when a slab is used up (amortised, see the
//     benchmarks), never per record;
//   - a line that does not parse keeps its raw body, gets the ParseError flag
//     and a log.parse.error attribute, and is passed on; with on_error: drop
//     it is removed and counted instead. Nothing a line contains can stop the
//     stream.
//
// Parsers that join lines (cri, docker, container, multiline) keep per-file
// state across batches; see [Multiline] for how they acknowledge.
package parse

import (
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
	"unsafe"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// AttrParseError is the attribute set on a record that failed to parse.
const AttrParseError = "log.parse.error"

// DropFunc counts records a stage removed, by reason ("parse_error"). It is
// called from the goroutine running the stage.
type DropFunc func(reason string, n int)

// Options are the options shared by the structured parsers (json, logfmt,
// regex, syslog).
type Options struct {
	// Target is where parsed fields go: "attributes" (the default; the body
	// keeps the raw line) or "body" (the body becomes a map of the fields).
	Target string `yaml:"target"`
	// BodyField names a parsed field that becomes the body (e.g. "msg"); it
	// is removed from the fields. Only with target attributes.
	BodyField string `yaml:"body_field"`
	// Timestamp, when set, reads the record's time from a parsed field.
	Timestamp *TimeOptions `yaml:"timestamp"`
	// Severity, when set, reads the record's severity from a parsed field.
	Severity *SeverityOptions `yaml:"severity"`
	// OnError is what happens to a line that does not parse: "keep" (the
	// default: raw body, ParseError flag, log.parse.error attribute) or
	// "drop" (removed and counted under reason "parse_error").
	OnError string `yaml:"on_error"`
}

// Validate checks o and fills defaults.
func (o *Options) Validate() error {
	var errs []error
	switch o.Target {
	case "":
		o.Target = "attributes"
	case "attributes", "body":
	default:
		errs = append(errs, config.Fieldf("target", "must be attributes or body, got %q", o.Target))
	}
	if o.BodyField != "" && o.Target == "body" {
		errs = append(errs, config.Fieldf("body_field", "only applies to target attributes"))
	}
	switch o.OnError {
	case "":
		o.OnError = "keep"
	case "keep", "drop":
	default:
		errs = append(errs, config.Fieldf("on_error", "must be keep or drop, got %q", o.OnError))
	}
	if o.Timestamp != nil {
		if o.Timestamp.Field == "" {
			errs = append(errs, config.Fieldf("timestamp.field", "missing required key"))
		}
		if _, err := NewTimeParser(o.Timestamp.Layout, o.Timestamp.Location, nil); err != nil {
			errs = append(errs, config.Fieldf("timestamp.layout", "%v", err))
		}
	}
	if o.Severity != nil {
		if o.Severity.Field == "" {
			errs = append(errs, config.Fieldf("severity.field", "missing required key"))
		}
		if _, err := NewSeverityMap(o.Severity.Mapping); err != nil {
			errs = append(errs, config.Fieldf("severity.mapping", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// fields is the post-processing shared by structured parsers: promote the
// body field, read time and severity.
type fields struct {
	toBody    bool
	bodyField string
	timeField string
	time      *TimeParser
	sevField  string
	sev       *SeverityMap
	dropBad   bool
	drops     DropFunc
}

func newFields(o Options, now func() time.Time, drops DropFunc) (*fields, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	f := &fields{toBody: o.Target == "body", bodyField: o.BodyField, dropBad: o.OnError == "drop", drops: drops}
	if o.Timestamp != nil {
		tp, err := NewTimeParser(o.Timestamp.Layout, o.Timestamp.Location, now)
		if err != nil {
			return nil, err
		}
		f.timeField, f.time = o.Timestamp.Field, tp
	}
	if o.Severity != nil {
		sm, err := NewSeverityMap(o.Severity.Mapping)
		if err != nil {
			return nil, err
		}
		f.sevField, f.sev = o.Severity.Field, sm
	}
	if f.drops == nil {
		f.drops = func(string, int) {}
	}
	return f, nil
}

// lookup finds a parsed field: a top-level key, or a dotted path into maps.
func (f *fields) lookup(r *event.Record, name string) (event.Value, bool) {
	kvs := r.Attrs
	if f.toBody {
		kvs = r.Body.List
	}
	return lookupPath(kvs, name)
}

func lookupPath(kvs []event.KeyValue, name string) (event.Value, bool) {
	if v, ok := event.Lookup(kvs, name); ok {
		return v, true
	}
	for {
		head, rest, ok := strings.Cut(name, ".")
		if !ok {
			return event.Value{}, false
		}
		v, ok := event.Lookup(kvs, head)
		if !ok || v.Kind != event.KindMap {
			return event.Value{}, false
		}
		if v, ok := event.Lookup(v.List, rest); ok {
			return v, true
		}
		kvs, name = v.List, rest
	}
}

// apply runs after a successful parse of r.
func (f *fields) apply(r *event.Record) {
	if f.bodyField != "" {
		if v, ok := event.Lookup(r.Attrs, f.bodyField); ok {
			r.Body = v
			r.Attrs = event.Delete(r.Attrs, f.bodyField)
		}
	}
	if f.time != nil {
		if v, ok := f.lookup(r, f.timeField); ok {
			if ns, err := f.time.Value(v); err == nil {
				r.Time = ns
			} else {
				r.Attrs = event.Set(r.Attrs, AttrParseError, event.String(errTimeField))
			}
		}
	}
	if f.sev != nil {
		if v, ok := f.lookup(r, f.sevField); ok {
			if sev, text, ok := f.sev.Value(v); ok {
				r.Severity, r.SeverityText = sev, text
			} else if v.Kind == event.KindString {
				r.SeverityText = v.Str
			}
		}
	}
}

const errTimeField = "parse timestamp: field does not match the layout"

// fail marks r as unparsed. It returns false when r is to be dropped.
func (f *fields) fail(r *event.Record, msg string) bool {
	if f.dropBad {
		return false
	}
	r.Flags |= event.ParseError
	r.Attrs = event.Set(r.Attrs, AttrParseError, event.String(msg))
	return true
}

// recordParser parses one record in place. On error it must leave r's body
// and attributes as they were (it may append attributes and let the caller
// truncate them back). msg is a constant or heap string, never arena bytes.
type recordParser interface {
	parse(b *event.Batch, r *event.Record) (msg string, ok bool)
}

// Parser is a structured parser (json, logfmt, key_value, csv, klog, regex,
// syslog) that can run as a stage ([Parser.Stage]) or be applied to one
// batch at a time by a stage that chooses the parser per batch
// ([Parser.Batches]: the kubernetes processor's logpump.io/parser
// annotation).
type Parser struct {
	f         *fields
	newParser func() recordParser
}

// Stage returns the parser as a stage. Each run of the stage has its own
// parser state.
func (p *Parser) Stage() pipe.Stage {
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			parse := p.Batches()
			for b := range in {
				parse(b)
				if !yield(b) {
					return
				}
			}
		}
	}
}

// Batches returns a function that parses every record of a batch in place
// (and removes the records that do not parse with on_error: drop, counted).
// The function holds parser state (slabs, interned keys): it must be called
// from one goroutine at a time, and each caller gets its own.
func (p *Parser) Batches() func(b *event.Batch) {
	rp := p.newParser()
	f := p.f
	return func(b *event.Batch) {
		kept := b.Records[:0]
		dropped := 0
		for i := range b.Records {
			r := &b.Records[i]
			n := len(r.Attrs)
			body := r.Body
			if msg, ok := rp.parse(b, r); ok {
				f.apply(r)
			} else {
				clear(r.Attrs[n:])
				r.Attrs, r.Body = r.Attrs[:n], body
				if !f.fail(r, msg) {
					dropped++
					continue
				}
			}
			if len(kept) != i {
				b.Records[len(kept)], b.Records[i] = b.Records[i], b.Records[len(kept)]
			}
			kept = b.Records[:len(kept)+1]
		}
		b.Records = kept
		if dropped > 0 {
			f.drops("parse_error", dropped)
		}
	}
}

// newRecordParser returns the Parser running a parser made by newParser over
// every record. newParser is called once per run of the stage (or per
// [Parser.Batches]), so state is never shared between runs.
func newRecordParser(f *fields, newParser func() recordParser) *Parser {
	return &Parser{f: f, newParser: newParser}
}

// slab hands out KeyValue slices for nested maps and arrays. Slices are never
// reused: a full slab is left to the garbage collector once the records that
// point into it are gone, so records in flight stay valid.
type slab struct {
	buf []event.KeyValue
}

const slabSize = 1024

func (s *slab) take(n int) []event.KeyValue {
	if n > slabSize/4 {
		return make([]event.KeyValue, n)
	}
	if len(s.buf)+n > cap(s.buf) {
		s.buf = make([]event.KeyValue, 0, slabSize)
	}
	start := len(s.buf)
	s.buf = s.buf[:start+n]
	return s.buf[start : start+n : start+n]
}

// interner keeps one heap copy of each field name seen, so that names do not
// take arena space on every record. It stops growing at a bound, after which
// names are copied into the batch's arena.
type interner struct {
	m map[string]string
}

const maxInterned = 4096

// key returns the interned k, or k copied into b's arena once the interner
// is full. k may alias any memory; it is not retained.
func (in *interner) key(b *event.Batch, k string) string {
	if s, ok := in.intern(k); ok {
		return s
	}
	return b.CopyString(k)
}

// intern returns the heap copy of k, making one if the interner is not full.
func (in *interner) intern(k string) (string, bool) {
	if s, ok := in.m[k]; ok {
		return s, true
	}
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) >= maxInterned {
		return "", false
	}
	s := strings.Clone(k)
	in.m[s] = s
	return s, true
}

func optionsError(kind string, err error) error {
	return fmt.Errorf("configure %s parser: %w", kind, err)
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
