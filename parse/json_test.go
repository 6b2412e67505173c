package parse

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
	"github.com/valyala/fastjson/fastfloat"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

// parseJSON runs p over line held in b's arena, as the tailer hands it over.
func parseJSON(p *jsonParser, b *event.Batch, line string) (event.Record, string, bool) {
	r := event.Record{Body: event.String(b.CopyString(line))}
	msg, ok := p.parse(b, &r)
	return r, msg, ok
}

func TestJSONValues(t *testing.T) {
	tests := []struct {
		line string
		want event.Value // the attribute "a"
	}{
		{`{"a":0}`, event.Int(0)},
		{`{"a":-0}`, event.Int(0)},
		{`{"a":-0.0}`, event.Double(math.Copysign(0, -1))},
		{`{"a":1e3}`, event.Double(1000)},
		{`{"a":1E+3}`, event.Double(1000)},
		{`{"a":2.5e-1}`, event.Double(0.25)},
		{`{"a":123456789012345678}`, event.Int(123456789012345678)},
		{`{"a":-12345678901234567}`, event.Int(-12345678901234567)},
		{`{"a":-123456789012345678}`, event.Double(-123456789012345678)},
		{`{"a":1234567890123456789}`, event.Double(1234567890123456789)},
		{`{"a":123456789012345678901}`, event.Double(123456789012345678901)},
		{`{"a":true}`, event.Bool(true)},
		{`{"a":false}`, event.Bool(false)},
		{`{"a":null}`, event.Value{}},
		{`{"a":""}`, event.String("")},
		{` { "a" : "x" } `, event.String("x")},
		{"{\t\"a\"\r\n:\"x\"\n}", event.String("x")},
		{`{"a":"\"\\\/\b\f\n\r\t"}`, event.String("\"\\/\b\f\n\r\t")},
		{`{"a":"caf\u00e9 \u00E9"}`, event.String("café é")},
		{`{"a":"\ud83d\ude80"}`, event.String("🚀")},
		{`{"a":"\ud83d"}`, event.String("\ufffd")},
		{`{"a":"\ude80x"}`, event.String("\ufffdx")},
		{`{"a":"\ud83d\u0041"}`, event.String("\ufffdA")},
		{`{"a":"\ud83d\ud83d\ude80"}`, event.String("\ufffd🚀")},
		{"{\"a\":\"\xff\xfe\"}", event.String("\xff\xfe")},
		{`{"a":"日本語"}`, event.String("日本語")},
		{`{"a":{}}`, event.Map(nil)},
		{`{"a":[]}`, event.Array(nil)},
		{`{"a":{"b":[1,{"c":null}],"b":2}}`, event.Map([]event.KeyValue{
			{Key: "b", Value: event.Array([]event.KeyValue{{Value: event.Int(1)}, {Value: event.Map([]event.KeyValue{{Key: "c"}})}})},
			{Key: "b", Value: event.Int(2)},
		})},
		{`{"\u0061":1}`, event.Int(1)},
		// Extensions: raw control characters in strings, NaN and infinities.
		{"{\"a\":\"tab\there\nnewline\"}", event.String("tab\there\nnewline")},
		{`{"a":NaN}`, event.Double(math.NaN())},
		{`{"a":Infinity}`, event.Double(math.Inf(1))},
		{`{"a":-Infinity}`, event.Double(math.Inf(-1))},
		{`{"a":1,"a":2}`, event.Int(1)},
		{`{"a":"` + strings.Repeat(`0123456\"`, 9) + `"}`, event.String(strings.Repeat(`0123456"`, 9))},
	}
	p := &jsonParser{}
	for _, tt := range tests {
		r, msg, ok := parseJSON(p, event.NewBatch(), tt.line)
		if !ok {
			t.Errorf("%s: %s", tt.line, msg)
			continue
		}
		if got, _ := event.Lookup(r.Attrs, "a"); !got.Equal(tt.want) {
			t.Errorf("%s: got %s, want %s", tt.line, got.Text(), tt.want.Text())
		}
	}
}

