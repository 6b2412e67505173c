package parse

import (
	"errors"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// KeyValueOptions configure the key_value parser.
type KeyValueOptions struct {
	// PairSeparator separates pairs; default: any run of spaces and tabs.
	// Spaces around a non-blank separator are ignored ("a=1, b=2").
	PairSeparator string `yaml:"pair_separator"`
	// KeySeparator separates a key from its value; default "=".
	KeySeparator string `yaml:"key_separator"`
	// Quotes are the characters that may quote a value; default `"'`.
	// Within quotes the pair and key separators are plain text and a
	// backslash escapes the quote and itself.
	Quotes  *string `yaml:"quotes"`
	Options `yaml:",inline"`
}

// Validate checks o and fills defaults.
func (o *KeyValueOptions) Validate() error {
	var errs []error
	if o.KeySeparator == "" {
		o.KeySeparator = "="
	}
	if o.Quotes == nil {
		q := `"'`
		o.Quotes = &q
	}
	if strings.TrimSpace(o.KeySeparator) == "" {
		errs = append(errs, config.Fieldf("key_separator", "must not be blank"))
	}
	if o.PairSeparator != "" && strings.Contains(o.PairSeparator, o.KeySeparator) {
		errs = append(errs, config.Fieldf("pair_separator", "must not contain the key separator %q", o.KeySeparator))
	}
	for _, q := range *o.Quotes {
		if q >= 0x80 || strings.ContainsRune(o.KeySeparator+o.PairSeparator, q) {
			errs = append(errs, config.Fieldf("quotes", "%q: want ASCII characters that are not separators", q))
			break
		}
	}
	errs = append(errs, o.Options.Validate())
	return errors.Join(errs...)
}

// KeyValue returns a stage that parses pairs such as `user=alice
// action="log in" ok=true` or, with separators set, `a: 1; b: 2`. Every
// value is a string; a key without a separator is skipped as text (a line
// may hold words besides its pairs). A line without any pair, or with an
// unterminated quote, is a parse error. It allocates only when a quoted
// value holds escapes (copied into the batch's arena).
func KeyValue(o KeyValueOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewKeyValueParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewKeyValueParser returns the parser of [KeyValue], to run as a stage or one batch
// at a time.
func NewKeyValueParser(o KeyValueOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("key_value", err)
	}
	f, err := newFields(o.Options, now, drops)
	if err != nil {
		return nil, optionsError("key_value", err)
	}
	return newRecordParser(f, func() recordParser { return &splitParser{s: newKVParser(o), toBody: f.toBody} }), nil
}

func newKVParser(o KeyValueOptions) *kvParser {
	p := &kvParser{pairSep: o.PairSeparator, keySep: o.KeySeparator}
	for _, q := range *o.Quotes {
		p.quote[q] = true
	}
	return p
}

type kvParser struct {
	pairSep, keySep string
	quote           [128]bool
	buf             []byte
}

const (
	errKV      = "parse key_value: no key=value pair"
	errKVQuote = "parse key_value: unterminated quoted value"
)

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// skipPairSep skips blanks and one pair separator at line[i:].
func (p *kvParser) skipPairSep(line string, i int) int {
	for i < len(line) && isBlank(line[i]) {
		i++
	}
	if p.pairSep != "" && strings.HasPrefix(line[i:], p.pairSep) {
		i += len(p.pairSep)
		for i < len(line) && isBlank(line[i]) {
			i++
		}
	}
	return i
}

// atPairEnd reports whether a bare value ends at line[i].
func (p *kvParser) atPairEnd(line string, i int) bool {
	if p.pairSep == "" {
		return isBlank(line[i])
	}
	return strings.HasPrefix(line[i:], p.pairSep)
}

// split appends the pairs of line to kvs. Keys and values alias line;
// unescaped quoted values are copied to b's arena.
func (p *kvParser) split(b *event.Batch, line string, kvs []event.KeyValue) ([]event.KeyValue, string, bool) {
	i := p.skipPairSep(line, 0)
	for i < len(line) {
		// A key runs to the key separator; a blank or pair separator
		// first makes it a plain word, which is skipped.
		start := i
		for i < len(line) && !strings.HasPrefix(line[i:], p.keySep) && !p.atPairEnd(line, i) {
			i++
		}
		key := strings.TrimRight(line[start:i], " \t")
		if i >= len(line) || !strings.HasPrefix(line[i:], p.keySep) || key == "" {
			if i == start { // a separator where a key should start: skip it
				i++
			}
			i = p.skipPairSep(line, i)
			continue
		}
		i += len(p.keySep)
		if p.pairSep != "" {
			for i < len(line) && isBlank(line[i]) {
				i++
			}
		}
		if i < len(line) && line[i] < 0x80 && p.quote[line[i]] {
			q := line[i]
			j := i + 1
			escaped := false
			for j < len(line) && line[j] != q {
				if line[j] == '\\' && j+1 < len(line) {
					escaped = true
					j++
				}
				j++
			}
			if j >= len(line) {
				return kvs, errKVQuote, false
			}
			val := line[i+1 : j]
			if escaped {
				p.buf = unescapeQuoted(p.buf[:0], val)
				val = b.Copy(p.buf)
			}
			kvs = append(kvs, event.KeyValue{Key: key, Value: event.String(val)})
			i = p.skipPairSep(line, j+1)
			continue
		}
		start = i
		for i < len(line) && !p.atPairEnd(line, i) {
			i++
		}
		val := line[start:i]
		if p.pairSep != "" {
			val = strings.TrimRight(val, " \t")
		}
		kvs = append(kvs, event.KeyValue{Key: key, Value: event.String(val)})
		i = p.skipPairSep(line, i)
	}
	if len(kvs) == 0 {
		return kvs, errKV, false
	}
	return kvs, "", true
}

// unescapeQuoted drops the backslash of every escaped character.
func unescapeQuoted(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		dst = append(dst, s[i])
	}
	return dst
}
