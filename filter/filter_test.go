package filter

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

type rec struct {
	body  string
	sev   event.Severity
	attrs map[string]event.Value
}

func makeBatch(path string, recs ...rec) *event.Batch {
	b := event.NewBatch()
	b.Path = path
	b.Resource = &event.Resource{Attrs: []event.KeyValue{{Key: "k8s.namespace.name", Value: event.String("shop")}}}
	for _, r := range recs {
		x := b.Next()
		x.Body = event.String(b.CopyString(r.body))
		x.Severity = r.sev
		keys := make([]string, 0, len(r.attrs))
		for k := range r.attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			x.Attrs = append(x.Attrs, event.KeyValue{Key: k, Value: r.attrs[k]})
		}
	}
	return b
}

func bodies(bs []*event.Batch) []string {
	var out []string
	for _, b := range bs {
		for _, r := range b.Records {
			out = append(out, r.Body.Str)
		}
	}
	return out
}

func run(s pipe.Stage, in ...*event.Batch) []*event.Batch {
	var out []*event.Batch
	for b := range s(slices.Values(in)) {
		out = append(out, b)
	}
	return out
}

var sample = []rec{
	{body: "GET /healthz 200", sev: event.SeverityDebug},
	{body: "GET /api/orders 200", sev: event.SeverityInfo, attrs: map[string]event.Value{"status": event.Int(200), "user": event.String("alice")}},
	{body: "POST /api/pay 502", sev: event.SeverityError, attrs: map[string]event.Value{"status": event.Int(502), "user": event.String("bob")}},
	{body: "slow query", sev: event.SeverityWarn, attrs: map[string]event.Value{"db": event.Map([]event.KeyValue{{Key: "ms", Value: event.Int(1500)}})}},
	{body: "audit: login alice", sev: event.SeverityInfo, attrs: map[string]event.Value{"status": event.String("ok")}},
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name       string
		opts       MatchOptions
		want       []string
		drops      int
		evalErrors int
	}{
		{"keep severity", MatchOptions{Keep: `severity >= WARN`}, []string{"POST /api/pay 502", "slow query"}, 3, 0},
		{"drop body", MatchOptions{Drop: `body contains "healthz"`}, []string{"GET /api/orders 200", "POST /api/pay 502", "slow query", "audit: login alice"}, 1, 0},
		// A record the condition cannot evaluate (no status, or a string
		// status compared with a number) is kept and counted, never lost.
		{"evaluation error keeps", MatchOptions{Keep: `attributes["status"] >= 500`}, []string{"GET /healthz 200", "POST /api/pay 502", "slow query", "audit: login alice"}, 1, 3},
		{"default for missing", MatchOptions{Keep: `(attributes["status"] ?? 0) == 502`}, []string{"POST /api/pay 502"}, 4, 0},
		{"attribute dot and in", MatchOptions{Keep: `attributes.user in ["alice", "bob"]`}, []string{"GET /api/orders 200", "POST /api/pay 502"}, 3, 0},
		{"nested map", MatchOptions{Keep: `(attr("db")?.ms ?? 0) > 1000`}, []string{"slow query"}, 4, 0},
		{"literal on the left", MatchOptions{Keep: `"bob" == attributes.user or severity_text startsWith "x"`}, []string{"POST /api/pay 502"}, 4, 0},
		{"not equal on missing or number", MatchOptions{Keep: `attributes["status"] != "ok"`}, []string{"GET /healthz 200", "GET /api/orders 200", "POST /api/pay 502", "slow query"}, 1, 0},
		{"many comparisons", MatchOptions{Keep: `body == "a" or body == "b" or body == "c" or body == "d" or body == "e" or body == "f" or body == "g" or body == "h" or body == "slow query" or body endsWith "502"`}, []string{"POST /api/pay 502", "slow query"}, 3, 0},
		{"resource", MatchOptions{Drop: `resource["k8s.namespace.name"] == "shop"`}, nil, 5, 0},
		{"regex", MatchOptions{Keep: `body matches "^(GET|POST) /api/"`}, []string{"GET /api/orders 200", "POST /api/pay 502"}, 3, 0},
		{"path", MatchOptions{Keep: `path endsWith "app.log" and severity_text == ""`}, bodies([]*event.Batch{makeBatch("", sample...)}), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counts := map[string]int{}
			count := func(reason string, n int) { counts[reason] += n }
			s, err := Match(tt.opts, nil, nil, count, count)
			if err != nil {
				t.Fatal(err)
			}
			out := run(s, makeBatch("/var/log/app.log", sample...))
			if diff := cmp.Diff(tt.want, bodies(out)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if got := counts["filter"]; got != tt.drops {
				t.Errorf("dropped %d, want %d", got, tt.drops)
			}
			if got := counts["filter_error"]; got != tt.evalErrors {
				t.Errorf("evaluation errors %d, want %d", got, tt.evalErrors)
			}
			if len(out) != 1 {
				t.Errorf("got %d batches, want the one batch (even when empty)", len(out))
			}
		})
	}
}

