package sink

import (
	"bytes"
	"errors"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the OTLP logs messages the scanner walks.
const (
	requestResourceLogs = 1 // ExportLogsServiceRequest.resource_logs
	resourceScopeLogs   = 2 // ResourceLogs.scope_logs
	scopeLogRecords     = 2 // ScopeLogs.log_records
	recordBody          = 5 // LogRecord.body
	recordAttributes    = 6 // LogRecord.attributes
	kvKey               = 1 // KeyValue.key
	kvValue             = 2 // KeyValue.value
	anyString           = 1 // AnyValue.string_value
	anyInt              = 3 // AnyValue.int_value
	anyDouble           = 4 // AnyValue.double_value
	anyArray            = 5 // AnyValue.array_value
	anyKvlist           = 6 // AnyValue.kvlist_value
	anyBytes            = 7 // AnyValue.bytes_value
	listValues          = 1 // ArrayValue.values, KeyValueList.values
)

var errMalformed = errors.New("malformed OTLP logs request")

// eachField calls fn for every field of the message b. Length-delimited
// fields get their contents as v; varint and fixed64 fields their value as n.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		var v []byte
		var n uint64
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			n, l = protowire.ConsumeFixed64(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		if err := fn(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}

// eachRecord calls fn with the bytes of every LogRecord in an
// ExportLogsServiceRequest, without decoding anything else.
func eachRecord(req []byte, fn func(rec []byte)) error {
	return eachField(req, func(num protowire.Number, typ protowire.Type, rl []byte, _ uint64) error {
		if num != requestResourceLogs || typ != protowire.BytesType {
			return nil
		}
		return eachField(rl, func(num protowire.Number, typ protowire.Type, sl []byte, _ uint64) error {
			if num != resourceScopeLogs || typ != protowire.BytesType {
				return nil
			}
			return eachField(sl, func(num protowire.Number, typ protowire.Type, rec []byte, _ uint64) error {
				if num == scopeLogRecords && typ == protowire.BytesType {
					fn(rec)
				}
				return nil
			})
		})
	})
}

// RecordSeq finds the sequence number of one encoded LogRecord. It looks,
// in order, for an attribute named "seq" (int, double or string), then in
// the body, then in the other attributes' values; in a string it accepts
// "seq=N" (plain and CRI lines) and `"seq":N` (a JSON line kept whole); in a
// map it accepts a key "seq". This covers an agent that keeps the raw line
// as the body as well as one that parses it into attributes or a map body.
func RecordSeq(rec []byte) (uint64, bool) {
	var body []byte
	var attrs [][]byte // KeyValue messages
	_ = eachField(rec, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case recordBody:
			body = v
		case recordAttributes:
			attrs = append(attrs, v)
		}
		return nil
	})
	for _, kv := range attrs {
		if seq, ok := kvSeq(kv, false); ok {
			return seq, true
		}
	}
	if seq, ok := anySeq(body, 0); ok {
		return seq, true
	}
	for _, kv := range attrs {
		if seq, ok := kvSeq(kv, true); ok {
			return seq, true
		}
	}
	return 0, false
}

// kvSeq returns the value of a KeyValue named "seq"; with deep set it also
// searches the value of any other key.
func kvSeq(kv []byte, deep bool) (uint64, bool) {
	var key, val []byte
	_ = eachField(kv, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ == protowire.BytesType {
			switch num {
			case kvKey:
				key = v
			case kvValue:
				val = v
			}
		}
		return nil
	})
	if string(key) == "seq" {
		return scalarSeq(val)
	}
	if deep {
		return anySeq(val, 1)
	}
	return 0, false
}

// scalarSeq reads an AnyValue holding a number or a decimal string.
func scalarSeq(v []byte) (seq uint64, ok bool) {
	_ = eachField(v, func(num protowire.Number, typ protowire.Type, s []byte, n uint64) error {
		switch {
		case num == anyInt && typ == protowire.VarintType:
			seq, ok = n, int64(n) >= 0
		case num == anyDouble && typ == protowire.Fixed64Type:
			f := math.Float64frombits(n)
			seq, ok = uint64(f), f >= 0 && f == math.Trunc(f)
		case num == anyString && typ == protowire.BytesType:
			seq, ok = parseDigits(s)
		}
		return nil
	})
	return seq, ok
}

// anySeq searches an AnyValue: the text of a string, the "seq" key of a
// map, the elements of a list.
func anySeq(v []byte, depth int) (seq uint64, ok bool) {
	if depth > 8 {
		return 0, false
	}
	_ = eachField(v, func(num protowire.Number, typ protowire.Type, s []byte, _ uint64) error {
		if ok || typ != protowire.BytesType {
			return nil
		}
		switch num {
		case anyString, anyBytes:
			seq, ok = TextSeq(s)
		case anyKvlist:
			for _, deep := range []bool{false, true} {
				_ = eachField(s, func(num protowire.Number, typ protowire.Type, kv []byte, _ uint64) error {
					if !ok && num == listValues && typ == protowire.BytesType {
						if deep {
							seq, ok = anySeqKV(kv, depth+1)
						} else {
							seq, ok = kvSeq(kv, false)
						}
					}
					return nil
				})
			}
		case anyArray:
			_ = eachField(s, func(num protowire.Number, typ protowire.Type, el []byte, _ uint64) error {
				if !ok && num == listValues && typ == protowire.BytesType {
					seq, ok = anySeq(el, depth+1)
				}
				return nil
			})
		}
		return nil
	})
	return seq, ok
}

func anySeqKV(kv []byte, depth int) (uint64, bool) {
	var val []byte
	_ = eachField(kv, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == kvValue && typ == protowire.BytesType {
			val = v
		}
		return nil
	})
	return anySeq(val, depth)
}

// TextSeq finds "seq=N" or `"seq":N` (optionally `"seq": N`) in a line.
func TextSeq(s []byte) (uint64, bool) {
	for {
		i := bytes.Index(s, []byte("seq"))
		if i < 0 {
			return 0, false
		}
		rest := s[i+3:]
		switch {
		case len(rest) > 0 && rest[0] == '=':
			rest = rest[1:]
		case len(rest) > 1 && rest[0] == '"' && rest[1] == ':':
			rest = bytes.TrimLeft(rest[2:], " ")
		default:
			s = s[i+3:]
			continue
		}
		if seq, ok := parseDigits(leadingDigits(rest)); ok {
			return seq, true
		}
		s = s[i+3:]
	}
}

func leadingDigits(s []byte) []byte {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return s[:n]
}

// parseDigits parses a non-empty run of decimal digits.
func parseDigits(s []byte) (uint64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
