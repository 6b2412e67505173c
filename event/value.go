package event

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Kind is the type held by a [Value]. The kinds are those of an OTLP AnyValue.
type Kind uint8

// Value kinds. KindEmpty is the zero Value.
const (
	KindEmpty Kind = iota
	KindString
	KindInt
	KindDouble
	KindBool
	KindBytes
	KindMap
	KindArray
)

// Value is a body or attribute value. It is a small struct passed by value;
// strings and bytes may alias a batch's arena (see [Batch]), so a Value is
// valid only as long as the record that holds it.
type Value struct {
	Kind Kind
	// Str holds KindString and KindBytes data.
	Str string
	// Num holds KindInt (int64 bits), KindDouble (float64 bits) and KindBool (0 or 1).
	Num uint64
	// List holds KindMap entries (key and value) and KindArray elements (values, keys empty).
	List []KeyValue
}

// KeyValue is one attribute.
type KeyValue struct {
	Key   string
	Value Value
}

// String returns a string Value.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Int returns an integer Value.
func Int(i int64) Value { return Value{Kind: KindInt, Num: uint64(i)} }

// Double returns a floating-point Value.
func Double(f float64) Value { return Value{Kind: KindDouble, Num: math.Float64bits(f)} }

// Bool returns a boolean Value.
func Bool(b bool) Value {
	v := Value{Kind: KindBool}
	if b {
		v.Num = 1
	}
	return v
}

// Bytes returns a bytes Value holding s, which is taken as raw bytes.
func Bytes(s string) Value { return Value{Kind: KindBytes, Str: s} }

// Map returns a map Value with the given entries. The Value owns the slice.
func Map(kvs []KeyValue) Value { return Value{Kind: KindMap, List: kvs} }

// Array returns an array Value; each element is the Value of a KeyValue with an empty key.
func Array(elems []KeyValue) Value { return Value{Kind: KindArray, List: elems} }

// AsInt returns the integer held by a KindInt Value.
func (v Value) AsInt() int64 { return int64(v.Num) }

// AsDouble returns the float held by a KindDouble Value.
func (v Value) AsDouble() float64 { return math.Float64frombits(v.Num) }

// AsBool returns the boolean held by a KindBool Value.
func (v Value) AsBool() bool { return v.Num != 0 }

// Text renders scalar values as text (strings as they are); maps and arrays
// render as "{...}" and "[...]" of their members. It allocates except for strings.
func (v Value) Text() string {
	switch v.Kind {
	case KindString, KindBytes:
		return v.Str
	case KindInt:
		return strconv.FormatInt(v.AsInt(), 10)
	case KindDouble:
		return strconv.FormatFloat(v.AsDouble(), 'g', -1, 64)
	case KindBool:
		return strconv.FormatBool(v.AsBool())
	case KindMap, KindArray:
		return string(v.appendText(nil))
	}
	return ""
}

func (v Value) appendText(dst []byte) []byte {
	switch v.Kind {
	case KindMap:
		dst = append(dst, '{')
		for i, kv := range v.List {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = append(dst, kv.Key...)
			dst = append(dst, '=')
			dst = kv.Value.appendText(dst)
		}
		return append(dst, '}')
	case KindArray:
		dst = append(dst, '[')
		for i, kv := range v.List {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = kv.Value.appendText(dst)
		}
		return append(dst, ']')
	}
	return append(dst, v.Text()...)
}

// Equal reports whether two values hold the same kind and data, recursively.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind || v.Str != w.Str || v.Num != w.Num || len(v.List) != len(w.List) {
		return false
	}
	for i := range v.List {
		if v.List[i].Key != w.List[i].Key || !v.List[i].Value.Equal(w.List[i].Value) {
			return false
		}
	}
	return true
}

// Lookup returns the value of the first attribute named key in kvs.
func Lookup(kvs []KeyValue, key string) (Value, bool) {
	for i := range kvs {
		if kvs[i].Key == key {
			return kvs[i].Value, true
		}
	}
	return Value{}, false
}

// Set replaces the first attribute named key in kvs, or appends it, and returns the slice.
func Set(kvs []KeyValue, key string, v Value) []KeyValue {
	for i := range kvs {
		if kvs[i].Key == key {
			kvs[i].Value = v
			return kvs
		}
	}
	return append(kvs, KeyValue{Key: key, Value: v})
}

// Delete removes every attribute named key from kvs, keeping the order of the rest.
func Delete(kvs []KeyValue, key string) []KeyValue {
	out := kvs[:0]
	for _, kv := range kvs {
		if kv.Key != key {
			out = append(out, kv)
		}
	}
	clear(kvs[len(out):])
	return out
}

// Scalar converts a scalar decoded from YAML or JSON (string, int, int64,
// uint64, float64, bool) to a Value. nil and other types are errors.
func Scalar(v any) (Value, error) {
	switch x := v.(type) {
	case string:
		return String(x), nil
	case int:
		return Int(int64(x)), nil
	case int64:
		return Int(x), nil
	case uint64:
		return Int(int64(x)), nil
	case float64:
		return Double(x), nil
	case bool:
		return Bool(x), nil
	case nil:
		return Value{}, errors.New("missing value")
	}
	return Value{}, fmt.Errorf("want a string, number or bool, got %T", v)
}
