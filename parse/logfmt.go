package parse

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// LogfmtOptions configure the logfmt parser.
type LogfmtOptions struct {
	Options `yaml:",inline"`
}

// Logfmt returns a stage that parses key=value pairs (logfmt, as written by
// Go's slog text handler, logrus and Heroku): values may be bare words or
// double-quoted with backslash escapes; a key without "=" has an empty
// value. Every value is a string. A line without any key=value pair, or
// with an unterminated quote, is a parse error.
func Logfmt(o LogfmtOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewLogfmtParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewLogfmtParser returns the parser of [Logfmt], to run as a stage or one batch
// at a time.
func NewLogfmtParser(o LogfmtOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	f, err := newFields(o.Options, now, drops)
	if err != nil {
		return nil, optionsError("logfmt", err)
	}
	return newRecordParser(f, func() recordParser { return &splitParser{s: &logfmtParser{}, toBody: f.toBody} }), nil
}

// logfmtParser splits logfmt lines; its buffer holds unescaped values.
type logfmtParser struct {
	buf []byte
}

const (
	errLogfmt      = "parse logfmt: no key=value pair"
	errLogfmtQuote = "parse logfmt: unterminated quoted value"
	errLogfmtKey   = "parse logfmt: invalid key"
)

// splitter appends the fields of a line to kvs, or returns why it cannot.
// Keys and values alias line or are copied into b's arena.
type splitter interface {
	split(b *event.Batch, line string, kvs []event.KeyValue) ([]event.KeyValue, string, bool)
}

// splitParser is the recordParser of the parsers that split a line into
// string fields (logfmt, key_value, csv).
type splitParser struct {
	s      splitter
	slab   slab
	kvs    []event.KeyValue
	toBody bool
}

func (p *splitParser) parse(b *event.Batch, r *event.Record) (string, bool) {
	if r.Body.Kind != event.KindString {
		return errNotString, false
	}
	kvs, msg, ok := p.s.split(b, r.Body.Str, p.kvs[:0])
	p.kvs = kvs[:0]
	if !ok {
		clear(kvs)
		return msg, false
	}
	if p.toBody {
		list := p.slab.take(len(kvs))
		copy(list, kvs)
		r.Body = event.Map(list)
	} else {
		r.Attrs = append(r.Attrs, kvs...)
	}
	clear(kvs)
	return "", true
}

// split appends the pairs of line to kvs. Keys and unescaped values alias
// line (which lives in b's arena); unescaped quoted values are copied to b.
func (p *logfmtParser) split(b *event.Batch, line string, kvs []event.KeyValue) ([]event.KeyValue, string, bool) {
	pairs := 0
	i := 0
	for {
		for i < len(line) && line[i] <= ' ' {
			i++
		}
		if i >= len(line) {
			break
		}
		start := i
		for i < len(line) && line[i] > ' ' && line[i] != '=' && line[i] != '"' {
			i++
		}
		if i == start {
			return kvs, errLogfmtKey, false
		}
		key := line[start:i]
		if i >= len(line) || line[i] != '=' {
			if i < len(line) && line[i] == '"' {
				return kvs, errLogfmtKey, false
			}
			kvs = append(kvs, event.KeyValue{Key: key})
			continue
		}
		i++ // '='
		pairs++
		if i < len(line) && line[i] == '"' {
			j := i + 1
			escaped := false
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					escaped = true
					j++
				}
				j++
			}
			if j >= len(line) {
				return kvs, errLogfmtQuote, false
			}
			raw := line[i+1 : j]
			val := raw
			if escaped {
				p.buf = unquoteLogfmt(p.buf[:0], raw)
				val = b.Copy(p.buf)
			}
			kvs = append(kvs, event.KeyValue{Key: key, Value: event.String(val)})
			i = j + 1
			continue
		}
		start = i
		for i < len(line) && line[i] > ' ' {
			i++
		}
		kvs = append(kvs, event.KeyValue{Key: key, Value: event.String(line[start:i])})
	}
	if pairs == 0 {
		return kvs, errLogfmt, false
	}
	return kvs, "", true
}

// unquoteLogfmt resolves the escapes of a quoted value: \" \\ \n \t \r \uXXXX;
// an unknown escape keeps its backslash.
func unquoteLogfmt(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'u':
			if i+4 < len(s) {
				if n, err := strconv.ParseUint(s[i+1:i+5], 16, 32); err == nil {
					dst = utf8.AppendRune(dst, rune(n))
					i += 4
					continue
				}
			}
			dst = append(dst, '\\', 'u')
		default:
			dst = append(dst, '\\', s[i])
		}
	}
	return dst
}
