package parse

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// CSVOptions configure the csv parser.
type CSVOptions struct {
	// Header names the columns, in order: a list, or one line in the
	// format itself ("time,level,msg").
	Header Columns `yaml:"header"`
	// Delimiter separates fields; default ",". One character.
	Delimiter string `yaml:"delimiter"`
	// Lazy accepts a line with fewer fields than the header (the missing
	// ones are absent) or more (the extra ones are dropped); by default
	// either is a parse error.
	Lazy    bool `yaml:"lazy"`
	Options `yaml:",inline"`
}

// Columns are column names, written as a list or as one string.
type Columns []string

// UnmarshalYAML reads a list of names, or one string kept whole for
// [CSVOptions.Validate] to split at the delimiter.
func (c *Columns) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*c = Columns{n.Value}
		return nil
	}
	var names []string
	if err := n.Decode(&names); err != nil {
		return fmt.Errorf("want a list of names or one line of them: %w", err)
	}
	*c = names
	return nil
}

// Validate checks o and fills defaults.
func (o *CSVOptions) Validate() error {
	var errs []error
	if o.Delimiter == "" {
		o.Delimiter = ","
	}
	if len(o.Delimiter) != 1 || o.Delimiter == `"` || o.Delimiter == "\n" {
		errs = append(errs, config.Fieldf("delimiter", "want one character other than a quote, got %q", o.Delimiter))
	}
	if len(o.Header) == 1 && len(o.Delimiter) == 1 && strings.Contains(o.Header[0], o.Delimiter) {
		o.Header = strings.Split(o.Header[0], o.Delimiter)
		for i := range o.Header {
			o.Header[i] = strings.TrimSpace(o.Header[i])
		}
	}
	if len(o.Header) == 0 {
		errs = append(errs, config.Fieldf("header", "missing required key"))
	}
	seen := map[string]bool{}
	for _, h := range o.Header {
		if h == "" || seen[h] {
			errs = append(errs, config.Fieldf("header", "column names must be unique and not empty, got %q", h))
			break
		}
		seen[h] = true
	}
	errs = append(errs, o.Options.Validate())
	return errors.Join(errs...)
}

// CSV returns a stage that parses delimiter-separated values (RFC 4180:
// fields may be double-quoted, "" in a quoted field is a quote) into the
// header's columns. Every value is a string. A line whose field count
// differs from the header's (unless lazy) or with an unterminated quote is a
// parse error. It allocates only when a quoted field holds "" (copied into
// the batch's arena).
func CSV(o CSVOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewCSVParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewCSVParser returns the parser of [CSV], to run as a stage or one batch
// at a time.
func NewCSVParser(o CSVOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("csv", err)
	}
	f, err := newFields(o.Options, now, drops)
	if err != nil {
		return nil, optionsError("csv", err)
	}
	header := o.Header
	return newRecordParser(f, func() recordParser {
		return &splitParser{s: &csvParser{header: header, delim: o.Delimiter[0], lazy: o.Lazy}, toBody: f.toBody}
	}), nil
}

type csvParser struct {
	header []string
	delim  byte
	lazy   bool
	buf    []byte
}

const errCSVQuote = "parse csv: unterminated quoted field"

func (p *csvParser) split(b *event.Batch, line string, kvs []event.KeyValue) ([]event.KeyValue, string, bool) {
	line = strings.TrimSuffix(line, "\r")
	n := 0
	i := 0
	for {
		var val string
		if i < len(line) && line[i] == '"' {
			j := i + 1
			doubled := false
			for {
				k := strings.IndexByte(line[j:], '"')
				if k < 0 {
					return kvs, errCSVQuote, false
				}
				j += k
				if j+1 < len(line) && line[j+1] == '"' {
					doubled = true
					j += 2
					continue
				}
				break
			}
			val = line[i+1 : j]
			if doubled {
				p.buf = p.buf[:0]
				for k := 0; k < len(val); k++ {
					p.buf = append(p.buf, val[k])
					if val[k] == '"' {
						k++ // the second of a doubled quote
					}
				}
				val = b.Copy(p.buf)
			}
			i = j + 1
			if i < len(line) && line[i] != p.delim {
				return kvs, "parse csv: text after a quoted field", false
			}
		} else {
			k := strings.IndexByte(line[i:], p.delim)
			if k < 0 {
				k = len(line) - i
			}
			val = line[i : i+k]
			i += k
		}
		if n < len(p.header) {
			kvs = append(kvs, event.KeyValue{Key: p.header[n], Value: event.String(val)})
		}
		n++
		if i >= len(line) {
			break
		}
		i++ // the delimiter
	}
	if n != len(p.header) && !p.lazy {
		return kvs, fmt.Sprintf("parse csv: %d fields, the header has %d", n, len(p.header)), false
	}
	return kvs, "", true
}
