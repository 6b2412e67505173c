package journald

import (
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/parse"
)

// Journal fields with a meaning of their own: they become the record's
// body, time and severity, or the source's position, not attributes.
const (
	fieldMessage  = "MESSAGE"
	fieldPriority = "PRIORITY"
	fieldCursor   = "__CURSOR"
	fieldRealtime = "__REALTIME_TIMESTAMP"
)

// maxInterned bounds the table of field names shared by every record; names
// beyond it are copied into each batch's arena.
const maxInterned = 4096

// decoder turns the lines journalctl prints with --output=json into
// records. One decoder serves one source's goroutine; it is not safe for
// concurrent use.
type decoder struct {
	p       fastjson.Parser
	names   map[string]string // interned field names
	scratch []byte            // bytes of a binary field
	cursor  []byte            // __CURSOR of the last entry decoded
	keep    map[string]bool   // the fields kept as attributes; nil: all
}

// newDecoder returns a decoder keeping the fields named as attributes, or
// every field when none is.
func newDecoder(fields ...string) *decoder {
	d := &decoder{names: map[string]string{}}
	if len(fields) > 0 {
		d.keep = map[string]bool{}
		for _, f := range fields {
			d.keep[f] = true
		}
	}
	return d
}

// entry appends the record of one journal entry, the JSON object in line
// (without its newline), to b. The record's body is MESSAGE, its time
// __REALTIME_TIMESTAMP and its severity PRIORITY; every other field not
// starting with "__" is an attribute named as in the journal, with a string
// value (an array of values for a field the entry holds more than once).
// A field holding bytes that are not UTF-8 is a bytes attribute; such a
// message is kept with the record flagged InvalidUTF8. A line that is not a
// JSON object becomes a record with the line as body, flagged ParseError.
// It reports whether the entry had a cursor, then held in d.cursor until
// the next call. Strings are copied into b's arena; line may be reused.
func (d *decoder) entry(b *event.Batch, line []byte, observed int64) (hasCursor bool) {
	r := b.Next()
	r.Observed = observed
	v, err := d.p.ParseBytes(line)
	var obj *fastjson.Object
	if err == nil {
		obj, err = v.Object()
	}
	if err != nil {
		r.Body = event.String(b.Copy(line))
		r.Flags |= event.ParseError
		if !utf8.Valid(line) {
			r.Flags |= event.InvalidUTF8
		}
		return false
	}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case fieldMessage:
			r.Body = d.value(b, r, v, true)
		case fieldCursor:
			if s, err := v.StringBytes(); err == nil {
				d.cursor = append(d.cursor[:0], s...)
				hasCursor = true
			}
		case fieldRealtime:
			if s, err := v.StringBytes(); err == nil {
				if us, err := strconv.ParseInt(string(s), 10, 64); err == nil {
					r.Time = us * 1000
				}
			}
		case fieldPriority:
			if s, err := v.StringBytes(); err == nil && len(s) == 1 {
				r.Severity, r.SeverityText, _ = parse.SyslogSeverity(int(s[0]) - '0')
			}
		default:
			if len(key) >= 2 && key[0] == '_' && key[1] == '_' {
				return // addresses: cursor, monotonic time, sequence numbers
			}
			if v.Type() == fastjson.TypeNull || d.keep != nil && !d.keep[string(key)] {
				return
			}
			r.Attrs = append(r.Attrs, event.KeyValue{Key: d.name(b, key), Value: d.value(b, r, v, false)})
		}
	})
	return hasCursor
}

// name returns the interned field name, or a copy in b's arena once the
// table is full.
func (d *decoder) name(b *event.Batch, key []byte) string {
	if s, ok := d.names[string(key)]; ok {
		return s
	}
	if len(d.names) >= maxInterned {
		return b.Copy(key)
	}
	s := string(key)
	d.names[s] = s
	return s
}

// value converts a field's JSON value: a string; an array of byte values
// (journalctl's form for data that is not printable UTF-8); an array of
// either (a field present several times in the entry). For the body, bytes
// that are not UTF-8 stay a string and flag the record; for an attribute
// they become a bytes value.
func (d *decoder) value(b *event.Batch, r *event.Record, v *fastjson.Value, body bool) event.Value {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		str := b.Copy(s)
		if body {
			r.SetValidBody(str)
			return r.Body
		}
		return event.String(str)
	case fastjson.TypeArray:
		elems, _ := v.Array()
		if len(elems) > 0 && elems[0].Type() == fastjson.TypeNumber {
			d.scratch = d.scratch[:0]
			for _, e := range elems {
				n, _ := e.Int()
				d.scratch = append(d.scratch, byte(n))
			}
			str := b.Copy(d.scratch)
			switch {
			case utf8.ValidString(str) && body:
				r.SetValidBody(str)
				return r.Body
			case utf8.ValidString(str):
				return event.String(str)
			case body:
				r.Flags |= event.InvalidUTF8
				return event.String(str)
			}
			return event.Bytes(str)
		}
		list := make([]event.KeyValue, 0, len(elems))
		for _, e := range elems {
			list = append(list, event.KeyValue{Value: d.value(b, r, e, false)})
		}
		return event.Array(list)
	case fastjson.TypeNumber:
		return event.String(b.Copy(v.MarshalTo(d.scratch[:0])))
	}
	return event.Value{}
}