func TestJSONErrors(t *testing.T) {
	tests := []struct{ line, want string }{
		{``, errJSON},
		{`   `, errJSON},
		{`{`, errJSON},
		{`{"a"}`, errJSON},
		{`{"a":}`, errJSON},
		{`{"a":1,}`, errJSON},
		{`{"a":1 "b":2}`, errJSON},
		{`{a:1}`, errJSON},
		{`{"a":[1,]}`, errJSON},
		{`{"a":[1 2]}`, errJSON},
		{`{"a":"x}`, errJSON},
		{`{"a":"x\"}`, errJSON},
		{`{"a":1}x`, errJSON},
		{`{"a":1}{}`, errJSON},
		{`{"a":tru}`, errJSON},
		{`{"a":nul}`, errJSON},
		// fastjson accepted these (see FuzzJSONDifferential).
		{`{"a":01}`, errJSON},
		{`{"a":1.}`, errJSON},
		{`{"a":.5}`, errJSON},
		{`{"a":+1}`, errJSON},
		{`{"a":1e}`, errJSON},
		{`{"a":--1}`, errJSON},
		{`{"a":1-2}`, errJSON},
		{`{"a":nan}`, errJSON},
		{`{"a":-NaN}`, errJSON},
		{`{"a":Inf}`, errJSON},
		{`{"a":-Inf}`, errJSON},
		{`{"a":"\x"}`, errJSON},
		{`{"a":"\u12"}`, errJSON},
		{`{"a":"\u12g4"}`, errJSON},
		{"{\"a\\\n\":1}", errJSON},
		{strings.Repeat(`{"a":`, jsonMaxDepth+1) + "1" + strings.Repeat("}", jsonMaxDepth+1), errJSON},
		{strings.Repeat("[", jsonMaxDepth) + "1" + strings.Repeat("]", jsonMaxDepth), errJSON},
		{strings.Repeat("[", jsonMaxDepth) + strings.Repeat("]", jsonMaxDepth), errNotObject},
		{`[1,2]`, errNotObject},
		{` "x" `, errNotObject},
		{`12`, errNotObject},
		{`null`, errNotObject},
		{`[1,2`, errJSON},
		{`"x" y`, errJSON},
	}
	p := &jsonParser{}
	for _, toBody := range []bool{false, true} {
		p.toBody = toBody
		for _, tt := range tests {
			if _, msg, ok := parseJSON(p, event.NewBatch(), tt.line); ok || msg != tt.want {
				t.Errorf("%.60s: got %q, want %q", tt.line, msg, tt.want)
			}
		}
	}
	if _, _, ok := parseJSON(p, event.NewBatch(), strings.Repeat(`{"a":`, jsonMaxDepth-1)+"1"+strings.Repeat("}", jsonMaxDepth-1)); !ok {
		t.Errorf("%d levels of nesting do not parse", jsonMaxDepth)
	}
	if msg, ok := p.parse(event.NewBatch(), &event.Record{Body: event.Int(1)}); ok || msg != errNotString {
		t.Errorf("int body: got %q, want %q", msg, errNotString)
	}
}

