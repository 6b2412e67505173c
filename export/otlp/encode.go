package otlp

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
	"github.com/logpump/logpump/internal/ascii"
)

// ScopeName is the instrumentation scope of every record logpump sends.
const ScopeName = "logpump"

// Field numbers of the OTLP messages the encoder writes
// (opentelemetry/proto/{collector/logs,logs,common,resource}/v1).
const (
	fRequestResourceLogs = 1 // ExportLogsServiceRequest.resource_logs

	fResourceLogsResource  = 1 // ResourceLogs.resource
	fResourceLogsScopeLogs = 2 // ResourceLogs.scope_logs

	fResourceAttributes = 1 // Resource.attributes

	fScopeLogsScope   = 1 // ScopeLogs.scope
	fScopeLogsRecords = 2 // ScopeLogs.log_records

	fScopeName = 1 // InstrumentationScope.name

	fRecordTime         = 1  // LogRecord.time_unix_nano, fixed64
	fRecordSeverity     = 2  // LogRecord.severity_number, varint
	fRecordSeverityText = 3  // LogRecord.severity_text
	fRecordBody         = 5  // LogRecord.body
	fRecordAttributes   = 6  // LogRecord.attributes
	fRecordTraceID      = 9  // LogRecord.trace_id
	fRecordSpanID       = 10 // LogRecord.span_id
	fRecordObserved     = 11 // LogRecord.observed_time_unix_nano, fixed64

	fKeyValueKey   = 1 // KeyValue.key
	fKeyValueValue = 2 // KeyValue.value

	fAnyString = 1 // AnyValue.string_value
	fAnyBool   = 2 // AnyValue.bool_value
	fAnyInt    = 3 // AnyValue.int_value
	fAnyDouble = 4 // AnyValue.double_value, fixed64
	fAnyArray  = 5 // AnyValue.array_value
	fAnyKVList = 6 // AnyValue.kvlist_value
	fAnyBytes  = 7 // AnyValue.bytes_value

	fListValues = 1 // ArrayValue.values, KeyValueList.values
)

// Every field number above is below 16, so each tag is one byte.
const tagLen = 1

// scopeMessage is the encoded InstrumentationScope{name: ScopeName}.
var scopeMessage = string(protowire.AppendString(protowire.AppendTag(nil, fScopeName, protowire.BytesType), ScopeName))

// AppendRequest appends to dst an OTLP ExportLogsServiceRequest holding the
// records of batches and returns the extended buffer. It reads the records in
// place and allocates nothing per record.
//
// Records are grouped by resource (the record's own Resource, else its
// batch's; compared by pointer) into one ResourceLogs per resource, in order
// of first appearance, each with one ScopeLogs of scope [ScopeName]; records
// keep their order within a resource. A nil resource is sent as an absent
// Resource. Zero-valued fields are omitted, as proto3 does. Invalid UTF-8 in
// a string field (body, attribute keys and string values, severity text,
// resource attributes) is replaced by U+FFFD per run of bad bytes, as
// strings.ToValidUTF8 does, so that no record can make a request fail; bytes
// values are sent as they are. event.Flags (truncated, parse error...) are
// not OTLP trace flags and are not sent.
func AppendRequest(dst []byte, batches []*event.Batch) []byte {
	dst, _ = appendRequest(dst, batches)
	return dst
}

// Encoder encodes requests as AppendRequest does, reusing its scratch space
// from one request to the next. The zero value is ready; an Encoder is not
// safe for concurrent use.
type Encoder struct{ e encoder }

// AppendRequest appends the request for batches to dst (see [AppendRequest]).
func (x *Encoder) AppendRequest(dst []byte, batches []*event.Batch) []byte {
	return x.e.appendRequest(dst, batches)
}

// appendRequest is AppendRequest that also reports how many strings held
// invalid UTF-8 and were replaced.
func appendRequest(dst []byte, batches []*event.Batch) ([]byte, int) {
	var e encoder
	dst = e.appendRequest(dst, batches)
	return dst, e.invalid
}

