// Package event defines the records that flow through logpump and the batches
// that carry them between goroutines.
//
// A [Record] is one log event. Records never cross goroutines alone: they
// travel in a [Batch], which covers the byte range [Start, End) of one file,
// owns an arena that backs the records' strings, and carries a reference-
// counted acknowledgement that advances the file's checkpoint when every
// holder of the batch is done with it.
package event

import "unsafe"

// Severity is an OpenTelemetry severity number (1-24); 0 means unspecified.
type Severity uint8

// The first number of each OpenTelemetry severity range.
const (
	SeverityUnspecified Severity = 0
	SeverityTrace       Severity = 1
	SeverityDebug       Severity = 5
	SeverityInfo        Severity = 9
	SeverityWarn        Severity = 13
	SeverityError       Severity = 17
	SeverityFatal       Severity = 21
)

var severityNames = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// String returns the OpenTelemetry short name of s: "INFO", "WARN2", "" for unspecified.
func (s Severity) String() string {
	if s == 0 || s > 24 {
		return ""
	}
	name := severityNames[(s-1)/4]
	if n := (s-1)%4 + 1; n > 1 {
		return name + string('0'+byte(n))
	}
	return name
}

// Flags mark what happened to a record on its way in. They are never errors:
// a flagged record is passed on like any other.
type Flags uint8

// Record flags.
const (
	// Truncated: the line was longer than max_line_bytes; the rest was skipped.
	Truncated Flags = 1 << iota
	// InvalidUTF8: the body held bytes that are not UTF-8; exporters that need
	// valid strings replace them.
	InvalidUTF8
	// ParseError: a parser could not parse the record; the body is the raw line.
	ParseError
	// Unterminated: the line had no newline when it was flushed (flush timeout,
	// end of a rotated or deleted file).
	Unterminated
)

// Record is one log event. The zero value is an empty record.
//
// Strings inside a record may alias the arena of the batch that holds it, so a
// record and everything it points to is valid only until that batch is
// released (see [Batch.Done]). Copy what you keep.
type Record struct {
	// Time is when the event happened, in Unix nanoseconds; 0 if unknown.
	Time int64
	// Observed is when logpump read the line, in Unix nanoseconds.
	Observed int64
	// Severity and SeverityText as found or mapped by a parser.
	Severity     Severity
	SeverityText string
	// Body is the log line, or what a parser made of it.
	Body Value
	// Attrs are the record's attributes, in order; keys are unique by convention
	// (use [Set]). Reused across pooled batches: append, do not keep.
	Attrs []KeyValue
	// TraceID and SpanID when a parser found them; zero otherwise.
	TraceID [16]byte
	SpanID  [8]byte
	// Offset is the byte offset of the start of the line in its file.
	Offset int64
	// Flags say what happened to the record (truncated, invalid UTF-8, ...).
	Flags Flags
	// Resource overrides the batch's resource when set (e.g. per-pod metadata).
	Resource *Resource

	// validBody is a body string already found to be valid UTF-8 (see
	// [Record.SetValidBody]).
	validBody string
}

// SetValidBody sets a string body that the caller has checked to be valid
// UTF-8 and records that it was checked, so that an exporter need not check
// it again, nor the parts of it a parser cuts out ([Record.ValidUTF8]).
func (r *Record) SetValidBody(s string) {
	r.Body = String(s)
	r.validBody = s
}

// ValidUTF8 reports whether s is known to be valid UTF-8 without reading
// it: s lies within the body set by [Record.SetValidBody] (the very bytes in
// memory, so a stage that replaced the body needs no bookkeeping) and starts
// and ends on character boundaries, as the strings a parser cuts out of the
// body at quotes or delimiters do. A cut inside a multi-byte character, or
// any other string, is unknown: false means unknown, not invalid.
func (r *Record) ValidUTF8(s string) bool {
	from, ok := r.inBody(s)
	if !ok || len(s) == 0 {
		return len(s) == 0
	}
	v := r.validBody
	to := from + len(s)
	return !continuation(v[from]) && (to == len(v) || !continuation(v[to]))
}

// FromBody reports whether s lies within the body set by
// [Record.SetValidBody]: a value cut from this record's line, which no
// other record shares.
func (r *Record) FromBody(s string) bool {
	_, ok := r.inBody(s)
	return ok && len(s) > 0
}

// inBody returns where s starts in the checked body, if it lies within it.
func (r *Record) inBody(s string) (int, bool) {
	v := r.validBody
	if len(v) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.StringData(v)))
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	if p < base || p-base > uintptr(len(v)) || uintptr(len(v))-(p-base) < uintptr(len(s)) {
		return 0, false
	}
	return int(p - base), true
}

// continuation reports whether c continues a multi-byte UTF-8 character.
func continuation(c byte) bool { return c&0xC0 == 0x80 }

// Reset clears r for reuse, keeping the capacity of its attribute slice.
func (r *Record) Reset() {
	attrs := r.Attrs[:0]
	clear(r.Attrs)
	*r = Record{Attrs: attrs}
}

// Resource describes the entity that produced a batch's records: the host, the
// service, a Kubernetes pod. A Resource is immutable once it is attached to a
// batch and is shared by every batch of its source; compare by pointer.
type Resource struct {
	Attrs []KeyValue
}

// Attribute keys that mark a record's flags when it leaves logpump.
const (
	AttrTruncated    = "logpump.truncated"
	AttrInvalidUTF8  = "logpump.invalid_utf8"
	AttrUnterminated = "logpump.unterminated"
)

// flagAttrs holds, for every combination of the exported flags, the
// attributes that say so; built once, shared read-only.
var flagAttrs = func() (t [8][]KeyValue) {
	for i := range t {
		var kvs []KeyValue
		if i&1 != 0 {
			kvs = append(kvs, KeyValue{Key: AttrTruncated, Value: Bool(true)})
		}
		if i&2 != 0 {
			kvs = append(kvs, KeyValue{Key: AttrInvalidUTF8, Value: Bool(true)})
		}
		if i&4 != 0 {
			kvs = append(kvs, KeyValue{Key: AttrUnterminated, Value: Bool(true)})
		}
		t[i] = kvs
	}
	return t
}()

// FlagAttrs returns the attributes exporters add for f: a boolean true for
// each of Truncated, InvalidUTF8 and Unterminated that is set. ParseError is
// not among them: parsers describe their error in a log.parse.error
// attribute. The slice is shared: do not modify it. It does not allocate.
func FlagAttrs(f Flags) []KeyValue {
	i := 0
	if f&Truncated != 0 {
		i |= 1
	}
	if f&InvalidUTF8 != 0 {
		i |= 2
	}
	if f&Unterminated != 0 {
		i |= 4
	}
	return flagAttrs[i]
}
