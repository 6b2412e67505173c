package parse

import (
	"time"

	"github.com/valyala/fastjson"
	"github.com/valyala/fastjson/fastfloat"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// JSONOptions configure the json parser.
type JSONOptions struct {
	Options `yaml:",inline"`
}

// JSON returns a stage that parses each record's string body as a JSON
// object. Top-level fields become attributes (or the body, see
// [Options.Target]); nested objects and arrays are kept as map and array
// values; integers stay integers, other numbers become doubles, null becomes
// an empty value. A body that is not a JSON object is a parse error. now
// supplies the year for timestamp layouts without one.
func JSON(o JSONOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	f, err := newFields(o.Options, now, drops)
	if err != nil {
		return nil, optionsError("json", err)
	}
	return recordStage(f, func() recordParser { return &jsonParser{toBody: f.toBody} }), nil
}

type jsonParser struct {
	p      fastjson.Parser
	slab   slab
	keys   interner
	num    []byte
	toBody bool
}

const (
	errNotString = "parse: body is not a string"
	errJSON      = "parse json: invalid JSON"
	errNotObject = "parse json: not an object"
)

func (j *jsonParser) parse(b *event.Batch, r *event.Record) (string, bool) {
	if r.Body.Kind != event.KindString {
		return errNotString, false
	}
	v, err := j.p.Parse(r.Body.Str)
	if err != nil {
		return errJSON, false
	}
	o, err := v.Object()
	if err != nil {
		return errNotObject, false
	}
	if j.toBody {
		list := j.slab.take(o.Len())
		i := 0
		o.Visit(func(k []byte, v *fastjson.Value) {
			list[i] = event.KeyValue{Key: j.keys.key(b, k), Value: j.value(b, v)}
			i++
		})
		r.Body = event.Map(list)
		return "", true
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		r.Attrs = append(r.Attrs, event.KeyValue{Key: j.keys.key(b, k), Value: j.value(b, v)})
	})
	return "", true
}

// value converts v, copying strings into b's arena: fastjson's buffers are
// reused by the next Parse.
func (j *jsonParser) value(b *event.Batch, v *fastjson.Value) event.Value {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return event.String(b.Copy(s))
	case fastjson.TypeNumber:
		j.num = v.MarshalTo(j.num[:0])
		return number(j.num)
	case fastjson.TypeTrue:
		return event.Bool(true)
	case fastjson.TypeFalse:
		return event.Bool(false)
	case fastjson.TypeObject:
		o, _ := v.Object()
		list := j.slab.take(o.Len())
		i := 0
		o.Visit(func(k []byte, v *fastjson.Value) {
			list[i] = event.KeyValue{Key: j.keys.key(b, k), Value: j.value(b, v)}
			i++
		})
		return event.Map(list)
	case fastjson.TypeArray:
		a, _ := v.Array()
		list := j.slab.take(len(a))
		for i, e := range a {
			list[i].Value = j.value(b, e)
		}
		return event.Array(list)
	}
	return event.Value{}
}

// number converts a JSON number: integers that fit int64 stay integers.
func number(raw []byte) event.Value {
	isInt := len(raw) > 0 && len(raw) <= 18
	for _, c := range raw {
		if c == '.' || c == 'e' || c == 'E' {
			isInt = false
			break
		}
	}
	s := unsafeString(raw)
	if isInt {
		return event.Int(fastfloat.ParseInt64BestEffort(s))
	}
	return event.Double(fastfloat.ParseBestEffort(s))
}
