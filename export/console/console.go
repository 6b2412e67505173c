// Package console writes records readably, one line per record, for demos
// and debugging.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// Options configure the console exporter (type console).
type Options struct {
	// Format is text (the default) or json (one object per line).
	Format string `yaml:"format"`
	// Output is stdout (the default) or stderr; the agent maps it to the writer.
	Output string `yaml:"output"`

	export.QueueOptions `yaml:",inline"`
}

// DefaultOptions returns text on stdout with the default queue.
func DefaultOptions() Options {
	return Options{Format: "text", Output: "stdout", QueueOptions: export.DefaultQueueOptions()}
}

// Validate reports invalid options as config.FieldErrors.
func (o Options) Validate() error {
	var errs []error
	if o.Format != "text" && o.Format != "json" {
		errs = append(errs, config.Fieldf("format", "must be text or json; got %q", o.Format))
	}
	if o.Output != "stdout" && o.Output != "stderr" {
		errs = append(errs, config.Fieldf("output", "must be stdout or stderr; got %q", o.Output))
	}
	if err := o.QueueOptions.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Client writes records to w. It implements export.Client; Send is safe for
// concurrent use and writes each request's lines in one Write.
//
// Text lines read:
//
//	2024-05-01T12:00:00.000Z INFO  body text  key=value key2="two words"  {service.name=shop}
//
// where the time is the record's time (observed time when unknown), then the
// severity (text as found, else the OpenTelemetry name), the body, the
// attributes and, in braces, the record's resource.
type Client struct {
	w    io.Writer
	json bool
	mu   sync.Mutex
	buf  []byte
}

// New returns a console client writing to w in the format of o.
func New(w io.Writer, o Options) *Client {
	return &Client{w: w, json: o.Format == "json"}
}

// Send writes the records of batches. A write error is retryable.
func (c *Client) Send(_ context.Context, batches []*event.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf := c.buf[:0]
	for _, b := range batches {
		for i := range b.Records {
			r := &b.Records[i]
			res := r.Resource
			if res == nil {
				res = b.Resource
			}
			if c.json {
				buf = appendJSON(buf, r, res)
			} else {
				buf = appendText(buf, r, res)
			}
		}
	}
	c.buf = buf
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("write records to console: %w", err)
	}
	return nil
}

// Close does nothing: the writer belongs to the caller.
func (c *Client) Close() error { return nil }

func recordTime(r *event.Record) int64 {
	if r.Time != 0 {
		return r.Time
	}
	return r.Observed
}