func resourceOf(b *event.Batch, r *event.Record) *event.Resource {
	if r.Resource != nil {
		return r.Resource
	}
	return b.Resource
}

// encoder writes a request back to front in one pass: every message's
// fields are written last field first, and its tag and length are then put
// in front of them, when the length is known. Nothing is sized in advance and
// every string is checked for UTF-8 once. The request stays in the
// encoder's buffer, which is reused from one request to the next (the
// clients send it from there); an encoder is not safe for concurrent use.
type encoder struct {
	invalid int // strings whose invalid UTF-8 was replaced, this request
	records int // records of a part (bufferPool.part)
	// buf[pos:] is what has been written so far; it grows towards the front.
	buf []byte
	pos int
	// kvs remembers the last few string attributes written. The same
	// attribute (same key and value strings, e.g. log.file.path on every
	// record of a batch) is then copied from where it was first written.
	kvs       [4]kvEntry
	kvN       int
	sanitized []byte // scratch for strings with invalid UTF-8
	// rec is the record being written: strings cut from its checked body
	// need no UTF-8 check.
	rec *event.Record
	// keys holds attribute keys found valid in this request, by address:
	// the same few keys (interned by parsers, or constants) come back on
	// every record.
	keys [32]string // 16 sets of two
}

// kvEntry is one remembered attribute field: its tag, its strings (by
// address and length), and where its bytes lie, as distances from the end of
// the request (which do not change as the request grows towards the front).
type kvEntry struct {
	num      protowire.Number
	key, val string
	from, to int
}

// lookupKV returns the remembered entry for kv written as field num, or nil.
// Strings match by address and length: equal pointers mean equal bytes, and
// a comparison of contents would cost as much as encoding.
func (e *encoder) lookupKV(num protowire.Number, kv *event.KeyValue) *kvEntry {
	if kv.Value.Kind != event.KindString || e.kvN == 0 {
		return nil
	}
	for i := range e.kvs[:min(e.kvN, len(e.kvs))] {
		c := &e.kvs[i]
		if c.num == num && sameString(c.key, kv.Key) && sameString(c.val, kv.Value.Str) {
			return c
		}
	}
	return nil
}

func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

func (e *encoder) appendRequest(dst []byte, batches []*event.Batch) []byte {
	e.encode(batches)
	return append(dst, e.request()...)
}

// request is the request written by the last encode; it stays valid until
// the next.
func (e *encoder) request() []byte { return e.buf[e.pos:] }

// encode writes the request for batches in the encoder's own buffer.
func (e *encoder) encode(batches []*event.Batch) {
	e.begin()
	e.resources(batches)
	e.end()
}

// encodeParts writes the request for batches in the encoder's own buffer,
// where parts[i], when not nil, is an encoder holding batch i encoded on
// its own (a part, see [GRPCClient.EncodePart]) and batch i is not read.
// Records keep the order of their batches: a part is copied where its batch
// stands, and each run of batches between parts is grouped by resource as
// encode groups. The concatenation is one request because every message the
// parts and the runs hold is a repeated field of it.
func (e *encoder) encodeParts(batches []*event.Batch, parts []export.Part) {
	e.begin()
	end := len(batches)
	for i := len(batches) - 1; i >= -1; i-- {
		if i >= 0 && parts[i] == nil {
			continue
		}
		if i+1 < end {
			e.resources(batches[i+1 : end])
		}
		if i >= 0 {
			p := parts[i].(*encoder).request()
			e.room(len(p))
			e.pos -= len(p)
			copy(e.buf[e.pos:], p)
		}
		end = i
	}
	e.end()
}

// begin starts a request.
func (e *encoder) begin() {
	e.invalid, e.kvN = 0, 0
	e.pos = len(e.buf)
}

// end finishes a request: it drops the strings remembered of its records,
// as a recycled arena may hold other bytes at the same addresses in the
// next request.
func (e *encoder) end() {
	e.kvs, e.keys = [len(e.kvs)]kvEntry{}, [len(e.keys)]string{}
}

