package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"strings"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// RedactOptions configure the redact processor.
type RedactOptions struct {
	// Presets are built-in patterns: credit_card (13-19 digits passing the
	// Luhn check), bearer_token (the token after "Bearer "), email.
	Presets []string `yaml:"presets"`
	// Patterns are RE2 expressions; the whole match is redacted, or only the
	// first capture group when the pattern has one.
	Patterns []string `yaml:"patterns"`
	// Keys are attribute keys (case-insensitive) whose whole value is
	// redacted: password, authorization, api_key, ...
	Keys []string `yaml:"keys"`
	// Mode is mask (the default: replace with Mask) or hash (replace with the
	// first 16 hex digits of SHA-256 of Salt and the value, so that equal
	// secrets stay correlatable without being readable).
	Mode string `yaml:"mode"`
	Mask string `yaml:"mask"`
	Salt string `yaml:"salt"`
}

type redactor struct {
	re    *regexp.Regexp
	group bool              // redact the first group, not the whole match
	quick func(string) bool // cheap test that must hold for a match
	luhn  bool
}

var redactPresets = map[string]redactor{
	"credit_card":  {re: regexp.MustCompile(`\b(?:\d[ -]?){12,18}\d\b`), quick: hasDigitRun, luhn: true},
	"bearer_token": {re: regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)`), group: true, quick: func(s string) bool { return strings.Contains(s, "earer") || strings.Contains(s, "EARER") }},
	"email":        {re: regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`), quick: func(s string) bool { return strings.IndexByte(s, '@') >= 0 }},
}

func hasDigitRun(s string) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			run++
			if run >= 13 {
				return true
			}
		case c == ' ' || c == '-':
		default:
			run = 0
		}
	}
	return false
}

// Validate checks o and fills defaults.
func (o *RedactOptions) Validate() error {
	_, err := o.compile()
	return err
}

func (o *RedactOptions) compile() ([]redactor, error) {
	var errs []error
	var rs []redactor
	for i, p := range o.Presets {
		r, ok := redactPresets[p]
		if !ok {
			errs = append(errs, config.Fieldf(fmt.Sprintf("presets[%d]", i), "unknown preset %q (known: bearer_token, credit_card, email)", p))
			continue
		}
		rs = append(rs, r)
	}
	for i, p := range o.Patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			errs = append(errs, config.Fieldf(fmt.Sprintf("patterns[%d]", i), "%v", err))
			continue
		}
		rs = append(rs, redactor{re: re, group: re.NumSubexp() > 0})
	}
	if len(o.Presets)+len(o.Patterns)+len(o.Keys) == 0 {
		errs = append(errs, config.Fieldf("", "give presets, patterns or keys"))
	}
	switch o.Mode {
	case "":
		o.Mode = "mask"
	case "mask", "hash":
	default:
		errs = append(errs, config.Fieldf("mode", "must be mask or hash, got %q", o.Mode))
	}
	if o.Mask == "" {
		o.Mask = "[REDACTED]"
	}
	return rs, errors.Join(errs...)
}

// Redact returns a stage that redacts the body (when a string, or the string
// values of a map body) and the string attributes of every record: values
// of the listed keys entirely, and whatever the presets and patterns match.
// Resources are not touched. A value with no match costs a cheap check per
// preset and a regexp scan per pattern, without allocating; a redacted value
// is rebuilt in the batch's arena (the match positions allocate).
func Redact(o RedactOptions) (pipe.Stage, error) {
	rs, err := o.compile()
	if err != nil {
		return nil, err
	}
	keys := make(map[string]bool, len(o.Keys))
	for _, k := range o.Keys {
		keys[strings.ToLower(k)] = true
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		rd := &redaction{rs: rs, keys: keys, hash: o.Mode == "hash", mask: o.Mask, salt: o.Salt}
		return pipe.Records(func(b *event.Batch, r *event.Record) bool {
			rd.value(b, &r.Body, false)
			for i := range r.Attrs {
				rd.value(b, &r.Attrs[i].Value, rd.secretKey(r.Attrs[i].Key))
			}
			return true
		})(in)
	}, nil
}

type redaction struct {
	rs   []redactor
	keys map[string]bool
	hash bool
	mask string
	salt string
	buf  []byte
	low  []byte
}

func (rd *redaction) secretKey(k string) bool {
	if len(rd.keys) == 0 || len(k) > 64 {
		return false
	}
	rd.low = rd.low[:0]
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		rd.low = append(rd.low, c)
	}
	return rd.keys[string(rd.low)]
}

func (rd *redaction) value(b *event.Batch, v *event.Value, whole bool) {
	switch v.Kind {
	case event.KindString:
		if whole {
			rd.buf = rd.replacement(rd.buf[:0], v.Str)
			v.Str = b.Copy(rd.buf)
			return
		}
		if s, ok := rd.text(b, v.Str); ok {
			v.Str = s
		}
	case event.KindMap:
		for i := range v.List {
			rd.value(b, &v.List[i].Value, whole || rd.secretKey(v.List[i].Key))
		}
	case event.KindArray:
		for i := range v.List {
			rd.value(b, &v.List[i].Value, whole)
		}
	case event.KindInt, event.KindDouble:
		if whole {
			*v = event.String(rd.mask)
		}
	}
}

// text applies the patterns to s; ok is false when nothing matched.
func (rd *redaction) text(b *event.Batch, s string) (string, bool) {
	changed := false
	for _, r := range rd.rs {
		if r.quick != nil && !r.quick(s) {
			continue
		}
		if !r.re.MatchString(s) {
			continue
		}
		idx := r.re.FindAllStringSubmatchIndex(s, -1)
		out := rd.buf[:0]
		last := 0
		for _, m := range idx {
			start, end := m[0], m[1]
			if r.group && len(m) >= 4 && m[2] >= 0 {
				start, end = m[2], m[3]
			}
			if r.luhn && !luhnValid(s[start:end]) {
				continue
			}
			out = append(out, s[last:start]...)
			out = rd.replacement(out, s[start:end])
			last = end
		}
		if last == 0 {
			continue
		}
		out = append(out, s[last:]...)
		rd.buf = out
		s = b.Copy(out)
		changed = true
	}
	return s, changed
}

func (rd *redaction) replacement(dst []byte, secret string) []byte {
	if !rd.hash {
		return append(dst, rd.mask...)
	}
	h := sha256.New()
	h.Write([]byte(rd.salt))
	h.Write([]byte(secret))
	var sum [sha256.Size]byte
	return hex.AppendEncode(dst, h.Sum(sum[:0])[:8])
}

// luhnValid checks the Luhn digit of a card number (spaces and dashes ignored).
func luhnValid(s string) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c == ' ' || c == '-' {
			continue
		}
		d := int(c - '0')
		if n%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && sum%10 == 0
}