// TestJSONAliases checks that strings without escapes are substrings of the
// body, keys are interned heap strings, and a line allocates nothing once
// the parser has seen its keys.
func TestJSONAliases(t *testing.T) {
	line := `{"ts":"2026-01-02T03:04:05.000042Z","level":"info","seq":42,"msg":"say \"hi\"","n":{"k":[1,"x"]}}`
	p := &jsonParser{}
	b := event.NewBatch()
	r, msg, ok := parseJSON(p, b, line)
	if !ok {
		t.Fatal(msg)
	}
	body := r.Body.Str
	inBody := func(s string) bool {
		start := uintptr(unsafe.Pointer(unsafe.StringData(body)))
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return p >= start && p < start+uintptr(len(body))
	}
	if v, _ := event.Lookup(r.Attrs, "ts"); !inBody(v.Str) {
		t.Errorf("ts %q is a copy, want a substring of the body", v.Str)
	}
	if v, _ := event.Lookup(r.Attrs, "msg"); v.Str != `say "hi"` || inBody(v.Str) {
		t.Errorf("msg = %q in body %v, want the unescaped copy", v.Str, inBody(v.Str))
	}
	for _, kv := range r.Attrs {
		if inBody(kv.Key) {
			t.Errorf("key %q aliases the body", kv.Key)
		}
	}
	r2, _, _ := parseJSON(p, b, line)
	if unsafe.StringData(r2.Attrs[0].Key) != unsafe.StringData(r.Attrs[0].Key) {
		t.Errorf("key %q is not the interned one", r2.Attrs[0].Key)
	}
	// The arena grows by doubling, a few times in a thousand lines.
	rec := event.Record{Body: r.Body, Attrs: make([]event.KeyValue, 0, 8)}
	allocs := testing.AllocsPerRun(1000, func() {
		rec.Attrs = rec.Attrs[:0]
		if _, ok := p.parse(b, &rec); !ok {
			t.Fatal("no parse")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per line, want 0", allocs)
	}
}

// surrogateEscape matches a \u escape of a UTF-16 surrogate.
var surrogateEscape = regexp.MustCompile(`\\[uU][dD][89a-fA-F]`)

// FuzzJSONDifferential compares the json parser with fastjson, the library
// it replaced, and with encoding/json, line by line through one parser (so
// that keys seen on earlier lines are reused). The verdict and the values
// must be fastjson's, except where fastjson is lenient or lossy:
//
//   - fastjson accepts invalid JSON that we reject (encoding/json's Valid is
//     the judge): number-like runs such as "01", "1.", ".5", "+1", "1-2",
//     "nan", "-inf"; unknown escapes ("\x") and a \u without four hex digits,
//     which it keeps as written;
//   - both accept two extensions of JSON: raw control characters inside
//     strings and the numbers NaN, Infinity and -Infinity; the values must
//     then be fastjson's;
//   - an escaped surrogate that is not half of a pair: fastjson keeps it as
//     written ("\ud800") or, followed by any other \u escape, merges both
//     into U+FFFD, losing the second character; we write U+FFFD for the lone
//     half, as encoding/json does, which is then the reference.
//
// Invalid UTF-8 inside strings is kept byte for byte, as fastjson does
// (encoding/json replaces it, so it is the reference only for valid UTF-8).
func FuzzJSONDifferential(f *testing.F) {
	for _, l := range stagetest.FileLines(f, "testdata/json.log") {
		f.Add(l)
	}
	for _, l := range []string{
		`{"a":01,"b":1.,"c":.5,"d":+1,"e":1-2,"f":nan,"g":-Inf}`,
		`{"a":"\x\u12\ud800\udc00\ud800\u0041\udc00"}`,
		"{\"a\":\"\t\xff\"}",
		`{"a":-0,"b":1e3,"c":-123456789012345678,"d":[[],{}]}` + "\n" + `{"b":1,"a":2}`,
	} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, data string) {
		for _, toBody := range []bool{false, true} {
			p := &jsonParser{toBody: toBody}
			for _, line := range strings.Split(data, "\n") {
				diffJSON(t, p, line)
			}
		}
	})
}

// jsonExtension matches what the parser accepts beyond RFC 8259.
var jsonExtension = regexp.MustCompile(`[\x00-\x1f]|NaN|Infinity`)

func diffJSON(t *testing.T, p *jsonParser, line string) {
	t.Helper()
	b := event.NewBatch()
	r, msg, ok := parseJSON(p, b, line)
	got := event.Map(r.Attrs)
	if p.toBody && ok {
		got = r.Body
	}
	want, wantMsg, wantOK := fastjsonRef(line)
	valid := json.Valid([]byte(line))
	switch {
	case !valid && ok:
		// Invalid JSON accepted: only the extensions, and as fastjson does.
		if !jsonExtension.MatchString(line) || !wantOK {
			t.Fatalf("%q: accepted invalid JSON (fastjson: %v %q)", line, wantOK, wantMsg)
		}
		if !surrogateEscape.MatchString(line) && !got.Equal(want) {
			t.Fatalf("%q:\n got      %s\n fastjson %s", line, got.Text(), want.Text())
		}
		return
	case !valid && msg == errNotObject && wantMsg == errNotObject && jsonExtension.MatchString(line):
		// Not an object, with or without the extensions.
		return
	case !valid && (wantOK || wantMsg == errNotObject):
		// fastjson accepted invalid JSON.
		if ok || msg != errJSON {
			t.Fatalf("%q: got %q, want %q (invalid JSON that fastjson accepts)", line, msg, errJSON)
		}
		return
	case ok != wantOK || msg != wantMsg:
		t.Fatalf("%q: got %v %q, fastjson %v %q", line, ok, msg, wantOK, wantMsg)
	case !ok:
		return
	}
	if !surrogateEscape.MatchString(line) && !got.Equal(want) {
		t.Fatalf("%q:\n got      %s\n fastjson %s", line, got.Text(), want.Text())
	}
	if utf8.ValidString(line) {
		std, err := encodingJSONRef(line)
		if err != nil {
			t.Fatalf("%q: encoding/json: %v", line, err)
		}
		if !got.Equal(std) {
			t.Fatalf("%q:\n got           %s\n encoding/json %s", line, got.Text(), std.Text())
		}
	}
}

