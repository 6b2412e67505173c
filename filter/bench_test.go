package filter

import (
	"testing"
	"time"

	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

func BenchmarkFilter(b *testing.B) {
	lines := []string{
		"GET /api/v1/orders/8812 200 12ms",
		"GET /healthz 200 0ms",
		"POST /api/v1/pay 502 1204ms",
	}
	benches := []struct {
		name  string
		stage func() (pipe.Stage, error)
	}{
		{"match_severity", func() (pipe.Stage, error) {
			return Match(MatchOptions{Keep: `severity >= WARN or severity == 0`}, nil, nil, nil, nil)
		}},
		{"match_body_contains", func() (pipe.Stage, error) {
			return Match(MatchOptions{Drop: `body contains "/healthz"`}, nil, nil, nil, nil)
		}},
		{"match_attribute_eq", func() (pipe.Stage, error) {
			return Match(MatchOptions{Keep: `attributes["log.file.name"] == "0.log"`}, nil, nil, nil, nil)
		}},
		{"sample_rate", func() (pipe.Stage, error) { return Sample(SampleOptions{Rate: 0.5}, nil) }},
		{"sample_by_field", func() (pipe.Stage, error) { return Sample(SampleOptions{Rate: 0.5, By: "body"}, nil) }},
		{"rate_limit", func() (pipe.Stage, error) {
			return RateLimit(RateLimitOptions{Rate: 1e9, By: "resource.host.name"}, time.Now, nil)
		}},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			s, err := bb.stage()
			if err != nil {
				b.Fatal(err)
			}
			stagetest.Bench(b, s, lines, 1000)
		})
	}
}
