package parse

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson/fastfloat"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// JSONOptions configure the json parser.
type JSONOptions struct {
	Options `yaml:",inline"`
}

// JSON returns a stage that parses each record's string body as a JSON
// object (RFC 8259, with two extensions that loggers emit: raw control
// characters inside strings, and the numbers NaN, Infinity and -Infinity). Top-level fields become attributes (or the body, see
// [Options.Target]); nested objects and arrays are kept as map and array
// values; integers stay integers, other numbers become doubles, null becomes
// an empty value. A body that is not a JSON object is a parse error. now
// supplies the year for timestamp layouts without one.
func JSON(o JSONOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	p, err := NewJSONParser(o, now, drops)
	if err != nil {
		return nil, err
	}
	return p.Stage(), nil
}

// NewJSONParser returns the parser of [JSON], to run as a stage or one batch
// at a time.
func NewJSONParser(o JSONOptions, now func() time.Time, drops DropFunc) (*Parser, error) {
	f, err := newFields(o.Options, now, drops)
	if err != nil {
		return nil, optionsError("json", err)
	}
	return newRecordParser(f, func() recordParser { return &jsonParser{toBody: f.toBody} }), nil
}

// jsonParser is a single-pass JSON scanner that builds values as it reads.
//
// Ownership: the body is a string that lives as long as the batch (in its
// arena), so string values without escapes are substrings of it; strings
// with escapes are unescaped into buf and copied into the batch's arena.
// Keys are interned heap strings (or arena copies once the interner is
// full), never substrings of the body.
type jsonParser struct {
	slab slab
	keys interner
	// seen[n] is the interned key last read as the n-th key of a line, in
	// document order: lines of one file tend to repeat their keys, so one
	// comparison usually finds the interned key without a map lookup.
	seen [jsonSeenKeys]string
	nkey int
	// stack holds the members of the maps and arrays being read; a
	// finished one is copied to the slab.
	stack  []event.KeyValue
	buf    []byte
	toBody bool
	// members is how many members the last object read into a record's
	// attributes had: a record with less room grows by that much at once,
	// not by doubling (a pooled record keeps what it grew to).
	members int
}

const (
	errNotString = "parse: body is not a string"
	errJSON      = "parse json: invalid JSON"
	errNotObject = "parse json: not an object"
)

const (
	// jsonMaxDepth bounds nesting (the top-level value is at depth 1), so
	// that a line cannot make the scanner recurse without limit.
	jsonMaxDepth = 300
	jsonSeenKeys = 64
)

func (j *jsonParser) parse(b *event.Batch, r *event.Record) (string, bool) {
	if r.Body.Kind != event.KindString {
		return errNotString, false
	}
	s := r.Body.Str
	j.nkey = 0
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		// Read the value anyway: valid JSON that is not an object is a
		// different error than invalid JSON.
		_, i, ok := j.value(b, s, i, 0)
		if !ok || skipSpace(s, i) != len(s) {
			return j.fail(errJSON)
		}
		return j.fail(errNotObject)
	}
	if !j.toBody {
		had := len(r.Attrs)
		if cap(r.Attrs)-had < j.members {
			r.Attrs = slices.Grow(r.Attrs, j.members)
		}
		i, ok := j.object(b, s, i+1, 1, &r.Attrs)
		if !ok || skipSpace(s, i) != len(s) {
			return j.fail(errJSON)
		}
		j.members = len(r.Attrs) - had
		return "", true
	}
	i, ok := j.object(b, s, i+1, 1, &j.stack)
	if !ok || skipSpace(s, i) != len(s) {
		return j.fail(errJSON)
	}
	r.Body = event.Map(j.pop(0))
	return "", true
}

// fields reads the JSON object s and returns its members, valid until the
// next call of fail (which the caller makes when done with them), or false.
func (j *jsonParser) fields(b *event.Batch, s string) ([]event.KeyValue, bool) {
	j.nkey = 0
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return nil, false
	}
	i, ok := j.object(b, s, i+1, 1, &j.stack)
	if !ok || skipSpace(s, i) != len(s) {
		return nil, false
	}
	return j.stack, true
}

// fail drops what a failed line left on the stack; the caller restores the
// record.
func (j *jsonParser) fail(msg string) (string, bool) {
	clear(j.stack)
	j.stack = j.stack[:0]
	return msg, false
}