// resources writes, in front of what is written, one ResourceLogs for
// each resource of batches' records (see [AppendRequest]).
func (e *encoder) resources(batches []*event.Batch) {
	var buf [16]*event.Resource
	resources := buf[:0]
	var last *event.Resource
	first := true
	for _, b := range batches {
		for i := range b.Records {
			res := resourceOf(b, &b.Records[i])
			if !first && res == last {
				continue
			}
			first, last = false, res
			if !slices.Contains(resources, res) {
				resources = append(resources, res)
			}
		}
	}
	for _, res := range slices.Backward(resources) {
		e.resourceLogs(batches, res)
	}
}

// written is how many bytes have been written: a message's length is the
// difference between two readings.
func (e *encoder) written() int { return len(e.buf) - e.pos }

// room makes room for n more bytes in front of what was written.
func (e *encoder) room(n int) {
	if n > e.pos {
		e.grow(n)
	}
}

func (e *encoder) grow(n int) {
	used := e.written()
	size := max(2*len(e.buf), used+n, 4096)
	buf := make([]byte, size)
	copy(buf[size-used:], e.buf[e.pos:])
	e.buf, e.pos = buf, size-used
}

// varint writes v in front.
func (e *encoder) varint(v uint64) {
	if v < 0x80 {
		e.room(1)
		e.pos--
		e.buf[e.pos] = byte(v)
		return
	}
	n := protowire.SizeVarint(v)
	e.room(n)
	e.pos -= n
	protowire.AppendVarint(e.buf[e.pos:e.pos], v)
}

// tag writes the tag of field num; every field number here is below 16,
// so the tag is one byte.
func (e *encoder) tag(num protowire.Number, typ protowire.Type) {
	e.room(1)
	e.pos--
	e.buf[e.pos] = byte(num)<<3 | byte(typ)
}

// lenField puts the tag and length of a length-delimited field of n bytes
// in front of its contents, written just before.
func (e *encoder) lenField(num protowire.Number, n int) {
	if n < 0x80 { // most fields: one byte of tag, one of length
		e.room(2)
		e.pos -= 2
		b := e.buf[e.pos : e.pos+2]
		b[0], b[1] = byte(num)<<3|byte(protowire.BytesType), byte(n)
		return
	}
	e.varint(uint64(n))
	e.tag(num, protowire.BytesType)
}

// message closes the length-delimited field num whose contents started when
// written() was mark.
func (e *encoder) message(num protowire.Number, mark int) {
	e.lenField(num, e.written()-mark)
}

func (e *encoder) raw(s string) {
	e.room(len(s))
	e.pos -= len(s)
	copy(e.buf[e.pos:], s)
}

func (e *encoder) varintField(num protowire.Number, v uint64) {
	if v < 0x80 {
		e.room(2)
		e.pos -= 2
		b := e.buf[e.pos : e.pos+2]
		b[0], b[1] = byte(num)<<3|byte(protowire.VarintType), byte(v)
		return
	}
	e.varint(v)
	e.tag(num, protowire.VarintType)
}

func (e *encoder) fixed64Field(num protowire.Number, v uint64) {
	e.room(9)
	e.pos -= 9
	b := e.buf[e.pos : e.pos+9]
	b[0] = byte(num)<<3 | byte(protowire.Fixed64Type)
	binary.LittleEndian.PutUint64(b[1:], v)
}

func (e *encoder) bytesField(num protowire.Number, s string) {
	e.raw(s)
	e.lenField(num, len(s))
}

// stringField writes s, its invalid UTF-8 replaced.
func (e *encoder) stringField(num protowire.Number, s string) {
	if !e.valid(s) {
		e.invalid++
		e.sanitized = appendSanitized(e.sanitized[:0], s)
		s = unsafe.String(unsafe.SliceData(e.sanitized), len(e.sanitized))
	}
	e.bytesField(num, s)
}

// valid reports whether s is valid UTF-8: cut from the record's checked
// body, or checked now.
func (e *encoder) valid(s string) bool {
	return (e.rec != nil && e.rec.ValidUTF8(s)) || ascii.ValidString(s)
}

