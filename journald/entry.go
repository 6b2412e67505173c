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
	fieldHostname = "_HOSTNAME"
	fieldBootID   = "_BOOT_ID"
)

// maxInterned bounds the table of field names shared by every record; names
// beyond it are copied into each batch's arena.
const maxInterned = 4096

// maxHosts bounds the resources kept for the host names entries carry;
// past it a new host's resource is built for each record.
const maxHosts = 256

// decoder turns journal entries into records, through one mapping of
// fields shared by both readers: the lines journalctl prints with
// --output=json ([decoder.entry]) and the entries of journal files
// ([decoder.begin], [decoder.field]). One decoder serves one source's
// goroutine; it is not safe for concurrent use.
type decoder struct {
	p       fastjson.Parser
	names   map[string]int // interned field names: index into list and seen
	list    []string
	seen    []uint32        // per interned name: the record (gen) that last had it
	gen     uint32          // the record being decoded
	scratch []byte          // bytes of a binary field
	cursor  []byte          // __CURSOR of the last entry decoded
	keep    map[string]bool // the fields kept as attributes; nil: all
	res     *event.Resource // the source's resource
	hosts   map[string]*event.Resource
}

// newDecoder returns a decoder keeping the fields named as attributes, or
// every field when none is. res is the source's resource: a record of an
// entry with _HOSTNAME gets res with host.name set to it.
func newDecoder(res *event.Resource, fields ...string) *decoder {
	d := &decoder{names: map[string]int{}, res: res, hosts: map[string]*event.Resource{}}
	if len(fields) > 0 {
		d.keep = map[string]bool{}
		for _, f := range fields {
			d.keep[f] = true
		}
	}
	return d
}

// entry appends the record of one journal entry, the JSON object in line
// (without its newline), to b, through the mapping of [decoder.field]
// (journalctl prints a field that is not printable text as an array of
// byte values, and a field the entry holds more than once as an array).
// A line that is not a JSON object becomes a record with the line as body,
// flagged ParseError. It reports whether the entry had a cursor, then held
// in d.cursor until the next call. Strings are copied into b's arena; line
// may be reused.
func (d *decoder) entry(b *event.Batch, line []byte, observed int64) (hasCursor bool) {
	v, err := d.p.ParseBytes(line)
	var obj *fastjson.Object
	if err == nil {
		obj, err = v.Object()
	}
	r := d.begin(b, observed)
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
		case fieldCursor:
			if s, err := v.StringBytes(); err == nil {
				d.cursor = append(d.cursor[:0], s...)
				hasCursor = true
			}
			return
		case fieldRealtime:
			if s, err := v.StringBytes(); err == nil {
				if us, err := strconv.ParseInt(string(s), 10, 64); err == nil {
					r.Time = us * 1000
				}
			}
			return
		}
		switch v.Type() {
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			d.field(b, r, key, s)
		case fastjson.TypeNumber:
			d.field(b, r, key, v.MarshalTo(d.scratch[:0]))
		case fastjson.TypeArray:
			elems, _ := v.Array()
			if len(elems) > 0 && elems[0].Type() == fastjson.TypeNumber {
				d.field(b, r, key, d.bytes(elems))
				return
			}
			for _, e := range elems {
				switch e.Type() {
				case fastjson.TypeString:
					s, _ := e.StringBytes()
					d.field(b, r, key, s)
				case fastjson.TypeArray:
					arr, _ := e.Array()
					d.field(b, r, key, d.bytes(arr))
				}
			}
		}
	})
	return hasCursor
}

// bytes returns the bytes of a JSON array of byte values, valid until the
// next call.
func (d *decoder) bytes(elems []*fastjson.Value) []byte {
	d.scratch = d.scratch[:0]
	for _, e := range elems {
		n, _ := e.Int()
		d.scratch = append(d.scratch, byte(n))
	}
	return d.scratch
}

// begin appends the record of a new entry to b; its fields follow through
// field.
func (d *decoder) begin(b *event.Batch, observed int64) *event.Record {
	r := b.Next()
	r.Observed = observed
	d.gen++
	if d.gen == 0 {
		clear(d.seen)
		d.gen = 1
	}
	return r
}

// field maps one field of an entry onto its record r: MESSAGE is the body,
// PRIORITY the severity; _HOSTNAME also sets the resource's host.name;
// every other field not starting with "__" is an attribute named as in the
// journal (only those in Options.Fields when set), a string, or a bytes
// value when it is not UTF-8 (a MESSAGE that is not UTF-8 stays the body,
// flagged InvalidUTF8). A field the entry holds more than once is an array
// of its values. Strings are copied into b's arena; val may be reused.
func (d *decoder) field(b *event.Batch, r *event.Record, key, val []byte) {
	switch string(key) {
	case fieldMessage:
		if r.Body.Kind != event.KindEmpty {
			break // repeated: kept as the first
		}
		s := b.Copy(val)
		if utf8.ValidString(s) {
			r.SetValidBody(s)
		} else {
			r.Body = event.String(s)
			r.Flags |= event.InvalidUTF8
		}
		return
	case fieldPriority:
		if len(val) == 1 {
			r.Severity, r.SeverityText, _ = parse.SyslogSeverity(int(val[0]) - '0')
		}
		return
	case fieldHostname:
		d.host(r, val)
	}
	if len(key) >= 2 && key[0] == '_' && key[1] == '_' {
		return // addresses: cursor, monotonic time, sequence numbers
	}
	if d.keep != nil && !d.keep[string(key)] {
		return
	}
	s := b.Copy(val)
	v := event.String(s)
	if !utf8.ValidString(s) {
		v = event.Bytes(s)
	}
	name, repeated := d.name(b, key)
	if repeated {
		for i := len(r.Attrs) - 1; i >= 0; i-- {
			a := &r.Attrs[i]
			if a.Key != name {
				continue
			}
			if a.Value.Kind == event.KindArray {
				a.Value = event.Array(append(a.Value.List, event.KeyValue{Value: v}))
			} else {
				a.Value = event.Array([]event.KeyValue{{Value: a.Value}, {Value: v}})
			}
			return
		}
	}
	r.Attrs = append(r.Attrs, event.KeyValue{Key: name, Value: v})
}

// host sets r's resource to the source's with host.name set to the entry's
// host name.
func (d *decoder) host(r *event.Record, name []byte) {
	res, ok := d.hosts[string(name)]
	if !ok {
		var attrs []event.KeyValue
		if d.res != nil {
			attrs = append(attrs, d.res.Attrs...)
		}
		res = &event.Resource{Attrs: event.Set(attrs, "host.name", event.String(string(name)))}
		if len(d.hosts) < maxHosts {
			d.hosts[string(name)] = res
		}
	}
	r.Resource = res
}

// name returns the interned field name (or a copy in b's arena once the
// table is full) and whether the record being decoded had it already (for
// a name that is not interned: whether it might have).
func (d *decoder) name(b *event.Batch, key []byte) (string, bool) {
	if i, ok := d.names[string(key)]; ok {
		repeated := d.seen[i] == d.gen
		d.seen[i] = d.gen
		return d.list[i], repeated
	}
	if len(d.names) >= maxInterned {
		return b.Copy(key), true
	}
	s := string(key)
	d.names[s] = len(d.list)
	d.list = append(d.list, s)
	d.seen = append(d.seen, d.gen)
	return s, false
}
