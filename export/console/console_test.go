package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
)

func testBatches() []*event.Batch {
	res := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("shop")}}}
	pod := &event.Resource{Attrs: []event.KeyValue{{Key: "k8s.pod.name", Value: event.String("api-1")}}}
	b := event.NewBatch()
	b.Resource = res
	b.Records = []event.Record{
		{
			Time: 1714564800123000000, Severity: event.SeverityInfo, Body: event.String("user logged in"),
			Attrs: []event.KeyValue{{Key: "user", Value: event.String("ada lovelace")}, {Key: "n", Value: event.Int(3)}},
		},
		{
			Observed: 1714564801000000000, Severity: event.SeverityError + 1, SeverityText: "",
			Body:     event.String("line one\nline two\x00"),
			Resource: pod,
		},
		{
			Body: event.Map([]event.KeyValue{
				{Key: "ok", Value: event.Bool(true)},
				{Key: "tags", Value: event.Array([]event.KeyValue{{Value: event.String("a")}, {Value: event.Double(1.5)}})},
			}),
			SeverityText: "warning",
		},
	}
	return []*event.Batch{b}
}

func TestText(t *testing.T) {
	var out bytes.Buffer
	c := New(&out, DefaultOptions())
	if err := c.Send(t.Context(), testBatches()); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`2024-05-01T12:00:00.123Z INFO  user logged in  user="ada lovelace" n=3  {service.name=shop}`,
		`2024-05-01T12:00:01.000Z ERROR2 line one\nline two\x00  {k8s.pod.name=api-1}`,
		`- warning {ok=true tags=[a 1.5]}  {service.name=shop}`,
	}, "\n") + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("text output (-want +got):\n%s", diff)
	}
}

func TestJSON(t *testing.T) {
	var out bytes.Buffer
	o := DefaultOptions()
	o.Format = "json"
	c := New(&out, o)
	if err := c.Send(t.Context(), testBatches()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []map[string]any{
		{
			"time": "2024-05-01T12:00:00.123Z", "severity": 9.0, "severity_text": "INFO", "body": "user logged in",
			"attributes": map[string]any{"user": "ada lovelace", "n": 3.0},
			"resource":   map[string]any{"service.name": "shop"},
		},
		{
			"observed": "2024-05-01T12:00:01Z", "severity": 18.0, "severity_text": "ERROR2", "body": "line one\nline two\x00",
			"resource": map[string]any{"k8s.pod.name": "api-1"},
		},
		{
			"severity_text": "warning", "body": map[string]any{"ok": true, "tags": []any{"a", 1.5}},
			"resource": map[string]any{"service.name": "shop"},
		},
	}
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		got = append(got, m)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json lines (-want +got):\n%s", diff)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteErrorIsRetryable(t *testing.T) {
	err := New(failingWriter{}, DefaultOptions()).Send(t.Context(), testBatches())
	if err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("Send = %v, want the write error", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"defaults", DefaultOptions(), ""},
		{"bad format", func() Options { o := DefaultOptions(); o.Format = "xml"; return o }(), `format: must be text or json; got "xml"`},
		{"bad output", func() Options { o := DefaultOptions(); o.Output = "file"; return o }(), `output: must be stdout or stderr; got "file"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := tt.o.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate = %q, want %q", got, tt.want)
			}
		})
	}
}
