package transform

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func record(b *event.Batch) *event.Record {
	r := b.Next()
	r.Body = event.Map([]event.KeyValue{
		{Key: "msg", Value: event.String("checkout failed")},
		{Key: "http", Value: event.Map([]event.KeyValue{{Key: "status", Value: event.Int(502)}, {Key: "route", Value: event.String("/pay")}})},
	})
	r.Attrs = append(r.Attrs,
		event.KeyValue{Key: "lvl", Value: event.String("error")},
		event.KeyValue{Key: "user", Value: event.Map([]event.KeyValue{{Key: "id", Value: event.String("u-17")}, {Key: "geo", Value: event.Map([]event.KeyValue{{Key: "cc", Value: event.String("DE")}})}})},
		event.KeyValue{Key: "k8s.pod.name", Value: event.String("web-1")},
		event.KeyValue{Key: "note", Value: event.String("naïve café receipt")},
	)
	return r
}

func TestTransform(t *testing.T) {
	tests := []struct {
		name    string
		actions []Action
	}{
		{"set", []Action{{Set: "attributes.env", Value: "prod"}, {Set: "attributes.lvl", Value: 3}}},
		{"rename", []Action{{Rename: "attributes.lvl", To: "attributes.level"}, {Rename: "attributes.missing", To: "attributes.x"}}},
		{"move to body", []Action{{Move: "body.msg", To: "attributes.message"}, {Move: "attributes.note", To: "body"}}},
		{"copy", []Action{{Copy: "body.msg", To: "attributes.message"}, {Copy: "attributes.lvl", To: "severity_text"}}},
		{"delete", []Action{{Delete: "attributes.user"}, {Delete: "body.http"}}},
		{"flatten", []Action{{Flatten: "attributes"}, {Flatten: "body", Separator: "_"}}},
		{"flatten then unflatten", []Action{{Flatten: "attributes"}, {Unflatten: "attributes"}}},
		{"unflatten dotted", []Action{{Unflatten: "attributes"}}},
		{"truncate utf8", []Action{{Truncate: "attributes.note", MaxBytes: 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Transform(Options{Actions: tt.actions}, Env{})
			if err != nil {
				t.Fatal(err)
			}
			b := event.NewBatch()
			record(b)
			out := stagetest.Run(s, b)
			stagetest.Golden(t, filepath.Join("testdata", "transform_"+strings.ReplaceAll(tt.name, " ", "_")+".golden"), stagetest.Render(out, false), *update)
		})
	}
}

func TestRedact(t *testing.T) {
	lines := stagetest.FileLines(t, filepath.Join("testdata", "secrets.log"))
	for _, mode := range []string{"mask", "hash"} {
		t.Run(mode, func(t *testing.T) {
			s, err := Redact(RedactOptions{Presets: []string{"credit_card", "bearer_token", "email"}, Patterns: []string{`(?i)password=(\S+)`}, Keys: []string{"Authorization"}, Mode: mode, Salt: "s1"})
			if err != nil {
				t.Fatal(err)
			}
			acks := stagetest.NewAcks()
			b, _ := acks.Batch(stagetest.File{Path: "/var/log/app/secrets.log", Ino: 1}, 0, lines...)
			b.Records[0].Attrs = append(b.Records[0].Attrs, event.KeyValue{Key: "authorization", Value: event.String("Basic ZGVwbG95Omh1bnRlcjI=")})
			out := stagetest.Run(s, b)
			stagetest.Golden(t, filepath.Join("testdata", "redact_"+mode+".golden"), stagetest.Render(out, false), *update)
		})
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{"4111 1111 1111 1111": true, "4111-1111-1111-1112": false, "5500005555555559": true, "1234567890123": false} {
		if got := luhnValid(s); got != want {
			t.Errorf("luhnValid(%q) = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkTransform(b *testing.B) {
	lines := stagetest.FileLines(b, filepath.Join("testdata", "secrets.log"))
	b.Run("transform", func(b *testing.B) {
		s, _ := Transform(Options{Actions: []Action{{Rename: "attributes.log.file.name", To: "attributes.file"}, {Truncate: "body", MaxBytes: 64}}}, Env{})
		stagetest.Bench(b, s, lines, 1000)
	})
	// A computed set against a constant one: the cost of evaluating an
	// expression per record (the program is compiled once per run).
	for _, bb := range []struct {
		name   string
		action Action
	}{
		{"set_constant", Action{Set: "attributes.team", Value: "payments"}},
		{"set_expr_constant", Action{Set: "attributes.team", Expr: `"payments"`}},
		{"set_expr_attribute", Action{Set: "attributes.file", Expr: `attributes["log.file.name"]`}},
		{"set_expr_concat", Action{Set: "attributes.route", Expr: `source + " " + attributes["log.file.name"]`}},
		{"set_expr_int", Action{Set: "attributes.size", Expr: `len(body) * 2`}},
		{"set_severity_conditional", Action{Set: "severity", Expr: `body contains "error" ? ERROR : INFO`}},
		{"when_constant", Action{Set: "attributes.team", Value: "payments", When: `attributes["log.file.name"] == "0.log"`}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			s, err := Transform(Options{Actions: []Action{bb.action}}, Env{})
			if err != nil {
				b.Fatal(err)
			}
			stagetest.Bench(b, s, lines, 1000)
		})
	}
	b.Run("redact", func(b *testing.B) {
		s, _ := Redact(RedactOptions{Presets: []string{"credit_card", "bearer_token", "email"}})
		stagetest.Bench(b, s, lines, 1000)
	})
	b.Run("redact_clean", func(b *testing.B) {
		s, _ := Redact(RedactOptions{Presets: []string{"credit_card", "bearer_token", "email"}})
		stagetest.Bench(b, s, []string{"GET /api/v1/orders/8812 200 12ms user=u-4821 region=eu-west-1"}, 1000)
	})
}