// validKey is valid for an attribute key, remembering valid keys in a
// two-way set-associative cache indexed by a hash of the key's address.
func (e *encoder) validKey(k string) bool {
	// Fibonacci hashing: keys packed a few bytes apart (string constants)
	// land in different sets.
	h := uint64(uintptr(unsafe.Pointer(unsafe.StringData(k)))) * 0x9E3779B97F4A7C15
	set := e.keys[h>>59&^1:][:2]
	if sameString(set[0], k) || sameString(set[1], k) {
		return true
	}
	if !e.valid(k) {
		return false
	}
	set[0], set[1] = k, set[0]
	return true
}

func (e *encoder) resourceLogs(batches []*event.Batch, res *event.Resource) {
	mark := e.written()
	scope := e.written()
	for _, b := range slices.Backward(batches) {
		for i := len(b.Records) - 1; i >= 0; i-- {
			if r := &b.Records[i]; resourceOf(b, r) == res {
				e.record(r)
			}
		}
	}
	e.bytesField(fScopeLogsScope, scopeMessage)
	e.message(fResourceLogsScopeLogs, scope)
	if res != nil {
		m := e.written()
		e.kvList(fResourceAttributes, res.Attrs)
		e.message(fResourceLogsResource, m)
	}
	e.message(fRequestResourceLogs, mark)
}

// record writes r as a ScopeLogs.log_records field, fields in descending
// order as they are written back to front.
func (e *encoder) record(r *event.Record) {
	e.rec = r
	mark := e.written()
	if r.Observed != 0 {
		e.fixed64Field(fRecordObserved, uint64(r.Observed))
	}
	if r.SpanID != [8]byte{} {
		e.bytesField(fRecordSpanID, unsafe.String(&r.SpanID[0], len(r.SpanID)))
	}
	if r.TraceID != [16]byte{} {
		e.bytesField(fRecordTraceID, unsafe.String(&r.TraceID[0], len(r.TraceID)))
	}
	e.kvList(fRecordAttributes, event.FlagAttrs(r.Flags))
	e.kvList(fRecordAttributes, r.Attrs)
	if r.Body.Kind != event.KindEmpty {
		e.anyField(fRecordBody, &r.Body)
	}
	if r.SeverityText != "" {
		e.stringField(fRecordSeverityText, r.SeverityText)
	}
	if r.Severity != 0 {
		e.varintField(fRecordSeverity, uint64(r.Severity))
	}
	if r.Time != 0 {
		e.fixed64Field(fRecordTime, uint64(r.Time))
	}
	e.message(fScopeLogsRecords, mark)
	e.rec = nil
}

// kvList writes kvs as the repeated KeyValue field num, in order.
func (e *encoder) kvList(num protowire.Number, kvs []event.KeyValue) {
	for i := len(kvs) - 1; i >= 0; i-- {
		kv := &kvs[i]
		// Remember string attributes that records may share; a value cut
		// from this record's line is not seen again.
		shared := kv.Value.Kind == event.KindString && (e.rec == nil || !e.rec.FromBody(kv.Value.Str))
		if shared && e.copyKV(num, kv) {
			continue
		}
		from := e.written()
		if !e.scalarKV(num, kv) {
			e.keyValue(num, kv)
		}
		if shared {
			e.kvs[e.kvN%len(e.kvs)] = kvEntry{num: num, key: kv.Key, val: kv.Value.Str, from: from, to: e.written()}
			e.kvN++
		}
	}
}

// copyKV copies kv's field from where it was last written, if the cache
// remembers it.
func (e *encoder) copyKV(num protowire.Number, kv *event.KeyValue) bool {
	c := e.lookupKV(num, kv)
	if c == nil {
		return false
	}
	n := c.to - c.from
	e.room(n)
	end := len(e.buf)
	copy(e.buf[e.pos-n:e.pos], e.buf[end-c.to:end-c.from])
	e.pos -= n
	return true
}

