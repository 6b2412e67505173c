package sink

import (
	"bytes"
	"encoding/binary"
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

// fields iterates over the fields of one protobuf message without
// allocating.
type fields struct{ b []byte }

// next returns the next field: its contents as v for a length-delimited
// field, its value as n for a varint or fixed64 one. ok is false at the end;
// err is set when the message is malformed.
func (f *fields) next() (num protowire.Number, typ protowire.Type, v []byte, n uint64, ok bool, err error) {
	b := f.b
	if len(b) == 0 {
		return 0, 0, nil, 0, false, nil
	}
	// Every field of an OTLP log record has a one-byte tag; strings and
	// messages under 16 KiB have a length of one or two bytes. Decoding
	// those here halves the sink's cost per record against protowire's
	// general functions, so that it takes less of the machine from the
	// agent under test.
	if t := b[0]; t >= 1<<3 && t < 0x80 && len(b) >= 3 { // field numbers 1 to 15
		num, typ = protowire.Number(t>>3), protowire.Type(t&7)
		switch {
		case typ == protowire.BytesType && b[1] < 0x80:
			if end := 2 + int(b[1]); end <= len(b) {
				f.b = b[end:]
				return num, typ, b[2:end], 0, true, nil
			}
		case typ == protowire.BytesType && b[2] < 0x80:
			if end := 3 + (int(b[1]&0x7f) | int(b[2])<<7); end <= len(b) {
				f.b = b[end:]
				return num, typ, b[3:end], 0, true, nil
			}
		case typ == protowire.Fixed64Type && len(b) >= 9:
			f.b = b[9:]
			return num, typ, nil, binary.LittleEndian.Uint64(b[1:9]), true, nil
		}
	}
	num, typ, l := protowire.ConsumeTag(f.b)
	if l < 0 {
		return 0, 0, nil, 0, false, errMalformed
	}
	f.b = f.b[l:]
	switch typ {
	case protowire.BytesType:
		v, l = protowire.ConsumeBytes(f.b)
	case protowire.VarintType:
		n, l = protowire.ConsumeVarint(f.b)
	case protowire.Fixed64Type:
		n, l = protowire.ConsumeFixed64(f.b)
	default:
		l = protowire.ConsumeFieldValue(num, typ, f.b)
	}
	if l < 0 {
		return 0, 0, nil, 0, false, errMalformed
	}
	f.b = f.b[l:]
	return num, typ, v, n, true, nil
}

// child returns the contents of the next length-delimited field numbered
// want, skipping others.
func (f *fields) child(want protowire.Number) ([]byte, bool, error) {
	for {
		num, typ, v, _, ok, err := f.next()
		if !ok || err != nil {
			return nil, false, err
		}
		if num == want && typ == protowire.BytesType {
			return v, true, nil
		}
	}
}

// eachRecord calls fn with the bytes of every LogRecord in an
// ExportLogsServiceRequest, without decoding anything else.
func eachRecord(req []byte, fn func(rec []byte)) error {
	rls := fields{req}
	for {
		rl, ok, err := rls.child(requestResourceLogs)
		if !ok {
			return err
		}
		sls := fields{rl}
		for {
			sl, ok, err := sls.child(resourceScopeLogs)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			recs := fields{sl}
			for {
				rec, ok, err := recs.child(scopeLogRecords)
				if err != nil {
					return err
				}
				if !ok {
					break
				}
				fn(rec)
			}
		}
	}
}

// RecordSeq finds the sequence number of one encoded LogRecord. It looks,
// in order, for an attribute named "seq" (int, double or string), then in
// the body, then in the other attributes' values; in a string it accepts
// "seq=N" (plain and CRI lines) and `"seq":N` (a JSON line kept whole); in a
// map it accepts a key "seq". This covers an agent that keeps the raw line
// as the body as well as one that parses it into attributes or a map body.
func RecordSeq(rec []byte) (uint64, bool) {
	var body []byte
	f := fields{rec}
	for {
		num, typ, v, _, ok, _ := f.next()
		if !ok {
			break
		}
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case recordBody:
			body = v
		case recordAttributes:
			if seq, ok := kvSeq(v, false); ok {
				return seq, true
			}
		}
	}
	if seq, ok := anySeq(body, 0); ok {
		return seq, true
	}
	attrs := fields{rec}
	for {
		kv, ok, _ := attrs.child(recordAttributes)
		if !ok {
			return 0, false
		}
		if seq, ok := kvSeq(kv, true); ok {
			return seq, true
		}
	}
}

// kvSeq returns the value of a KeyValue named "seq"; with deep set it also
// searches the value of any other key.
func kvSeq(kv []byte, deep bool) (uint64, bool) {
	var key, val []byte
	f := fields{kv}
	for {
		num, typ, v, _, ok, _ := f.next()
		if !ok {
			break
		}
		if typ == protowire.BytesType {
			switch num {
			case kvKey:
				key = v
			case kvValue:
				val = v
			}
		}
	}
	if string(key) == "seq" {
		return scalarSeq(val)
	}
	if deep {
		return anySeq(val, 1)
	}
	return 0, false
}

// scalarSeq reads an AnyValue holding a number or a decimal string.
func scalarSeq(v []byte) (uint64, bool) {
	f := fields{v}
	for {
		num, typ, s, n, ok, _ := f.next()
		if !ok {
			return 0, false
		}
		switch {
		case num == anyInt && typ == protowire.VarintType:
			return n, int64(n) >= 0
		case num == anyDouble && typ == protowire.Fixed64Type:
			x := math.Float64frombits(n)
			return uint64(x), x >= 0 && x == math.Trunc(x)
		case num == anyString && typ == protowire.BytesType:
			return parseDigits(s)
		}
	}
}

// anySeq searches an AnyValue: the text of a string, the "seq" key of a
// map (then the map's other values), the elements of a list.
func anySeq(v []byte, depth int) (uint64, bool) {
	if depth > 8 {
		return 0, false
	}
	f := fields{v}
	for {
		num, typ, s, _, ok, _ := f.next()
		if !ok {
			return 0, false
		}
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case anyString, anyBytes:
			return TextSeq(s)
		case anyKvlist:
			for _, deep := range []bool{false, true} {
				kvs := fields{s}
				for {
					kv, ok, _ := kvs.child(listValues)
					if !ok {
						break
					}
					if deep {
						if seq, ok := anySeqKV(kv, depth+1); ok {
							return seq, true
						}
					} else if seq, ok := kvSeq(kv, false); ok {
						return seq, true
					}
				}
			}
			return 0, false
		case anyArray:
			els := fields{s}
			for {
				el, ok, _ := els.child(listValues)
				if !ok {
					return 0, false
				}
				if seq, ok := anySeq(el, depth+1); ok {
					return seq, true
				}
			}
		}
	}
}

func anySeqKV(kv []byte, depth int) (uint64, bool) {
	f := fields{kv}
	val, _, _ := f.child(kvValue)
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
