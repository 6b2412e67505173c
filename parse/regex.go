package parse

import (
	"errors"
	"regexp"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// RegexOptions configure the regex parser.
type RegexOptions struct {
	// Pattern is an RE2 expression (Go regexp syntax) with named groups,
	// (?P<name>...) or (?<name>...); each group that matched becomes a field.
	Pattern string `yaml:"pattern"`
	// Preset is a ready-made pattern instead (see [RegexPresets]): it also
	// reads the time, the severity and the message of its format unless
	// timestamp, severity or body_field say otherwise.
	Preset  string `yaml:"preset"`
	Options `yaml:",inline"`
}

// pattern is the pattern given or the preset's.
func (o *RegexOptions) pattern() string {
	if p, ok := regexPresets[o.Preset]; ok {
		return p.pattern
	}
	return o.Pattern
}

// Validate checks o and fills defaults.
func (o *RegexOptions) Validate() error {
	var errs []error
	if o.Preset != "" {
		p, ok := regexPresets[o.Preset]
		switch {
		case !ok:
			errs = append(errs, config.Fieldf("preset", "unknown preset %q (known: %s)", o.Preset, presetNames()))
		case o.Pattern != "":
			errs = append(errs, config.Fieldf("pattern", "give pattern or preset, not both"))
		default:
			if o.Timestamp == nil && p.timeField != "" {
				o.Timestamp = &TimeOptions{Field: p.timeField, Layout: p.timeLayout}
			}
			if o.Severity == nil && p.sevField != "" {
				o.Severity = &SeverityOptions{Field: p.sevField, Mapping: p.sevMapping}
			}
			if o.BodyField == "" && o.Target != "body" && p.bodyField != "" {
				o.BodyField = p.bodyField
			}
		}
	} else if o.Pattern == "" {
		errs = append(errs, config.Fieldf("pattern", "missing required key (or give a preset)"))
	} else if re, err := regexp.Compile(o.Pattern); err != nil {
		errs = append(errs, config.Fieldf("pattern", "%v", err))
	} else if !hasNamedGroup(re) {
		errs = append(errs, config.Fieldf("pattern", "has no named group (?P<name>...)"))
	}
	errs = append(errs, o.Options.Validate())
	return errors.Join(errs...)
}

func hasNamedGroup(re *regexp.Regexp) bool {
	for _, n := range re.SubexpNames() {
		if n != "" {
			return true
		}
	}
	return false
}

// Regex returns a stage that matches each record's string body against a
// pattern; the named groups that took part in the match become fields (all
// strings, aliasing the body). A line that does not match is a parse error.
// It costs one allocation per record: Go's regexp has no API that reuses the
// match index slice.
func Regex(o RegexOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewRegexParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewRegexParser returns the parser of [Regex], to run as a stage or one batch
// at a time.
func NewRegexParser(o RegexOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("regex", err)
	}
	f, err := newFields(o.Options, now, drops)
	if err != nil {
		return nil, optionsError("regex", err)
	}
	re := regexp.MustCompile(o.pattern()) // checked by Validate
	names := re.SubexpNames()
	return newRecordParser(f, func() recordParser {
		return &regexParser{re: re, names: names, toBody: f.toBody}
	}), nil
}

type regexParser struct {
	re     *regexp.Regexp
	names  []string
	slab   slab
	toBody bool
}

const errRegex = "parse regex: line does not match the pattern"

func (p *regexParser) parse(_ *event.Batch, r *event.Record) (string, bool) {
	if r.Body.Kind != event.KindString {
		return errNotString, false
	}
	line := r.Body.Str
	m := p.re.FindStringSubmatchIndex(line)
	if m == nil {
		return errRegex, false
	}
	var list []event.KeyValue
	if p.toBody {
		n := 0
		for i, name := range p.names {
			if name != "" && m[2*i] >= 0 {
				n++
			}
		}
		list = p.slab.take(n)[:0]
	}
	for i, name := range p.names {
		if name == "" || m[2*i] < 0 {
			continue
		}
		kv := event.KeyValue{Key: name, Value: event.String(line[m[2*i]:m[2*i+1]])}
		if p.toBody {
			list = append(list, kv)
		} else {
			r.Attrs = append(r.Attrs, kv)
		}
	}
	if p.toBody {
		r.Body = event.Map(list)
	}
	return "", true
}
