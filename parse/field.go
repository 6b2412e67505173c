package parse

import (
	"fmt"
	"regexp"
	"time"

	"github.com/logpump/logpump/event"
)

// FieldParsers lists the formats [NewFieldParser] reads.
var FieldParsers = []string{"json", "logfmt", "key_value", "regex", "syslog"}

// FieldParser parses a string held anywhere in a record (an attribute, a
// field of a map body), not only the body, into a map. It is the parser of
// the body stages, run on one string: the same grammar, the same errors.
//
// A FieldParser keeps scratch state and is not safe for concurrent use.
type FieldParser struct {
	p       recordParser
	scratch event.Record
	// whole: the parser fills a record (syslog), whose parts make the map.
	whole bool
	slab  slab
}

// NewFieldParser returns a parser for format as (json, logfmt, key_value
// with its default separators, regex with pattern, whose named groups
// become the fields, or syslog, whose message, time, severity and header
// fields become the fields). now gives RFC 3164 times their year (time.Now
// when nil).
func NewFieldParser(as, pattern string, now func() time.Time) (*FieldParser, error) {
	if pattern != "" && as != "regex" {
		return nil, fmt.Errorf("pattern is for as: regex, not %q", as)
	}
	switch as {
	case "json":
		return &FieldParser{p: &jsonParser{toBody: true}}, nil
	case "logfmt":
		return &FieldParser{p: &splitParser{s: &logfmtParser{}, toBody: true}}, nil
	case "key_value":
		o := KeyValueOptions{}
		if err := o.Validate(); err != nil {
			return nil, err
		}
		return &FieldParser{p: &splitParser{s: newKVParser(o), toBody: true}}, nil
	case "regex":
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, err
		}
		if !hasNamedGroup(re) {
			return nil, fmt.Errorf("pattern has no named group (?P<name>...)")
		}
		return &FieldParser{p: &regexParser{re: re, names: re.SubexpNames(), toBody: true}}, nil
	case "syslog":
		bsd, err := NewTimeParser("Jan _2 15:04:05", "", now)
		if err != nil {
			return nil, err
		}
		return &FieldParser{p: &syslogParser{protocol: "auto", bsd: bsd, rfc: TimeParser{loc: time.UTC, utcOnly: true}}, whole: true}, nil
	}
	return nil, fmt.Errorf("unknown format %q (known: json, logfmt, key_value, regex, syslog)", as)
}

// Parse parses s, a string that lives as long as b (in its arena or on the
// heap). The returned fields alias s or b's arena and stay valid as long as
// b; on failure it returns the reason.
func (f *FieldParser) Parse(b *event.Batch, s string) ([]event.KeyValue, string, bool) {
	f.scratch.Body = event.String(s)
	if f.whole {
		return f.parseWhole(b)
	}
	msg, ok := f.p.parse(b, &f.scratch)
	body := f.scratch.Body
	f.scratch.Body = event.Value{}
	if !ok || body.Kind != event.KindMap {
		return nil, msg, false
	}
	return body.List, "", true
}

// Keys of the map a whole-record parser (syslog) gives beside its
// attributes.
const (
	FieldMessage      = "message"
	FieldTime         = "time"
	FieldSeverity     = "severity"
	FieldSeverityText = "severity_text"
)

// parseWhole runs a parser that fills a record and returns its parts as a
// map: message (the body), time (Unix nanoseconds), severity (the number),
// severity_text, then the attributes it set.
func (f *FieldParser) parseWhole(b *event.Batch) ([]event.KeyValue, string, bool) {
	r := &f.scratch
	r.Attrs, r.Time, r.Severity, r.SeverityText = r.Attrs[:0], 0, 0, ""
	msg, ok := f.p.parse(b, r)
	defer func() {
		clear(r.Attrs)
		r.Body = event.Value{}
	}()
	if !ok {
		return nil, msg, false
	}
	kvs := f.slab.take(len(r.Attrs) + 4)[:0]
	kvs = append(kvs, event.KeyValue{Key: FieldMessage, Value: r.Body})
	if r.Time != 0 {
		kvs = append(kvs, event.KeyValue{Key: FieldTime, Value: event.Int(r.Time)})
	}
	if r.Severity != 0 {
		kvs = append(kvs, event.KeyValue{Key: FieldSeverity, Value: event.Int(int64(r.Severity))},
			event.KeyValue{Key: FieldSeverityText, Value: event.String(r.SeverityText)})
	}
	return append(kvs, r.Attrs...), "", true
}
