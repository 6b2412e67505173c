package otlp

import (
	"slices"
	"unicode/utf8"

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

// appendRequest is AppendRequest that also reports how many strings held
// invalid UTF-8 and were replaced.
func appendRequest(dst []byte, batches []*event.Batch) ([]byte, int) {
	var e encoder
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
		dst = e.appendResourceLogs(dst, batches, res)
	}
	return dst, e.invalid
}

func resourceOf(b *event.Batch, r *event.Record) *event.Resource {
	if r.Resource != nil {
		return r.Resource
	}
	return b.Resource
}

type encoder struct {
	invalid int // strings whose invalid UTF-8 was replaced
}

func (e *encoder) appendResourceLogs(dst []byte, batches []*event.Batch, res *event.Resource) []byte {
	scopeLogs := tagLen + protowire.SizeBytes(len(scopeMessage))
	for _, b := range batches {
		for i := range b.Records {
			if r := &b.Records[i]; resourceOf(b, r) == res {
				scopeLogs += tagLen + protowire.SizeBytes(sizeRecord(r))
			}
		}
	}
	size := tagLen + protowire.SizeBytes(scopeLogs)
	resSize := 0
	if res != nil {
		resSize = sizeKVs(res.Attrs)
		size += tagLen + protowire.SizeBytes(resSize)
	}

	dst = appendLen(dst, fRequestResourceLogs, size)
	if res != nil {
		dst = appendLen(dst, fResourceLogsResource, resSize)
		dst = e.appendKVs(dst, fResourceAttributes, res.Attrs)
	}
	dst = appendLen(dst, fResourceLogsScopeLogs, scopeLogs)
	dst = appendLen(dst, fScopeLogsScope, len(scopeMessage))
	dst = append(dst, scopeMessage...)
	for _, b := range batches {
		for i := range b.Records {
			if r := &b.Records[i]; resourceOf(b, r) == res {
				dst = appendLen(dst, fScopeLogsRecords, sizeRecord(r))
				dst = e.appendRecord(dst, r)
			}
		}
	}
	return dst
}

func sizeRecord(r *event.Record) int {
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
		n += tagLen + protowire.SizeBytes(validLen(r.SeverityText))
	}
	if r.Body.Kind != event.KindEmpty {
		n += tagLen + protowire.SizeBytes(sizeAny(&r.Body))
	}
	n += sizeKVs(r.Attrs)
	n += sizeKVs(event.FlagAttrs(r.Flags))
	if r.TraceID != [16]byte{} {
		n += tagLen + protowire.SizeBytes(16)
	}
	if r.SpanID != [8]byte{} {
		n += tagLen + protowire.SizeBytes(8)
	}
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
func sizeKVs(kvs []event.KeyValue) int {
	n := 0
	for i := range kvs {
		n += tagLen + protowire.SizeBytes(sizeKV(&kvs[i]))
	}
	return n
}

func (e *encoder) appendKVs(dst []byte, num protowire.Number, kvs []event.KeyValue) []byte {
	for i := range kvs {
		dst = appendLen(dst, num, sizeKV(&kvs[i]))
		dst = e.appendKV(dst, &kvs[i])
	}
	return dst
}

// sizeKV is the size of a KeyValue message. The value is always present (an
// empty AnyValue for event.KindEmpty), so that a receiver sees the key.
func sizeKV(kv *event.KeyValue) int {
	n := tagLen + protowire.SizeBytes(sizeAny(&kv.Value))
	if kv.Key != "" {
		n += tagLen + protowire.SizeBytes(validLen(kv.Key))
	}
	return n
}

func (e *encoder) appendKV(dst []byte, kv *event.KeyValue) []byte {
	if kv.Key != "" {
		dst = e.appendString(dst, fKeyValueKey, kv.Key)
	}
	return e.appendAnyField(dst, fKeyValueValue, &kv.Value)
}

// appendAnyField appends v as the AnyValue field num. A string is checked
// for UTF-8 once for both its length and its bytes.
func (e *encoder) appendAnyField(dst []byte, num protowire.Number, v *event.Value) []byte {
	if v.Kind != event.KindString {
		dst = appendLen(dst, num, sizeAny(v))
		return e.appendAny(dst, v)
	}
	s := v.Str
	if utf8.ValidString(s) {
		dst = appendLen(dst, num, tagLen+protowire.SizeBytes(len(s)))
		dst = appendLen(dst, fAnyString, len(s))
		return append(dst, s...)
	}
	e.invalid++
	n := sanitizedLen(s)
	dst = appendLen(dst, num, tagLen+protowire.SizeBytes(n))
	dst = appendLen(dst, fAnyString, n)
	return appendSanitized(dst, s)
}

// sizeAny is the size of v as an AnyValue message.
func sizeAny(v *event.Value) int {
	switch v.Kind {
	case event.KindString:
		return tagLen + protowire.SizeBytes(validLen(v.Str))
	case event.KindBytes:
		return tagLen + protowire.SizeBytes(len(v.Str))
	case event.KindBool:
		return tagLen + 1
	case event.KindInt:
		return tagLen + protowire.SizeVarint(v.Num)
	case event.KindDouble:
		return tagLen + 8
	case event.KindArray:
		return tagLen + protowire.SizeBytes(sizeArray(v.List))
	case event.KindMap:
		return tagLen + protowire.SizeBytes(sizeKVs(v.List))
	}
	return 0
}

// sizeArray is the size of an ArrayValue holding the values of elems.
func sizeArray(elems []event.KeyValue) int {
	n := 0
	for i := range elems {
		n += tagLen + protowire.SizeBytes(sizeAny(&elems[i].Value))
	}
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
		dst = appendLen(dst, fAnyArray, sizeArray(v.List))
		for i := range v.List {
			dst = e.appendAnyField(dst, fListValues, &v.List[i].Value)
		}
		return dst
	case event.KindMap:
		dst = appendLen(dst, fAnyKVList, sizeKVs(v.List))
		return e.appendKVs(dst, fListValues, v.List)
	}
	return dst
}

// appendLen appends the tag and length of a length-delimited field.
func appendLen(dst []byte, num protowire.Number, n int) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendVarint(dst, uint64(n))
}

func (e *encoder) appendString(dst []byte, num protowire.Number, s string) []byte {
	if utf8.ValidString(s) {
		dst = appendLen(dst, num, len(s))
		return append(dst, s...)
	}
	e.invalid++
	dst = appendLen(dst, num, sanitizedLen(s))
	return appendSanitized(dst, s)
}

// validLen is the length of s once its invalid UTF-8 is replaced.
func validLen(s string) int {
	if utf8.ValidString(s) {
		return len(s)
	}
	return sanitizedLen(s)
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