// pop moves the stack's entries from start on to a slab slice.
func (j *jsonParser) pop(start int) []event.KeyValue {
	list := j.slab.take(len(j.stack) - start)
	copy(list, j.stack[start:])
	clear(j.stack[start:])
	j.stack = j.stack[:start]
	return list
}

// value reads the JSON value at s[i:] (after optional whitespace) whose
// container is at depth. It returns the value and the index after it.
func (j *jsonParser) value(b *event.Batch, s string, i, depth int) (event.Value, int, bool) {
	depth++
	i = skipSpace(s, i)
	if depth > jsonMaxDepth || i >= len(s) {
		return event.Value{}, i, false
	}
	switch c := s[i]; {
	case c == '"':
		str, i, ok := j.str(b, s, i+1)
		return event.String(str), i, ok
	case c == '-' || c-'0' <= 9:
		return scanNumber(s, i)
	case c == '{':
		start := len(j.stack)
		i, ok := j.object(b, s, i+1, depth, &j.stack)
		if !ok {
			return event.Value{}, i, false
		}
		return event.Map(j.pop(start)), i, true
	case c == '[':
		start := len(j.stack)
		i, ok := j.array(b, s, i+1, depth)
		if !ok {
			return event.Value{}, i, false
		}
		return event.Array(j.pop(start)), i, true
	case c == 't':
		if len(s)-i >= 4 && s[i:i+4] == "true" {
			return event.Bool(true), i + 4, true
		}
	case c == 'f':
		if len(s)-i >= 5 && s[i:i+5] == "false" {
			return event.Bool(false), i + 5, true
		}
	case c == 'n':
		if len(s)-i >= 4 && s[i:i+4] == "null" {
			return event.Value{}, i + 4, true
		}
	case c == 'N':
		if strings.HasPrefix(s[i:], "NaN") {
			return event.Double(math.NaN()), i + 3, true
		}
	case c == 'I':
		if strings.HasPrefix(s[i:], "Infinity") {
			return event.Double(math.Inf(1)), i + len("Infinity"), true
		}
	}
	return event.Value{}, i, false
}

