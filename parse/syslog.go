package parse

import (
	"errors"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// SyslogOptions configure the syslog parser.
type SyslogOptions struct {
	// Protocol is rfc5424, rfc3164 or auto (the default: rfc5424 when the
	// priority is followed by a version, else rfc3164).
	Protocol string `yaml:"protocol"`
	// Location is the time zone of RFC 3164 timestamps, which carry none;
	// UTC by default. The year, also missing, is the current one (last year
	// for a December line read in January).
	Location string `yaml:"location"`
	// OnError: keep (default) or drop a line that is not syslog.
	OnError string `yaml:"on_error"`
}

// Validate checks o and fills defaults.
func (o *SyslogOptions) Validate() error {
	var errs []error
	switch o.Protocol {
	case "":
		o.Protocol = "auto"
	case "auto", "rfc3164", "rfc5424":
	default:
		errs = append(errs, config.Fieldf("protocol", "must be auto, rfc3164 or rfc5424, got %q", o.Protocol))
	}
	if _, err := NewTimeParser("Jan _2 15:04:05", o.Location, nil); err != nil {
		errs = append(errs, config.Fieldf("location", "%v", err))
	}
	opts := Options{OnError: o.OnError}
	if err := opts.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Syslog attribute names.
const (
	AttrSyslogFacility       = "syslog.facility"
	AttrSyslogVersion        = "syslog.version"
	AttrSyslogHostname       = "syslog.hostname"
	AttrSyslogAppName        = "syslog.appname"
	AttrSyslogProcID         = "syslog.procid"
	AttrSyslogMsgID          = "syslog.msgid"
	AttrSyslogStructuredData = "syslog.structured_data"
)

// Syslog returns a stage that parses syslog lines, RFC 5424
// ("<165>1 2024-05-01T11:00:00Z host app 42 ID7 [sd@1 k="v"] message") and
// RFC 3164 / BSD ("<34>May  1 11:00:00 host sshd[42]: message", the
// priority optional as in /var/log/syslog). The body becomes the message,
// Time the timestamp, Severity the priority's severity (SeverityText its
// syslog name) and the header fields syslog.* attributes; structured data is
// a map of SD-IDs to maps of parameters. A "-" (nil) field is left out.
func Syslog(o SyslogOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewSyslogParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewSyslogParser returns the parser of [Syslog], to run as a stage or one batch
// at a time.
func NewSyslogParser(o SyslogOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("syslog", err)
	}
	f, err := newFields(Options{OnError: o.OnError}, now, drops)
	if err != nil {
		return nil, optionsError("syslog", err)
	}
	bsd, err := NewTimeParser("Jan _2 15:04:05", o.Location, now)
	if err != nil {
		return nil, optionsError("syslog", err)
	}
	return newRecordParser(f, func() recordParser {
		return &syslogParser{protocol: o.Protocol, bsd: bsd, rfc: TimeParser{loc: time.UTC, utcOnly: true}}
	}), nil
}

type syslogParser struct {
	protocol string
	bsd      *TimeParser
	rfc      TimeParser
	slab     slab
	buf      []byte
	params   []event.KeyValue
	elems    []event.KeyValue
}

const (
	errSyslog         = "parse syslog: not an RFC 5424 or RFC 3164 line"
	errSyslogPriority = "parse syslog: invalid priority"
	errSyslogSD       = "parse syslog: invalid structured data"
)

var syslogSeverityNames = [8]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// SyslogSeverity maps a syslog severity (0 emerg ... 7 debug; a journal
// entry's PRIORITY) to an OpenTelemetry severity and its syslog name.
// ok is false outside 0-7.
func SyslogSeverity(sev int) (s event.Severity, name string, ok bool) {
	if sev < 0 || sev > 7 {
		return 0, "", false
	}
	s, _ = (*SeverityMap)(nil).Number(int64(sev))
	return s, syslogSeverityNames[sev], true
}

func (p *syslogParser) parse(b *event.Batch, r *event.Record) (string, bool) {
	if r.Body.Kind != event.KindString {
		return errNotString, false
	}
	line := r.Body.Str
	pri := -1
	if strings.HasPrefix(line, "<") {
		end := strings.IndexByte(line, '>')
		if end < 2 || end > 4 {
			return errSyslogPriority, false
		}
		n, ok := digits(line[1:end])
		if !ok || n > 191 {
			return errSyslogPriority, false
		}
		pri, line = n, line[end+1:]
	}
	is5424 := pri >= 0 && len(line) > 1 && line[0] >= '1' && line[0] <= '9' && (line[1] == ' ' || line[1] >= '0' && line[1] <= '9')
	switch p.protocol {
	case "rfc5424":
		if !is5424 {
			return errSyslog, false
		}
	case "rfc3164":
		is5424 = false
	}
	var msg string
	var ok bool
	if is5424 {
		msg, ok = p.rfc5424(b, r, line)
	} else {
		msg, ok = p.rfc3164(r, line)
	}
	if !ok {
		return msg, false
	}
	if pri >= 0 {
		r.Severity, r.SeverityText, _ = SyslogSeverity(pri % 8)
		r.Attrs = append(r.Attrs, event.KeyValue{Key: AttrSyslogFacility, Value: event.Int(int64(pri / 8))})
	}
	return "", true
}

// field cuts the next space-separated field; "-" is nil.
func field(s string) (f, rest string, ok bool) {
	f, rest, ok = strings.Cut(s, " ")
	if f == "" {
		return "", "", false
	}
	return f, rest, true
}

func (p *syslogParser) rfc5424(b *event.Batch, r *event.Record, line string) (string, bool) {
	version, line, ok1 := field(line)
	ts, line, ok2 := field(line)
	host, line, ok3 := field(line)
	app, line, ok4 := field(line)
	proc, line, ok5 := field(line)
	msgid, line, ok6 := field(line)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || line == "" {
		return errSyslog, false
	}
	v, _ := digits(version)
	var ns int64
	if ts != "-" {
		var err error
		if ns, err = p.rfc.rfc3339(ts); err != nil {
			return errSyslog, false
		}
	}
	var sd event.Value
	if line[0] == '-' {
		line = line[1:]
	} else {
		var ok bool
		sd, line, ok = p.structuredData(b, line)
		if !ok {
			return errSyslogSD, false
		}
	}
	msg := strings.TrimPrefix(line, " ")
	msg = strings.TrimPrefix(msg, "\ufeff")
	r.Time = ns
	r.Attrs = append(r.Attrs, event.KeyValue{Key: AttrSyslogVersion, Value: event.Int(int64(v))})
	for _, kv := range [...]struct{ k, v string }{{AttrSyslogHostname, host}, {AttrSyslogAppName, app}, {AttrSyslogProcID, proc}, {AttrSyslogMsgID, msgid}} {
		if kv.v != "-" {
			r.Attrs = append(r.Attrs, event.KeyValue{Key: kv.k, Value: event.String(kv.v)})
		}
	}
	if sd.Kind == event.KindMap {
		r.Attrs = append(r.Attrs, event.KeyValue{Key: AttrSyslogStructuredData, Value: sd})
	}
	r.Body = event.String(msg)
	return "", true
}

// structuredData parses one or more [id param="value" ...] elements.
func (p *syslogParser) structuredData(b *event.Batch, s string) (event.Value, string, bool) {
	elems := p.elems[:0]
	defer func() { clear(elems); p.elems = elems[:0] }()
	for len(s) > 0 && s[0] == '[' {
		s = s[1:]
		end := strings.IndexAny(s, " ]")
		if end <= 0 {
			return event.Value{}, "", false
		}
		id := s[:end]
		s = s[end:]
		params := p.params[:0]
		for len(s) > 0 && s[0] == ' ' {
			s = s[1:]
			eq := strings.IndexByte(s, '=')
			if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
				return event.Value{}, "", false
			}
			name := s[:eq]
			s = s[eq+2:]
			escaped := false
			i := 0
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					escaped = true
					i++
				}
			}
			if i >= len(s) {
				return event.Value{}, "", false
			}
			val := s[:i]
			if escaped {
				p.buf = p.buf[:0]
				for j := 0; j < len(val); j++ {
					if val[j] == '\\' && j+1 < len(val) && (val[j+1] == '"' || val[j+1] == '\\' || val[j+1] == ']') {
						j++
					}
					p.buf = append(p.buf, val[j])
				}
				val = b.Copy(p.buf)
			}
			params = append(params, event.KeyValue{Key: name, Value: event.String(val)})
			s = s[i+1:]
		}
		if len(s) == 0 || s[0] != ']' {
			return event.Value{}, "", false
		}
		s = s[1:]
		list := p.slab.take(len(params))
		copy(list, params)
		clear(params)
		p.params = params[:0]
		elems = append(elems, event.KeyValue{Key: id, Value: event.Map(list)})
	}
	list := p.slab.take(len(elems))
	copy(list, elems)
	return event.Map(list), s, true
}

