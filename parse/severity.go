package parse

import (
	"fmt"
	"strings"

	"github.com/logpump/logpump/event"
)

// SeverityOptions says where a parser finds a record's severity.
type SeverityOptions struct {
	// Field names the parsed field holding the level ("level", "severity").
	Field string `yaml:"field"`
	// Mapping adds aliases: each key is an OpenTelemetry severity name
	// (TRACE..FATAL4) and its value lists the texts that mean it. Aliases
	// are matched case-insensitively and win over the built-in ones.
	Mapping map[string][]string `yaml:"mapping"`
}

// SeverityMap maps level texts and numbers to OpenTelemetry severities. The
// zero value knows only the built-in aliases. It is read-only after
// [NewSeverityMap] and safe for concurrent use.
type SeverityMap struct {
	extra map[string]event.Severity // lower-cased alias -> severity
}

// NewSeverityMap returns a map with the built-in aliases plus mapping (see
// [SeverityOptions.Mapping]).
func NewSeverityMap(mapping map[string][]string) (*SeverityMap, error) {
	m := &SeverityMap{}
	for name, aliases := range mapping {
		sev, ok := severityByName(name)
		if !ok {
			return nil, fmt.Errorf("map severity %q: not an OpenTelemetry severity name (TRACE, DEBUG2, INFO, WARN, ERROR3, FATAL, ...)", name)
		}
		if m.extra == nil {
			m.extra = make(map[string]event.Severity)
		}
		for _, a := range aliases {
			m.extra[strings.ToLower(a)] = sev
		}
	}
	return m, nil
}

// severityByName parses an OpenTelemetry short name such as "WARN" or "ERROR3".
func severityByName(name string) (event.Severity, bool) {
	n := strings.ToUpper(name)
	step := 0
	if l := len(n); l > 0 && n[l-1] >= '2' && n[l-1] <= '4' {
		step = int(n[l-1] - '1')
		n = n[:l-1]
	}
	for i, s := range [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"} {
		if n == s {
			return event.Severity(1 + 4*i + step), true
		}
	}
	return 0, false
}

// Text maps a level text to a severity. It accepts the usual spellings
// (trace, dbg, info, notice, warn, WARNING, err, error, crit, fatal, panic,
// emerg, ...), single letters (T D I W E F, as in klog), OpenTelemetry names
// with a step (INFO2, ERROR3) and numbers (see [SeverityMap.Number]). It
// does not allocate.
func (m *SeverityMap) Text(s string) (event.Severity, bool) {
	if m != nil && m.extra != nil {
		var buf [32]byte
		if len(s) <= len(buf) {
			if sev, ok := m.extra[string(lowerASCII(buf[:0], s))]; ok {
				return sev, true
			}
		}
	}
	if s == "" {
		return 0, false
	}
	if c := s[0]; c >= '0' && c <= '9' {
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' || n > 1000 {
				return 0, false
			}
			n = n*10 + int(s[i]-'0')
		}
		return m.Number(int64(n))
	}
	if len(s) > 16 {
		return 0, false
	}
	var buf [16]byte
	l := lowerASCII(buf[:0], s)
	switch string(l) {
	case "t", "trace", "trc", "finest", "verbose", "v":
		return event.SeverityTrace, true
	case "d", "debug", "dbg", "fine", "finer", "config":
		return event.SeverityDebug, true
	case "i", "info", "inf", "information", "informational":
		return event.SeverityInfo, true
	case "notice":
		return event.SeverityInfo + 1, true
	case "w", "warn", "warning", "wrn":
		return event.SeverityWarn, true
	case "e", "error", "err", "eror", "severe":
		return event.SeverityError, true
	case "crit", "critical":
		return event.SeverityError + 1, true
	case "alert":
		return event.SeverityError + 2, true
	case "f", "fatal", "ftl", "panic", "dpanic", "emerg", "emergency":
		return event.SeverityFatal, true
	}
	return severityByName(string(l))
}

// Number maps a numeric level: 0-7 are syslog severities (0 emergency ... 7
// debug), 10-60 in steps of 10 are the levels of pino and bunyan (10 trace ...
// 60 fatal).
func (m *SeverityMap) Number(n int64) (event.Severity, bool) {
	switch n {
	case 0:
		return event.SeverityFatal, true
	case 1:
		return event.SeverityError + 2, true
	case 2:
		return event.SeverityError + 1, true
	case 3:
		return event.SeverityError, true
	case 4:
		return event.SeverityWarn, true
	case 5:
		return event.SeverityInfo + 1, true
	case 6:
		return event.SeverityInfo, true
	case 7:
		return event.SeverityDebug, true
	case 10:
		return event.SeverityTrace, true
	case 20:
		return event.SeverityDebug, true
	case 30:
		return event.SeverityInfo, true
	case 40:
		return event.SeverityWarn, true
	case 50:
		return event.SeverityError, true
	case 60:
		return event.SeverityFatal, true
	}
	return 0, false
}

// Value maps a parsed field: a string is mapped by [SeverityMap.Text], an
// integer by [SeverityMap.Number]. The returned text is the record's
// SeverityText: the string itself, or the severity's name for numbers.
func (m *SeverityMap) Value(v event.Value) (event.Severity, string, bool) {
	switch v.Kind {
	case event.KindString:
		sev, ok := m.Text(v.Str)
		return sev, v.Str, ok
	case event.KindInt:
		sev, ok := m.Number(v.AsInt())
		return sev, sev.String(), ok
	case event.KindDouble:
		f := v.AsDouble()
		if f == float64(int64(f)) {
			sev, ok := m.Number(int64(f))
			return sev, sev.String(), ok
		}
	}
	return 0, "", false
}

func lowerASCII(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
