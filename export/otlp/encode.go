package otlp

import (
	"slices"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logpump/logpump/event"
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

// encoder writes requests in two passes per ResourceLogs. The size pass
// computes the size of every nested message once, in the order the append
// pass writes their length prefixes (a slot is reserved before the children
// are sized), and checks every string for UTF-8 once, keeping its encoded
// length. The append pass then only copies. An encoder's scratch space is
// reused from one request to the next; it is not safe for concurrent use.
type encoder struct {
	invalid int // strings whose invalid UTF-8 was replaced, this request
	// sizes of nested messages and encoded lengths of strings (-n-1 when
	// the string needs sanitising to n bytes), in append order.
	sizes, strs []int
	ns, nstr    int // next entries the append pass reads
	// kvs remembers the last few string attributes encoded. The same
	// attribute (same key and value strings, e.g. log.file.path on every
	// record of a batch) is sized once and then copied from its first
	// encoding in the request.
	kvs  [4]kvEntry
	kvN  int
	hits []bool // per KeyValue in append order: copy from the cache
	nhit int
}

// kvEntry is one remembered attribute: its strings (by address and
// length), and its KeyValue message size (size pass) or where its field
// starts in the request and how long it is (append pass).
type kvEntry struct {
	key, val   string
	size       int
	off, field int
}

// lookupKV returns the remembered entry for kv, or nil. Strings match by
// address and length: equal pointers mean equal bytes, and a comparison of
// contents would cost as much as encoding.
func (e *encoder) lookupKV(kv *event.KeyValue) *kvEntry {
	if kv.Value.Kind != event.KindString {
		return nil
	}
	for i := range e.kvs[:min(e.kvN, len(e.kvs))] {
		c := &e.kvs[i]
		if sameString(c.key, kv.Key) && sameString(c.val, kv.Value.Str) {
			return c
		}
	}
	return nil
}

func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

func (e *encoder) appendRequest(dst []byte, batches []*event.Batch) []byte {
	e.invalid = 0
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
	for _, res := range resources {
		e.sizes, e.strs, e.ns, e.nstr = e.sizes[:0], e.strs[:0], 0, 0
		e.hits, e.nhit, e.kvN = e.hits[:0], 0, 0
		e.sizeResourceLogs(batches, res)
		// The append pass replays the cache from empty: it sees the same
		// misses in the same order, so its entries match the size pass's.
		e.kvs, e.kvN = [len(e.kvs)]kvEntry{}, 0
		dst = e.appendResourceLogs(dst, batches, res)
	}
	return dst
}

// reserve adds a slot for the size of a message whose children are sized next.
func (e *encoder) reserve() int {
	e.sizes = append(e.sizes, 0)
	return len(e.sizes) - 1
}

// nextSize returns the size the size pass found for the next message.
func (e *encoder) nextSize() int {
	n := e.sizes[e.ns]
	e.ns++
	return n
}

// strLen is the encoded length of s, its invalid UTF-8 replaced.
func (e *encoder) strLen(s string) int {
	if utf8.ValidString(s) {
		e.strs = append(e.strs, len(s))
		return len(s)
	}
	n := sanitizedLen(s)
	e.strs = append(e.strs, -n-1)
	return n
}

func (e *encoder) sizeResourceLogs(batches []*event.Batch, res *event.Resource) {
	slot := e.reserve()
	n := 0
	if res != nil {
		rs := e.reserve()
		e.sizes[rs] = e.sizeKVs(res.Attrs)
		n += tagLen + protowire.SizeBytes(e.sizes[rs])
	}
	ss := e.reserve()
	scope := tagLen + protowire.SizeBytes(len(scopeMessage))
	for _, b := range batches {
		for i := range b.Records {
			if r := &b.Records[i]; resourceOf(b, r) == res {
				scope += tagLen + protowire.SizeBytes(e.sizeRecord(r))
			}
		}
	}
	e.sizes[ss] = scope
	n += tagLen + protowire.SizeBytes(scope)
	e.sizes[slot] = n
}

func (e *encoder) appendResourceLogs(dst []byte, batches []*event.Batch, res *event.Resource) []byte {
	dst = appendLen(dst, fRequestResourceLogs, e.nextSize())
	if res != nil {
		dst = appendLen(dst, fResourceLogsResource, e.nextSize())
		dst = e.appendKVs(dst, fResourceAttributes, res.Attrs)
	}
	dst = appendLen(dst, fResourceLogsScopeLogs, e.nextSize())
	dst = appendLen(dst, fScopeLogsScope, len(scopeMessage))
	dst = append(dst, scopeMessage...)
	for _, b := range batches {
		for i := range b.Records {
			if r := &b.Records[i]; resourceOf(b, r) == res {
				dst = appendLen(dst, fScopeLogsRecords, e.nextSize())
				dst = e.appendRecord(dst, r)
			}
		}
	}
	return dst
}

func (e *encoder) sizeRecord(r *event.Record) int {
	slot := e.reserve()
	n := 0
	if r.Time != 0 {
		n += tagLen + 8
	}
	if r.Observed != 0 {
		n += tagLen + 8
	}
	if r.Severity != 0 {
		n += tagLen + protowire.SizeVarint(uint64(r.Severity))
	}
	if r.SeverityText != "" {
		n += tagLen + protowire.SizeBytes(e.strLen(r.SeverityText))
	}
	if r.Body.Kind != event.KindEmpty {
		n += tagLen + protowire.SizeBytes(e.sizeAny(&r.Body))
	}
	n += e.sizeKVs(r.Attrs)
	n += e.sizeKVs(event.FlagAttrs(r.Flags))
	if r.TraceID != [16]byte{} {
		n += tagLen + protowire.SizeBytes(16)
	}
	if r.SpanID != [8]byte{} {
		n += tagLen + protowire.SizeBytes(8)
	}
	e.sizes[slot] = n
	return n
}

func (e *encoder) appendRecord(dst []byte, r *event.Record) []byte {
	if r.Time != 0 {
		dst = protowire.AppendTag(dst, fRecordTime, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(r.Time))
	}
	if r.Severity != 0 {
		dst = protowire.AppendTag(dst, fRecordSeverity, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(r.Severity))
	}
	if r.SeverityText != "" {
		dst = e.appendString(dst, fRecordSeverityText, r.SeverityText)
	}
	if r.Body.Kind != event.KindEmpty {
		dst = e.appendAnyField(dst, fRecordBody, &r.Body)
	}
	dst = e.appendKVs(dst, fRecordAttributes, r.Attrs)
	dst = e.appendKVs(dst, fRecordAttributes, event.FlagAttrs(r.Flags))
	if r.TraceID != [16]byte{} {
		dst = appendLen(dst, fRecordTraceID, 16)
		dst = append(dst, r.TraceID[:]...)
	}
	if r.SpanID != [8]byte{} {
		dst = appendLen(dst, fRecordSpanID, 8)
		dst = append(dst, r.SpanID[:]...)
	}
	if r.Observed != 0 {
		dst = protowire.AppendTag(dst, fRecordObserved, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, uint64(r.Observed))
	}
	return dst
}

// sizeKVs is the size of kvs as a repeated KeyValue field.
func (e *encoder) sizeKVs(kvs []event.KeyValue) int {
	n := 0
	for i := range kvs {
		n += tagLen + protowire.SizeBytes(e.sizeKV(&kvs[i]))
	}
	return n
}

func (e *encoder) appendKVs(dst []byte, num protowire.Number, kvs []event.KeyValue) []byte {
	for i := range kvs {
		kv := &kvs[i]
		hit := e.hits[e.nhit]
		e.nhit++
		if hit {
			c := e.lookupKV(kv)
			dst = append(dst, dst[c.off:c.off+c.field]...)
			continue
		}
		start := len(dst)
		dst = appendLen(dst, num, e.nextSize())
		dst = e.appendKV(dst, kv)
		if kv.Value.Kind == event.KindString {
			e.remember(kvEntry{key: kv.Key, val: kv.Value.Str, off: start, field: len(dst) - start})
		}
	}
	return dst
}

// sizeKV is the size of a KeyValue message. The value is always present (an
// empty AnyValue for event.KindEmpty), so that a receiver sees the key.
func (e *encoder) sizeKV(kv *event.KeyValue) int {
	if c := e.lookupKV(kv); c != nil {
		e.hits = append(e.hits, true)
		return c.size
	}
	e.hits = append(e.hits, false)
	slot := e.reserve()
	n := 0
	if kv.Key != "" {
		n += tagLen + protowire.SizeBytes(e.strLen(kv.Key))
	}
	n += tagLen + protowire.SizeBytes(e.sizeAny(&kv.Value))
	e.sizes[slot] = n
	if kv.Value.Kind == event.KindString {
		e.remember(kvEntry{key: kv.Key, val: kv.Value.Str, size: n})
	}
	return n
}

// remember adds an attribute to the cache, replacing the oldest entry.
func (e *encoder) remember(c kvEntry) {
	e.kvs[e.kvN%len(e.kvs)] = c
	e.kvN++
}

func (e *encoder) appendKV(dst []byte, kv *event.KeyValue) []byte {
	if kv.Key != "" {
		dst = e.appendString(dst, fKeyValueKey, kv.Key)
	}
	return e.appendAnyField(dst, fKeyValueValue, &kv.Value)
}

// appendAnyField appends v as the AnyValue field num.
func (e *encoder) appendAnyField(dst []byte, num protowire.Number, v *event.Value) []byte {
	dst = appendLen(dst, num, e.nextSize())
	return e.appendAny(dst, v)
}

// sizeAny is the size of v as an AnyValue message.
func (e *encoder) sizeAny(v *event.Value) int {
	slot := e.reserve()
	n := 0
	switch v.Kind {
	case event.KindString:
		n = tagLen + protowire.SizeBytes(e.strLen(v.Str))
	case event.KindBytes:
		n = tagLen + protowire.SizeBytes(len(v.Str))
	case event.KindBool:
		n = tagLen + 1
	case event.KindInt:
		n = tagLen + protowire.SizeVarint(v.Num)
	case event.KindDouble:
		n = tagLen + 8
	case event.KindArray:
		list := e.reserve()
		inner := 0
		for i := range v.List {
			inner += tagLen + protowire.SizeBytes(e.sizeAny(&v.List[i].Value))
		}
		e.sizes[list] = inner
		n = tagLen + protowire.SizeBytes(inner)
	case event.KindMap:
		list := e.reserve()
		e.sizes[list] = e.sizeKVs(v.List)
		n = tagLen + protowire.SizeBytes(e.sizes[list])
	}
	e.sizes[slot] = n
	return n
}

func (e *encoder) appendAny(dst []byte, v *event.Value) []byte {
	switch v.Kind {
	case event.KindString:
		return e.appendString(dst, fAnyString, v.Str)
	case event.KindBytes:
		dst = appendLen(dst, fAnyBytes, len(v.Str))
		return append(dst, v.Str...)
	case event.KindBool:
		dst = protowire.AppendTag(dst, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(dst, v.Num&1)
	case event.KindInt:
		dst = protowire.AppendTag(dst, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(dst, v.Num)
	case event.KindDouble:
		dst = protowire.AppendTag(dst, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, v.Num)
	case event.KindArray:
		dst = appendLen(dst, fAnyArray, e.nextSize())
		for i := range v.List {
			dst = e.appendAnyField(dst, fListValues, &v.List[i].Value)
		}
		return dst
	case event.KindMap:
		dst = appendLen(dst, fAnyKVList, e.nextSize())
		return e.appendKVs(dst, fListValues, v.List)
	}
	return dst
}

// appendLen appends the tag and length of a length-delimited field. Every
// field number here is below 16, so the tag is one byte.
func appendLen(dst []byte, num protowire.Number, n int) []byte {
	tag := byte(num)<<3 | byte(protowire.BytesType)
	if n < 0x80 {
		return append(dst, tag, byte(n))
	}
	return protowire.AppendVarint(append(dst, tag), uint64(n))
}

// appendString appends the next string of the size pass, sanitised when
// that pass found invalid UTF-8 in it.
func (e *encoder) appendString(dst []byte, num protowire.Number, s string) []byte {
	n := e.strs[e.nstr]
	e.nstr++
	if n >= 0 {
		dst = appendLen(dst, num, n)
		return append(dst, s...)
	}
	e.invalid++
	dst = appendLen(dst, num, -n-1)
	return appendSanitized(dst, s)
}

const replacement = "\uFFFD"

// sanitizedLen and appendSanitized follow strings.ToValidUTF8(s, "\uFFFD"):
// each run of invalid bytes becomes one replacement character.
func sanitizedLen(s string) int {
	n := 0
	inBad := false
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			n++
			inBad = false
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		if w == 1 {
			if !inBad {
				n += len(replacement)
				inBad = true
			}
			i++
			continue
		}
		inBad = false
		n += w
		i += w
	}
	return n
}

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