func TestMatchAcknowledgesDroppedRecords(t *testing.T) {
	s, err := Match(MatchOptions{Drop: `true`}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := makeBatch("/x", sample...)
	acked := false
	b.SetAck(func() { acked = true })
	out := run(s, b)
	if len(out) != 1 || len(out[0].Records) != 0 {
		t.Fatalf("want one empty batch, got %d batches", len(out))
	}
	out[0].Done()
	if !acked {
		t.Error("a batch whose records were all dropped was not acknowledged")
	}
}

func TestSample(t *testing.T) {
	var recs []rec
	for i := range 1000 {
		recs = append(recs, rec{body: "x", attrs: map[string]event.Value{"request_id": event.Int(int64(i % 100))}})
	}
	t.Run("rate is exact", func(t *testing.T) {
		s, err := Sample(SampleOptions{Rate: 0.1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(bodies(run(s, makeBatch("", recs...)))); got != 100 {
			t.Errorf("kept %d of 1000 at rate 0.1, want 100", got)
		}
	})
	t.Run("by field is all or nothing per value", func(t *testing.T) {
		s, err := Sample(SampleOptions{Rate: 0.3, By: "attributes.request_id"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := run(s, makeBatch("", recs...))
		perID := map[int64]int{}
		for _, r := range out[0].Records {
			v, _ := event.Lookup(r.Attrs, "request_id")
			perID[v.AsInt()]++
		}
		for id, n := range perID {
			if n != 10 {
				t.Errorf("request_id %d kept %d of its 10 records; sampling by field must keep all or none", id, n)
			}
		}
		if len(perID) < 15 || len(perID) > 45 {
			t.Errorf("kept %d of 100 ids at rate 0.3", len(perID))
		}
		// The same input gives the same decision in a second run (another host).
		again := run(s, makeBatch("", recs...))
		if diff := cmp.Diff(len(out[0].Records), len(again[0].Records)); diff != "" {
			t.Errorf("sampling by field is not deterministic: %s", diff)
		}
	})
}

func TestRateLimit(t *testing.T) {
	clock := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	counts := map[string]int{}
	s, err := RateLimit(RateLimitOptions{Rate: 2, Burst: 3, By: "attributes.user"}, now, func(r string, n int) { counts[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	five := func(user string) []rec {
		var rs []rec
		for range 5 {
			rs = append(rs, rec{body: user, attrs: map[string]event.Value{"user": event.String(user)}})
		}
		return rs
	}
	in := func(yield func(*event.Batch) bool) {
		// t=0: a burst of 3 per user passes.
		if !yield(makeBatch("", append(five("alice"), five("bob")...)...)) {
			return
		}
		// t=1s: 2 more tokens each.
		clock = clock.Add(time.Second)
		yield(makeBatch("", five("alice")...))
	}
	var got []int
	for b := range s(in) {
		got = append(got, len(b.Records))
	}
	if diff := cmp.Diff([]int{6, 2}, got); diff != "" {
		t.Errorf("records let through per batch (-want +got):\n%s", diff)
	}
	if counts["rate_limit"] != 4+3 {
		t.Errorf("dropped %d, want 7", counts["rate_limit"])
	}
}

func TestParseField(t *testing.T) {
	b := makeBatch("/var/log/a.log", rec{body: "hello", attrs: map[string]event.Value{"n": event.Int(42), "f": event.Double(1.5), "ok": event.Bool(true)}})
	r := &b.Records[0]
	tests := []struct {
		field, want string
		ok          bool
	}{
		{"body", "hello", true},
		{"attributes.n", "42", true},
		{"attributes.f", "1.5", true},
		{"attributes.ok", "true", true},
		{"attributes.missing", "", false},
		{"resource.k8s.namespace.name", "shop", true},
		{"path", "/var/log/a.log", true},
		{"trace_id", "", false},
	}
	for _, tt := range tests {
		f, err := ParseField(tt.field)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := f.AppendKey(nil, b, r)
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("%s: got %q %v, want %q %v", tt.field, got, ok, tt.want, tt.ok)
		}
	}
	if _, err := ParseField("attributes."); err == nil {
		t.Error(`ParseField("attributes.") succeeded`)
	}
}
