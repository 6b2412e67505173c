package filter

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/event"
)

func TestExpr(t *testing.T) {
	now := func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }
	b := event.NewBatch()
	b.Source = "app"
	r := b.Next()
	r.Body = event.String("GET /pay 502")
	r.Time = time.Date(2024, 5, 1, 11, 59, 0, 0, time.UTC).UnixNano()
	r.Attrs = []event.KeyValue{{Key: "status", Value: event.Int(502)}, {Key: "user", Value: event.String("u-17")}}
	tests := []struct {
		src  string
		want any
	}{
		{`attributes.status % 100`, 2},
		{`attributes.status >= 500 ? ERROR : INFO`, int(event.SeverityError)},
		{`source + ":" + attributes.user`, "app:u-17"},
		{`now() - time`, time.Minute},
		{`now()`, now()},
		{`capture(body, "^(?P<method>\\S+) (?P<path>\\S+)")`, map[string]any{"method": "GET", "path": "/pay"}},
		{`capture(body, "^POST")`, nil},
		{`sha256("")`, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{`hash(attributes.user) == hash("u-17")`, true},
		{`hash(attributes.user) >= 0`, true},
		{`attributes.missing ?? "none"`, "none"},
	}
	for _, tt := range tests {
		e, err := CompileExpr(tt.src, now)
		if err != nil {
			t.Fatalf("CompileExpr(%s): %v", tt.src, err)
		}
		got, err := e.Eval(b, r)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %#v, %v; want %#v", tt.src, got, err, tt.want)
		}
	}
}

// TestConditionTime: conditions have the same clock and record time as
// expressions.
func TestConditionTime(t *testing.T) {
	now := func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }
	c, err := CompileWith(`now() - time > duration("1h")`, now)
	if err != nil {
		t.Fatal(err)
	}
	b := event.NewBatch()
	for _, tt := range []struct {
		ago  time.Duration
		want bool
	}{{2 * time.Hour, true}, {time.Minute, false}} {
		r := b.Next()
		r.Time = now().Add(-tt.ago).UnixNano()
		if got, err := c.Match(b, r); err != nil || got != tt.want {
			t.Errorf("record %v old: Match = %v, %v; want %v", tt.ago, got, err, tt.want)
		}
	}
	if _, err := Compile(`capture(body, "(") != nil`); err == nil || !strings.Contains(err.Error(), "(1:1)") {
		t.Errorf("bad capture pattern: err = %v, want one at 1:1", err)
	}
}
