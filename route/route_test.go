package route

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
)

func batch(acked *bool, bodies ...string) *event.Batch {
	b := event.NewBatch()
	for _, s := range bodies {
		r := b.Next()
		r.Body = event.String(s)
		if s == "warn" {
			r.Severity = event.SeverityWarn
		}
	}
	b.SetAck(func() { *acked = true })
	return b
}

func TestSplit(t *testing.T) {
	rules := []Rule{
		{When: `severity >= WARN`, Exporters: []string{"alerts"}, Continue: true},
		{When: `body startsWith "audit"`, Exporters: []string{"archive"}},
		{When: `body == "drop me"`, Exporters: []string{"nowhere"}},
		{Exporters: []string{"main"}},
	}
	tests := []struct {
		name     string
		bodies   []string
		want     map[string][]string
		unrouted uint64
	}{
		{"all default", []string{"a", "b"}, map[string][]string{"main": {"a", "b"}}, 0},
		{"continue fans out", []string{"warn", "a"}, map[string][]string{"alerts": {"warn"}, "main": {"warn", "a"}}, 0},
		{"first match wins", []string{"audit login", "x"}, map[string][]string{"archive": {"audit login"}, "main": {"x"}}, 0},
		{"empty batch", nil, map[string][]string{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := New(rules)
			if err != nil {
				t.Fatal(err)
			}
			acked := false
			b := batch(&acked, tt.bodies...)
			dests := tab.Split(b)
			got := map[string][]string{}
			for _, d := range dests {
				for _, r := range d.Batch.Records {
					got[d.Exporter] = append(got[d.Exporter], r.Body.Str)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			// The batch is acknowledged exactly when every destination released.
			for i, d := range slices.Clone(dests) {
				if acked {
					t.Fatalf("acknowledged after %d of %d destinations released", i, len(dests))
				}
				d.Batch.Done()
			}
			if !acked {
				t.Error("not acknowledged after every destination released")
			}
		})
	}
}

func TestSplitUnrouted(t *testing.T) {
	tab, err := New([]Rule{{When: `body == "keep"`, Exporters: []string{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	acked := false
	if d := tab.Split(batch(&acked, "x", "y")); d != nil {
		t.Errorf("Split returned %v for records matching nothing", d)
	}
	if !acked {
		t.Error("a batch routed nowhere must be acknowledged at once")
	}
	if got := tab.Unrouted(); got != 2 {
		t.Errorf("Unrouted() = %d, want 2", got)
	}
}

func TestNewErrors(t *testing.T) {
	for _, rules := range [][]Rule{
		{{When: `severity >=`, Exporters: []string{"a"}}},
		{{When: `true`}},
		{{When: `nosuchname == 1`, Exporters: []string{"a"}}},
	} {
		if _, err := New(rules); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", rules)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	tab, err := New([]Rule{
		{When: `severity >= ERROR`, Exporters: []string{"alerts"}, Continue: true},
		{Exporters: []string{"main"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	in := event.NewBatch()
	for i := range 1000 {
		r := in.Next()
		r.Body = event.String("GET /api/v1/orders 200 12ms")
		r.Severity = event.SeverityInfo
		if i%100 == 0 {
			r.Severity = event.SeverityError
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		in.Retain(1)
		for _, d := range tab.Split(in) {
			d.Batch.Done()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/event")
}