// object reads the members of an object whose '{' is just before s[i],
// appending them to *dst, and returns the index after its '}'. dst is the
// stack or a record's attributes; nested values use the stack above its
// current length.
func (j *jsonParser) object(b *event.Batch, s string, i, depth int, dst *[]event.KeyValue) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return i, false
		}
		k, i2, ok := j.key(b, s, i+1)
		i = skipSpace(s, i2)
		if !ok || i >= len(s) || s[i] != ':' {
			return i, false
		}
		v, i2, ok := j.value(b, s, i+1, depth)
		if !ok {
			return i2, false
		}
		*dst = append(*dst, event.KeyValue{Key: k, Value: v})
		i = skipSpace(s, i2)
		if i >= len(s) {
			return i, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// array reads the elements of an array whose '[' is just before s[i] onto
// the stack and returns the index after its ']'.
func (j *jsonParser) array(b *event.Batch, s string, i, depth int) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	for {
		v, i2, ok := j.value(b, s, i, depth)
		if !ok {
			return i2, false
		}
		j.stack = append(j.stack, event.KeyValue{Value: v})
		i = skipSpace(s, i2)
		if i >= len(s) {
			return i, false
		}
		switch s[i] {
		case ',':
			i++
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// key reads the object key whose opening quote is just before s[i] and
// returns it interned.
func (j *jsonParser) key(b *event.Batch, s string, i int) (string, int, bool) {
	end, esc, ok := scanString(s, i)
	if !ok {
		return "", end, false
	}
	k := s[i:end]
	if esc {
		if k, ok = j.unescape(s[i:end]); !ok {
			return "", end, false
		}
	}
	n := j.nkey
	j.nkey++
	if n < len(j.seen) {
		if j.seen[n] == k {
			return j.seen[n], end + 1, true
		}
		if in, ok := j.keys.intern(k); ok {
			j.seen[n] = in
			return in, end + 1, true
		}
	}
	return j.keys.key(b, k), end + 1, true
}

// str reads the string whose opening quote is just before s[i]. Without
// escapes it is a substring of s.
func (j *jsonParser) str(b *event.Batch, s string, i int) (string, int, bool) {
	end, esc, ok := scanString(s, i)
	if !ok {
		return "", end, false
	}
	if !esc {
		return s[i:end], end + 1, true
	}
	u, ok := j.unescape(s[i:end])
	if !ok {
		return "", end, false
	}
	return b.CopyString(u), end + 1, true
}

// scanString finds the closing quote of the string that starts at s[i]. It
// reports whether the string has escapes, and fails on an unterminated
// string. Escapes are checked by unescape. Control characters are kept as
// they are: some loggers write raw tabs and newlines into strings.
func scanString(s string, i int) (end int, esc bool, ok bool) {
	for {
		i = nextSpecial(s, i)
		if i >= len(s) {
			return len(s), esc, false
		}
		switch s[i] {
		case '"':
			return i, esc, true
		default: // '\\'
			esc = true
			i += 2
		}
	}
}

// nextSpecial returns the index of the first quote or backslash at or after
// s[i], or len(s). It tests eight bytes at a time.
func nextSpecial(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := specialMask(load64(s, i)); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specialMask sets the high bit of the bytes of w (little endian) that are a
// quote or a backslash. Above the first such byte,
// other bits may be set too (a borrow carries over); the lowest set bit is
// always exact.
func specialMask(w uint64) uint64 {
	quote := w ^ ('"' * ones)
	bslash := w ^ ('\\' * ones)
	return ((quote-ones)&^quote | (bslash-ones)&^bslash) & highs
}

// load64 reads s[i:i+8] as a little-endian word; the caller checks bounds.
func load64(s string, i int) uint64 {
	p := unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i)
	b := (*[8]byte)(p)
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// unescape decodes the escapes of the inside of a string into j.buf and
// returns it as a string valid until the next unescape. An unknown escape
// or a \u without four hex digits fails; a surrogate escape that is not
// half of a pair becomes U+FFFD. Other bytes, including invalid UTF-8, are
// kept as they are.
func (j *jsonParser) unescape(s string) (string, bool) {
	buf := j.buf[:0]
	for {
		n := strings.IndexByte(s, '\\')
		if n < 0 {
			break
		}
		buf = append(buf, s[:n]...)
		if n+1 >= len(s) {
			return "", false
		}
		c := s[n+1]
		s = s[n+2:]
		if e := jsonEscapes[c]; e != 0 {
			buf = append(buf, e)
			continue
		}
		if c != 'u' {
			return "", false
		}
		r, ok := hex4(s)
		if !ok {
			return "", false
		}
		s = s[4:]
		if r >= 0xd800 && r < 0xdc00 && len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
			if lo, ok := hex4(s[2:]); ok && lo >= 0xdc00 && lo < 0xe000 {
				r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				s = s[6:]
			}
		}
		// A lone surrogate is not a rune: AppendRune writes U+FFFD.
		buf = utf8.AppendRune(buf, r)
	}
	j.buf = append(buf, s...)
	return unsafeString(j.buf), true
}

// jsonEscapes maps the character after a backslash to the byte it stands
// for; zero for \u and invalid escapes.
var jsonEscapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// hex4 decodes the four hex digits at the start of s.
func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[:4]) {
		switch {
		case c-'0' <= 9:
			c -= '0'
		case c|0x20-'a' <= 5:
			c = c | 0x20 - 'a' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// scanNumber reads the number at s[i:]: integers of up to 18 characters
// (sign included) are KindInt, everything else KindDouble.
func scanNumber(s string, i int) (event.Value, int, bool) {
	start := i
	neg := s[i] == '-'
	if neg {
		i++
		if strings.HasPrefix(s[i:], "Infinity") {
			return event.Double(math.Inf(-1)), i + len("Infinity"), true
		}
	}
	var n int64
	switch {
	case i >= len(s):
		return event.Value{}, i, false
	case s[i] == '0':
		i++
	case s[i]-'1' <= 8:
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
			n = n*10 + int64(s[i]-'0')
		}
	default:
		return event.Value{}, i, false
	}
	isInt := true
	if i < len(s) && s[i] == '.' {
		isInt = false
		i++
		if i >= len(s) || s[i]-'0' > 9 {
			return event.Value{}, i, false
		}
		for i < len(s) && s[i]-'0' <= 9 {
			i++
		}
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		isInt = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i]-'0' > 9 {
			return event.Value{}, i, false
		}
		for i < len(s) && s[i]-'0' <= 9 {
			i++
		}
	}
	// n overflows only past 18 digits, where the number is a double.
	if isInt && i-start <= 18 {
		if neg {
			n = -n
		}
		return event.Int(n), i, true
	}
	return event.Double(fastfloat.ParseBestEffort(s[start:i])), i, true
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(s string, i int) int {
	for i < len(s) && s[i] <= ' ' && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
		i++
	}
	return i
}
