package transform

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/logpump/logpump/event"
)

// String returns the path as written in configuration.
func (p Path) String() string {
	switch p.kind {
	case pathBody:
		return "body"
	case pathBodyField:
		return "body." + p.key
	case pathAttr:
		return "attributes." + p.key
	case pathSeverityText:
		return "severity_text"
	case pathSeverity:
		return "severity"
	case pathTime:
		return "time"
	}
	return fmt.Sprintf("path(%d)", p.kind)
}

// FromExpr converts the result of an expression to a record value the way
// OTLP carries it: strings stay strings (copied into b's arena), integers
// stay integers, floats doubles, booleans booleans, maps become maps (keys
// sorted) and lists arrays, recursively. A time becomes its RFC 3339 text
// with nanoseconds, a duration its integer nanoseconds. nil inside a map or
// list is an empty value. It reports false for anything else (a function).
func FromExpr(b *event.Batch, x any) (event.Value, bool) {
	switch v := x.(type) {
	case nil:
		return event.Value{}, true
	case string:
		return event.String(b.CopyString(v)), true
	case int:
		return event.Int(int64(v)), true
	case int64:
		return event.Int(v), true
	case float64:
		return event.Double(v), true
	case bool:
		return event.Bool(v), true
	case time.Time:
		return event.String(b.CopyString(v.UTC().Format(time.RFC3339Nano))), true
	case time.Duration:
		return event.Int(int64(v)), true
	case map[string]any:
		kvs := make([]event.KeyValue, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			ev, ok := FromExpr(b, v[k])
			if !ok {
				return event.Value{}, false
			}
			kvs = append(kvs, event.KeyValue{Key: b.CopyString(k), Value: ev})
		}
		return event.Map(kvs), true
	case []any:
		elems := make([]event.KeyValue, len(v))
		for i, e := range v {
			ev, ok := FromExpr(b, e)
			if !ok {
				return event.Value{}, false
			}
			elems[i].Value = ev
		}
		return event.Array(elems), true
	}
	// Other numbers, typed slices ([]string from split) and typed maps.
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return event.Int(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return event.Int(int64(rv.Uint())), true
	case reflect.Float32:
		return event.Double(rv.Float()), true
	case reflect.Slice, reflect.Array:
		elems := make([]event.KeyValue, rv.Len())
		for i := range elems {
			ev, ok := FromExpr(b, rv.Index(i).Interface())
			if !ok {
				return event.Value{}, false
			}
			elems[i].Value = ev
		}
		return event.Array(elems), true
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return event.Value{}, false
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			m[it.Key().String()] = it.Value().Interface()
		}
		return FromExpr(b, m)
	}
	return event.Value{}, false
}

// kindName names a value's kind in error messages.
func kindName(k event.Kind) string {
	switch k {
	case event.KindString:
		return "string"
	case event.KindInt:
		return "int"
	case event.KindDouble:
		return "double"
	case event.KindBool:
		return "bool"
	case event.KindBytes:
		return "bytes"
	case event.KindMap:
		return "map"
	case event.KindArray:
		return "array"
	}
	return "empty value"
}