func (p *syslogParser) rfc3164(r *event.Record, line string) (string, bool) {
	if len(line) < 16 || line[15] != ' ' {
		return errSyslog, false
	}
	ns, err := p.bsd.Parse(line[:15])
	if err != nil {
		return errSyslog, false
	}
	rest := line[16:]
	host, rest, ok := strings.Cut(rest, " ")
	if !ok || host == "" {
		return errSyslog, false
	}
	// TAG[PID]: MSG; a line without a tag is all message.
	msg := rest
	var tag, pid string
	if colon := strings.Index(rest, ": "); colon > 0 && !strings.ContainsAny(rest[:colon], " ") {
		tag, msg = rest[:colon], rest[colon+2:]
		if i := strings.IndexByte(tag, '['); i > 0 && strings.HasSuffix(tag, "]") {
			tag, pid = tag[:i], tag[i+1:len(tag)-1]
		}
	}
	r.Time = ns
	r.Attrs = append(r.Attrs, event.KeyValue{Key: AttrSyslogHostname, Value: event.String(host)})
	if tag != "" {
		r.Attrs = append(r.Attrs, event.KeyValue{Key: AttrSyslogAppName, Value: event.String(tag)})
	}
	if pid != "" {
		r.Attrs = append(r.Attrs, event.KeyValue{Key: AttrSyslogProcID, Value: event.String(pid)})
	}
	r.Body = event.String(msg)
	return "", true
}