// scalarKV writes kv as field num in one piece when it has a key and a
// string, integer, boolean or double value, all strings valid UTF-8: the
// sizes of such a KeyValue are known before it is written, so it is written
// front to back into room made once. It writes nothing and reports false
// for anything else.
func (e *encoder) scalarKV(num protowire.Number, kv *event.KeyValue) bool {
	v := &kv.Value
	var inner int // the AnyValue's one field
	switch v.Kind {
	case event.KindString:
		inner = tagLen + protowire.SizeBytes(len(v.Str))
	case event.KindInt:
		inner = tagLen + protowire.SizeVarint(v.Num)
	case event.KindBool:
		inner = tagLen + 1
	case event.KindDouble:
		inner = tagLen + 8
	default:
		return false
	}
	if kv.Key == "" || !e.validKey(kv.Key) || (v.Kind == event.KindString && !e.valid(v.Str)) {
		return false
	}
	msg := tagLen + protowire.SizeBytes(len(kv.Key)) + tagLen + protowire.SizeBytes(inner)
	total := tagLen + protowire.SizeBytes(msg)
	e.room(total)
	e.pos -= total
	b := e.buf[e.pos : e.pos+total]
	b[0] = byte(num)<<3 | byte(protowire.BytesType)
	i := putVarint(b, 1, uint64(msg))
	b[i] = fKeyValueKey<<3 | byte(protowire.BytesType)
	i = putVarint(b, i+1, uint64(len(kv.Key)))
	i += copy(b[i:], kv.Key)
	b[i] = fKeyValueValue<<3 | byte(protowire.BytesType)
	i = putVarint(b, i+1, uint64(inner))
	switch v.Kind {
	case event.KindString:
		b[i] = fAnyString<<3 | byte(protowire.BytesType)
		i = putVarint(b, i+1, uint64(len(v.Str)))
		copy(b[i:], v.Str)
	case event.KindInt:
		b[i] = fAnyInt<<3 | byte(protowire.VarintType)
		putVarint(b, i+1, v.Num)
	case event.KindBool:
		b[i] = fAnyBool<<3 | byte(protowire.VarintType)
		b[i+1] = byte(v.Num & 1)
	case event.KindDouble:
		b[i] = fAnyDouble<<3 | byte(protowire.Fixed64Type)
		binary.LittleEndian.PutUint64(b[i+1:], v.Num)
	}
	return true
}

// putVarint writes v at b[i:] and returns the index after it.
func putVarint(b []byte, i int, v uint64) int {
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// keyValue writes kv as field num. The value is always present (an empty
// AnyValue for event.KindEmpty), so that a receiver sees the key.
func (e *encoder) keyValue(num protowire.Number, kv *event.KeyValue) {
	mark := e.written()
	e.anyField(fKeyValueValue, &kv.Value)
	if kv.Key != "" {
		e.stringField(fKeyValueKey, kv.Key)
	}
	e.message(num, mark)
}

// anyField writes v as the AnyValue field num.
func (e *encoder) anyField(num protowire.Number, v *event.Value) {
	mark := e.written()
	switch v.Kind {
	case event.KindString:
		e.stringField(fAnyString, v.Str)
	case event.KindBytes:
		e.bytesField(fAnyBytes, v.Str)
	case event.KindBool:
		e.varintField(fAnyBool, v.Num&1)
	case event.KindInt:
		e.varintField(fAnyInt, v.Num)
	case event.KindDouble:
		e.fixed64Field(fAnyDouble, v.Num)
	case event.KindArray:
		m := e.written()
		for i := len(v.List) - 1; i >= 0; i-- {
			e.anyField(fListValues, &v.List[i].Value)
		}
		e.message(fAnyArray, m)
	case event.KindMap:
		m := e.written()
		e.kvList(fListValues, v.List)
		e.message(fAnyKVList, m)
	}
	e.message(num, mark)
}

const replacement = "\uFFFD"

// appendSanitized follows strings.ToValidUTF8(s, "\uFFFD"): each run of
// invalid bytes becomes one replacement character.
func appendSanitized(dst []byte, s string) []byte {
	inBad := false
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			inBad = false
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		if w == 1 {
			if !inBad {
				dst = append(dst, replacement...)
				inBad = true
			}
			i++
			continue
		}
		inBad = false
		dst = append(dst, s[i:i+w]...)
		i += w
	}
	return dst
}
