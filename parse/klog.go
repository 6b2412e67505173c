package parse

import (
	"errors"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// KlogOptions configure the klog parser.
type KlogOptions struct {
	// Location is the IANA time zone the times were written in (klog
	// writes the node's local time without an offset); UTC by default.
	Location string `yaml:"location"`
	// OnError is "keep" (the default) or "drop", as for the other parsers.
	OnError string `yaml:"on_error"`
}

// Validate checks o and fills defaults.
func (o *KlogOptions) Validate() error {
	opts := Options{OnError: o.OnError}
	err := opts.Validate()
	o.OnError = opts.OnError
	if _, lerr := loadLocation(o.Location); lerr != nil {
		err = errors.Join(err, config.Fieldf("location", "%v", lerr))
	}
	return err
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}

// Attributes the klog parser sets (OpenTelemetry semantic conventions).
const (
	AttrThreadID   = "thread.id"
	AttrCodeFile   = "code.file.path"
	AttrCodeLineNo = "code.line.number"
)

// Klog returns a stage that parses the lines of Kubernetes components
// (klog: "I0501 12:00:00.123456    1234 server.go:42] message"): the
// letter gives the severity (I, W, E, F), the time takes its year from now
// (the year before when that would put it more than a day ahead), the
// thread id and source file and line become thread.id, code.file.path and
// code.line.number. A structured line (`] "message" key="value" n=3`) has
// the unquoted message as body and each pair as a string attribute. Any
// other line is a parse error.
func Klog(o KlogOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewKlogParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewKlogParser returns the parser of [Klog], to run as a stage or one batch
// at a time.
func NewKlogParser(o KlogOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("klog", err)
	}
	if now == nil {
		now = time.Now
	}
	loc, _ := loadLocation(o.Location) // checked by Validate
	f, err := newFields(Options{OnError: o.OnError}, now, drops)
	if err != nil {
		return nil, optionsError("klog", err)
	}
	return newRecordParser(f, func() recordParser {
		return &klogParser{now: now, loc: loc}
	}), nil
}

type klogParser struct {
	now func() time.Time
	loc *time.Location
	kv  logfmtParser
	kvs []event.KeyValue
	buf []byte
}

const errKlog = "parse klog: not a klog line"

var klogSeverity = [256]event.Severity{'I': event.SeverityInfo, 'W': event.SeverityWarn, 'E': event.SeverityError, 'F': event.SeverityFatal}

// klogSevText are the severity texts, constants so that a record never
// points into a line for them.
var klogSevText = map[byte]string{'I': "I", 'W': "W", 'E': "E", 'F': "F"}

func (p *klogParser) parse(b *event.Batch, r *event.Record) (string, bool) {
	if r.Body.Kind != event.KindString {
		return errNotString, false
	}
	s := r.Body.Str
	// "Lmmdd hh:mm:ss.uuuuuu" is 21 bytes.
	if len(s) < 23 || klogSeverity[s[0]] == 0 || s[5] != ' ' || s[8] != ':' || s[11] != ':' || s[14] != '.' {
		return errKlog, false
	}
	month, ok1 := digits(s[1:3])
	day, ok2 := digits(s[3:5])
	hour, ok3 := digits(s[6:8])
	minute, ok4 := digits(s[9:11])
	sec, ok5 := digits(s[12:14])
	frac, ok6 := digits(s[15:21])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || month < 1 || month > 12 || day < 1 || day > daysIn(month, 2024) ||
		hour > 23 || minute > 59 || sec > 60 {
		return errKlog, false
	}
	i := 21
	for i < len(s) && s[i] == ' ' {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start || i-start > 18 || i >= len(s) || s[i] != ' ' {
		return errKlog, false
	}
	tid, _ := digits(s[start:i])
	i++
	start = i
	colon := -1
	for i < len(s) && s[i] != ']' && s[i] != ' ' {
		if s[i] == ':' {
			colon = i
		}
		i++
	}
	if i >= len(s) || s[i] != ']' || colon < 0 {
		return errKlog, false
	}
	file := s[start:colon]
	line, ok := digits(s[colon+1 : i])
	if !ok || file == "" || i-colon-1 == 0 || i-colon-1 > 9 {
		return errKlog, false
	}
	i++
	if i < len(s) && s[i] == ' ' {
		i++
	}
	msg := s[i:]
	r.Attrs = append(r.Attrs,
		event.KeyValue{Key: AttrThreadID, Value: event.Int(int64(tid))},
		event.KeyValue{Key: AttrCodeFile, Value: event.String(file)},
		event.KeyValue{Key: AttrCodeLineNo, Value: event.Int(int64(line))})
	if len(msg) > 0 && msg[0] == '"' {
		if text, rest, ok := p.quoted(b, msg); ok && (rest == "" || rest[0] == ' ') {
			kvs, _, ok := p.kv.split(b, rest, p.kvs[:0])
			p.kvs = kvs[:0]
			if ok || len(kvs) == 0 {
				r.Attrs = append(r.Attrs, kvs...)
				msg = text
			}
			clear(kvs)
		}
	}
	now := p.now().In(p.loc)
	t := time.Date(now.Year(), time.Month(month), day, hour, minute, sec, frac*1000, p.loc)
	if t.After(now.Add(24 * time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	r.Time = t.UnixNano()
	r.Severity, r.SeverityText = klogSeverity[s[0]], klogSevText[s[0]]
	r.Body = event.String(msg)
	return "", true
}

// quoted reads the double-quoted string at the start of s and returns it
// unescaped (aliasing s, or copied into b's arena) and what follows it.
func (p *klogParser) quoted(b *event.Batch, s string) (string, string, bool) {
	escaped := false
	for j := 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			raw := s[1:j]
			if escaped {
				p.buf = unquoteLogfmt(p.buf[:0], raw)
				raw = b.Copy(p.buf)
			}
			return raw, s[j+1:], true
		}
	}
	return "", "", false
}
