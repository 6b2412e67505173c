package otlp

import (
	"testing"

	"github.com/logpump/logpump/event"
)

// fuzzValues turns fuzz input into batches: every byte picks what to build
// next, strings are cut from the input itself (so they hold arbitrary,
// often invalid, UTF-8), and nesting is bounded.
type fuzzValues struct {
	data []byte
}

func (f *fuzzValues) byte() byte {
	if len(f.data) == 0 {
		return 0
	}
	c := f.data[0]
	f.data = f.data[1:]
	return c
}

func (f *fuzzValues) str() string {
	n := min(int(f.byte()%32), len(f.data))
	s := string(f.data[:n])
	f.data = f.data[n:]
	return s
}

func (f *fuzzValues) u64() uint64 {
	var v uint64
	for range 8 {
		v = v<<8 | uint64(f.byte())
	}
	return v
}

func (f *fuzzValues) value(depth int) event.Value {
	kind := event.Kind(f.byte() % 8)
	if depth > 4 && (kind == event.KindMap || kind == event.KindArray) {
		kind = event.KindString
	}
	switch kind {
	case event.KindString:
		return event.String(f.str())
	case event.KindBytes:
		return event.Bytes(f.str())
	case event.KindInt, event.KindDouble, event.KindBool:
		v := event.Value{Kind: kind, Num: f.u64()}
		if kind == event.KindBool {
			v.Num &= 1
		}
		return v
	case event.KindMap, event.KindArray:
		n := int(f.byte() % 4)
		list := make([]event.KeyValue, n)
		for i := range list {
			if kind == event.KindMap {
				list[i].Key = f.str()
			}
			list[i].Value = f.value(depth + 1)
		}
		return event.Value{Kind: kind, List: list}
	}
	return event.Value{}
}

func (f *fuzzValues) batches() []*event.Batch {
	resources := []*event.Resource{nil, {}, {Attrs: []event.KeyValue{{Key: f.str(), Value: f.value(3)}}}}
	var out []*event.Batch
	for len(f.data) > 0 && len(out) < 8 {
		b := event.NewBatch()
		b.Resource = resources[int(f.byte())%len(resources)]
		for n := int(f.byte() % 5); n > 0 && len(f.data) > 0; n-- {
			r := b.Next()
			r.Time = int64(f.u64())
			r.Observed = int64(f.u64() >> 32)
			r.Severity = event.Severity(f.byte() % 30)
			r.SeverityText = f.str()
			r.Body = f.value(0)
			for k := int(f.byte() % 4); k > 0; k-- {
				r.Attrs = append(r.Attrs, event.KeyValue{Key: f.str(), Value: f.value(1)})
			}
			if f.byte()%2 == 1 {
				r.TraceID[f.byte()%16] = f.byte()
				r.SpanID[f.byte()%8] = f.byte()
			}
			if c := f.byte(); c%3 == 0 {
				r.Resource = resources[int(c/3)%len(resources)]
			}
		}
		out = append(out, b)
	}
	return out
}

// FuzzAppendRequest checks that whatever the records hold, the encoding
// decodes with the generated types to the request they describe.
func FuzzAppendRequest(f *testing.F) {
	f.Add([]byte("\x00\x01\x03\x00abc\x01\x02\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte("\x02\x02\x02\xff\xfe\x01\x06\x03\x02k\xff\x01\x03\xc3("))
	f.Add([]byte("\x01\x01\x04\x10\x10\x10\x10\x10\x10\x10\x10\x07\x07\x07\x07\x07\x07\x07\x07\x11\x04INFO\x07\x03\x06\x06\x06\x06\x05\x02a\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEncoding(t, (&fuzzValues{data: data}).batches())
	})
}