func severity(r *event.Record) string {
	if r.SeverityText != "" {
		return r.SeverityText
	}
	return r.Severity.String()
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func appendText(dst []byte, r *event.Record, res *event.Resource) []byte {
	if t := recordTime(r); t != 0 {
		dst = time.Unix(0, t).UTC().AppendFormat(dst, timeLayout)
	} else {
		dst = append(dst, '-')
	}
	dst = append(dst, ' ')
	sev := severity(r)
	if sev == "" {
		sev = "-"
	}
	dst = append(dst, sev...)
	for n := len(sev); n < 5; n++ {
		dst = append(dst, ' ')
	}
	dst = append(dst, ' ')
	dst = appendTextValue(dst, r.Body, false)
	if len(r.Attrs) > 0 {
		dst = append(dst, ' ', ' ')
		dst = appendTextKVs(dst, r.Attrs)
	}
	if flags := event.FlagAttrs(r.Flags); len(flags) > 0 {
		dst = append(dst, ' ', ' ')
		dst = appendTextKVs(dst, flags)
	}
	if res != nil && len(res.Attrs) > 0 {
		dst = append(dst, ' ', ' ', '{')
		dst = appendTextKVs(dst, res.Attrs)
		dst = append(dst, '}')
	}
	return append(dst, '\n')
}

func appendTextKVs(dst []byte, kvs []event.KeyValue) []byte {
	for i, kv := range kvs {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = appendTextString(dst, kv.Key, true)
		dst = append(dst, '=')
		dst = appendTextValue(dst, kv.Value, true)
	}
	return dst
}

// appendTextValue writes v; strings are quoted when quote is set and they
// hold spaces, quotes or control characters, and always escaped so that one
// record stays on one line.
func appendTextValue(dst []byte, v event.Value, quote bool) []byte {
	switch v.Kind {
	case event.KindString:
		return appendTextString(dst, v.Str, quote)
	case event.KindBytes:
		return strconv.AppendQuote(dst, v.Str)
	case event.KindMap:
		dst = append(dst, '{')
		dst = appendTextKVs(dst, v.List)
		return append(dst, '}')
	case event.KindArray:
		dst = append(dst, '[')
		for i, el := range v.List {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = appendTextValue(dst, el.Value, true)
		}
		return append(dst, ']')
	case event.KindEmpty:
		return dst
	}
	return append(dst, v.Text()...)
}

func appendTextString(dst []byte, s string, quote bool) []byte {
	needs := !utf8.ValidString(s)
	for i := 0; i < len(s) && !needs; i++ {
		c := s[i]
		needs = c < ' ' || c == 0x7f || (quote && (c == ' ' || c == '"' || c == '='))
	}
	if quote && s == "" {
		needs = true
	}
	if !needs {
		return append(dst, s...)
	}
	if quote {
		return strconv.AppendQuote(dst, s)
	}
	q := strconv.AppendQuote(nil, s)
	return append(dst, q[1:len(q)-1]...)
}

// jsonRecord is the shape of a json line.
type jsonRecord struct {
	Time         string         `json:"time,omitempty"`
	Observed     string         `json:"observed,omitempty"`
	Severity     int            `json:"severity,omitempty"`
	SeverityText string         `json:"severity_text,omitempty"`
	Body         any            `json:"body"`
	Attributes   map[string]any `json:"attributes,omitempty"`
	TraceID      string         `json:"trace_id,omitempty"`
	SpanID       string         `json:"span_id,omitempty"`
	Resource     map[string]any `json:"resource,omitempty"`
}

func appendJSON(dst []byte, r *event.Record, res *event.Resource) []byte {
	jr := jsonRecord{
		Severity:     int(r.Severity),
		SeverityText: severity(r),
		Body:         jsonValue(r.Body),
		Attributes:   jsonMap(r.Attrs),
	}
	if flags := event.FlagAttrs(r.Flags); len(flags) > 0 {
		if jr.Attributes == nil {
			jr.Attributes = map[string]any{}
		}
		for _, kv := range flags {
			jr.Attributes[kv.Key] = true
		}
	}
	if r.Time != 0 {
		jr.Time = time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano)
	}
	if r.Observed != 0 {
		jr.Observed = time.Unix(0, r.Observed).UTC().Format(time.RFC3339Nano)
	}
	if r.TraceID != [16]byte{} {
		jr.TraceID = fmt.Sprintf("%x", r.TraceID)
	}
	if r.SpanID != [8]byte{} {
		jr.SpanID = fmt.Sprintf("%x", r.SpanID)
	}
	if res != nil {
		jr.Resource = jsonMap(res.Attrs)
	}
	line, err := json.Marshal(jr)
	if err != nil {
		// Only non-finite doubles could fail; jsonValue turns them into strings.
		line = strconv.AppendQuote([]byte(`{"error":`), err.Error())
		line = append(line, '}')
	}
	dst = append(dst, line...)
	return append(dst, '\n')
}

func jsonMap(kvs []event.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = jsonValue(kv.Value)
	}
	return m
}

// jsonValue converts v for encoding/json: bytes become base64 (as []byte),
// non-finite doubles become strings, invalid UTF-8 is replaced by encoding/json.
func jsonValue(v event.Value) any {
	switch v.Kind {
	case event.KindString:
		return v.Str
	case event.KindBytes:
		return []byte(v.Str)
	case event.KindInt:
		return v.AsInt()
	case event.KindDouble:
		f := v.AsDouble()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return v.Text()
		}
		return f
	case event.KindBool:
		return v.AsBool()
	case event.KindMap:
		m := jsonMap(v.List)
		if m == nil {
			m = map[string]any{}
		}
		return m
	case event.KindArray:
		a := make([]any, len(v.List))
		for i, el := range v.List {
			a[i] = jsonValue(el.Value)
		}
		return a
	}
	return nil
}
