package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one configuration problem, located by file, line and column and
// named by its key path (e.g. "sources.app.start_at").
type Error struct {
	File         string
	Line, Column int
	Key          string
	Msg          string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Err returns es as an error, or nil when it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// FieldError is a validation error of one field, named relative to the
// options struct being validated. [At] locates it in the YAML.
type FieldError struct {
	Key string // yaml key path below the options, e.g. "tls.ca_file"; empty for the whole block
	Msg string
}

func (e *FieldError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Fieldf returns a *FieldError.
func Fieldf(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// At turns err, returned by validating the options decoded from n at key path
// base, into located Errors: FieldErrors (also inside errors.Join) point at
// their key's line, anything else at n.
func At(n *yaml.Node, base string, err error) Errors {
	if err == nil {
		return nil
	}
	var out Errors
	for _, e := range flatten(err, nil) {
		if es, ok := e.(Errors); ok {
			out = append(out, es...)
			continue
		}
		var fe *FieldError
		if errors.As(e, &fe) {
			at := Find(n, fe.Key)
			out = append(out, newError(at, join(base, fe.Key), fe.Msg))
			continue
		}
		out = append(out, newError(n, base, e.Error()))
	}
	return out
}

// flatten appends the errors joined in err (by errors.Join, at any depth)
// to errs, so that each is reported with its own key and line.
func flatten(err error, errs []error) []error {
	if _, ok := err.(Errors); ok {
		return append(errs, err)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = flatten(e, errs)
		}
		return errs
	}
	return append(errs, err)
}

// Find returns the node at the dotted key path below n (the value node), the
// deepest node found on the way when the key is absent, or n itself.
func Find(n *yaml.Node, key string) *yaml.Node {
	if key == "" || n == nil {
		return n
	}
	cur := n
	for _, part := range strings.Split(key, ".") {
		if cur.Kind == yaml.DocumentNode && len(cur.Content) > 0 {
			cur = cur.Content[0]
		}
		next := (*yaml.Node)(nil)
		switch cur.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(cur.Content); i += 2 {
				if cur.Content[i].Value == part {
					next = cur.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(part); err == nil && i >= 0 && i < len(cur.Content) {
				next = cur.Content[i]
			}
		}
		if next == nil {
			return cur
		}
		cur = next
	}
	return cur
}

func newError(n *yaml.Node, key, msg string) *Error {
	e := &Error{Key: key, Msg: msg}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func join(base, key string) string {
	switch {
	case base == "":
		return key
	case key == "":
		return base
	}
	return base + "." + key
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	nodeType        = reflect.TypeFor[yaml.Node]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// Decode decodes n into out (a pointer) strictly: a key the target does not
// have, a value of the wrong type or a duplicate key is an error naming the
// key path (below base) and its line. It reports every problem it finds, not
// only the first. Fields absent from the YAML keep the values out already
// holds, so set defaults before decoding.
//
// Supported targets: structs (keys from `yaml:"name"` tags; `yaml:",inline"`
// merges an embedded struct), maps with string keys, slices, pointers,
// strings, bools, integers, floats, time.Duration ("10s"), yaml.Node (kept
// raw) and types implementing yaml.Unmarshaler.
func Decode(n *yaml.Node, base string, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("config.Decode: want a non-nil pointer, got %T", out)
	}
	var errs Errors
	decodeValue(n, base, v.Elem(), &errs)
	return errs.Err()
}

func decodeValue(n *yaml.Node, key string, v reflect.Value, errs *Errors) {
	if n == nil {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			decodeValue(n.Content[0], key, v, errs)
		}
		return
	case yaml.AliasNode:
		decodeValue(n.Alias, key, v, errs)
		return
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			*errs = append(*errs, At(n, key, err)...)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		v.SetZero()
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		decodeValue(n, key, v.Elem(), errs)
	case reflect.Struct:
		decodeStruct(n, key, v, errs)
	case reflect.Map:
		decodeMap(n, key, v, errs)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			*errs = append(*errs, newError(n, key, "want a list, got "+describe(n)))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			decodeValue(c, fmt.Sprintf("%s[%d]", key, i), s.Index(i), errs)
		}
		v.Set(s)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			*errs = append(*errs, newError(n, key, err.Error()))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		decodeScalar(n, key, v, errs)
	}
}

func decodeScalar(n *yaml.Node, key string, v reflect.Value, errs *Errors) {
	if n.Kind != yaml.ScalarNode {
		*errs = append(*errs, newError(n, key, "want a "+kindName(v)+", got "+describe(n)))
		return
	}
	s := n.Value
	bad := func() {
		*errs = append(*errs, newError(n, key, fmt.Sprintf("want a %s, got %q", kindName(v), s)))
	}
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			*errs = append(*errs, newError(n, key, fmt.Sprintf("want a duration such as 10s or 500ms, got %q", s)))
			return
		}
		v.SetInt(int64(d))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || n.Tag == "!!str" && n.Style != 0 {
			bad()
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil || v.OverflowInt(i) {
			bad()
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil || v.OverflowUint(i) {
			bad()
			return
		}
		v.SetUint(i)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) {
			bad()
			return
		}
		v.SetFloat(f)
	default:
		*errs = append(*errs, newError(n, key, "cannot decode into "+v.Type().String()))
	}
}

func decodeStruct(n *yaml.Node, key string, v reflect.Value, errs *Errors) {
	if n.Kind != yaml.MappingNode {
		*errs = append(*errs, newError(n, key, "want a mapping, got "+describe(n)))
		return
	}
	fields := map[string]reflect.Value{}
	var names []string
	collectFields(v, fields, &names)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		path := join(key, k.Value)
		if seen[k.Value] {
			*errs = append(*errs, newError(k, path, "duplicate key"))
			continue
		}
		seen[k.Value] = true
		f, ok := fields[k.Value]
		if !ok {
			*errs = append(*errs, newError(k, path, "unknown key"+suggest(k.Value, names)))
			continue
		}
		decodeValue(val, path, f, errs)
	}
}

func collectFields(v reflect.Value, fields map[string]reflect.Value, names *[]string) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv.Set(reflect.New(fv.Type().Elem()))
				}
				fv = fv.Elem()
			}
			collectFields(fv, fields, names)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		fields[name] = v.Field(i)
		*names = append(*names, name)
	}
}

func decodeMap(n *yaml.Node, key string, v reflect.Value, errs *Errors) {
	if n.Kind != yaml.MappingNode {
		*errs = append(*errs, newError(n, key, "want a mapping, got "+describe(n)))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		*errs = append(*errs, newError(n, key, "cannot decode into "+v.Type().String()))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		path := join(key, k.Value)
		if seen[k.Value] {
			*errs = append(*errs, newError(k, path, "duplicate key"))
			continue
		}
		seen[k.Value] = true
		elem := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key())); old.IsValid() {
			elem.Set(old)
		}
		decodeValue(val, path, elem, errs)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func kindName(v reflect.Value) string {
	if v.Type() == durationType {
		return "duration"
	}
	switch v.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping"
	}
	return v.Type().String()
}

// suggest names the closest known key when the unknown one looks like a typo.
func suggest(got string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(got, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
