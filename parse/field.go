package parse

import (
	"fmt"
	"regexp"

	"github.com/logpump/logpump/event"
)

// FieldParsers lists the formats [NewFieldParser] reads.
var FieldParsers = []string{"json", "logfmt", "key_value", "regex"}

// FieldParser parses a string held anywhere in a record (an attribute, a
// field of a map body), not only the body, into a map. It is the parser of
// the body stages, run on one string: the same grammar, the same errors.
//
// A FieldParser keeps scratch state and is not safe for concurrent use.
type FieldParser struct {
	p       recordParser
	scratch event.Record
}

// NewFieldParser returns a parser for format as (json, logfmt, key_value
// with its default separators, or regex with pattern, whose named groups
// become the fields).
func NewFieldParser(as, pattern string) (*FieldParser, error) {
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
	}
	return nil, fmt.Errorf("unknown format %q (known: json, logfmt, key_value, regex)", as)
}

// Parse parses s, a string that lives as long as b (in its arena or on the
// heap). The returned fields alias s or b's arena and stay valid as long as
// b; on failure it returns the reason.
func (f *FieldParser) Parse(b *event.Batch, s string) ([]event.KeyValue, string, bool) {
	f.scratch.Body = event.String(s)
	msg, ok := f.p.parse(b, &f.scratch)
	body := f.scratch.Body
	f.scratch.Body = event.Value{}
	if !ok || body.Kind != event.KindMap {
		return nil, msg, false
	}
	return body.List, "", true
}