// fastjsonRef is the json parser as it was with fastjson: the fields of the
// line as a map, or the parse error.
func fastjsonRef(line string) (event.Value, string, bool) {
	var p fastjson.Parser
	v, err := p.Parse(line)
	if err != nil {
		return event.Value{}, errJSON, false
	}
	if v.Type() != fastjson.TypeObject {
		return event.Value{}, errNotObject, false
	}
	return fastjsonValue(v), "", true
}

func fastjsonValue(v *fastjson.Value) event.Value {
	switch v.Type() {
	case fastjson.TypeString:
		return event.String(string(v.GetStringBytes()))
	case fastjson.TypeNumber:
		raw := string(v.MarshalTo(nil))
		isInt := len(raw) <= 18 && !strings.ContainsAny(raw, ".eE")
		if isInt {
			return event.Int(fastfloat.ParseInt64BestEffort(raw))
		}
		return event.Double(fastfloat.ParseBestEffort(raw))
	case fastjson.TypeTrue:
		return event.Bool(true)
	case fastjson.TypeFalse:
		return event.Bool(false)
	case fastjson.TypeObject:
		var list []event.KeyValue
		v.GetObject().Visit(func(k []byte, v *fastjson.Value) {
			list = append(list, event.KeyValue{Key: string(k), Value: fastjsonValue(v)})
		})
		return event.Map(list)
	case fastjson.TypeArray:
		var list []event.KeyValue
		for _, e := range v.GetArray() {
			list = append(list, event.KeyValue{Value: fastjsonValue(e)})
		}
		return event.Array(list)
	}
	return event.Value{}
}

// encodingJSONRef decodes a valid JSON object with encoding/json's token
// stream, which keeps the order of keys and duplicates.
func encodingJSONRef(line string) (event.Value, error) {
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	v, err := tokenValue(d)
	if err != nil {
		return event.Value{}, err
	}
	if _, err := d.Token(); err != io.EOF {
		return event.Value{}, errors.New("trailing data")
	}
	return v, nil
}

func tokenValue(d *json.Decoder) (event.Value, error) {
	tok, err := d.Token()
	if err != nil {
		return event.Value{}, err
	}
	switch tok := tok.(type) {
	case string:
		return event.String(tok), nil
	case json.Number:
		if s := tok.String(); len(s) <= 18 && !strings.ContainsAny(s, ".eE") {
			return event.Int(fastfloat.ParseInt64BestEffort(s)), nil
		}
		return event.Double(fastfloat.ParseBestEffort(tok.String())), nil
	case bool:
		return event.Bool(tok), nil
	case nil:
		return event.Value{}, nil
	case json.Delim:
		var list []event.KeyValue
		for d.More() {
			var kv event.KeyValue
			if tok == '{' {
				k, err := d.Token()
				if err != nil {
					return event.Value{}, err
				}
				kv.Key = k.(string)
			}
			if kv.Value, err = tokenValue(d); err != nil {
				return event.Value{}, err
			}
			list = append(list, kv)
		}
		if _, err := d.Token(); err != nil {
			return event.Value{}, err
		}
		if tok == '{' {
			return event.Map(list), nil
		}
		return event.Array(list), nil
	}
	return event.Value{}, errors.New("unexpected token")
}
