package selfmetrics

import (
	"context"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches the handler's exposition and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: status %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, rec.Body.String())
	}
	return fams
}

// value returns the value of the sample of family name whose labels are
// exactly labels ("k=v" pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s not exported", name)
	}
	for _, m := range f.Metric {
		var got []string
		for _, l := range m.Label {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(labels))
		if !slices.Equal(got, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("metric %s has no sample labelled %v", name, labels)
	return 0
}

func TestMetricsExposition(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m, err := New(Options{Version: "1.2.3", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	src := m.Source("system")
	for range 3 {
		src.Read(10, 800)
	}
	ex := m.Exporter("gateway")
	ex.Sent(25)
	ex.Request(20*time.Millisecond, ResultOK)
	ex.Request(2*time.Second, ResultRetryable)
	ex.Request(time.Second, ResultRetryable)
	ex.Dropped(DropRejected, 2)
	ex.Dropped(DropPermanent, 5)
	ex.Dropped(DropGaveUp, 4)
	ex.Failed("auth")
	ex.Failed("auth")
	ex.Failed("server_error")
	ex.EndpointLatency("gw-a:4317", 3*time.Millisecond)
	ex.EndpointLatency("gw-a:4317", 4*time.Millisecond)
	ex.EndpointLatency("gw-b:4317", 2*time.Second)
	m.Dropped("only_errors", "filter", 7)
	m.Errored("only_errors", "filter_error", 3)
	m.Dropped("only_errors", "filter", 3)
	m.Dropped("sampler", "sample", 0) // nothing dropped: no series
	lastCheckpoint := now.Add(-1500 * time.Millisecond)
	m.Observe(func(s *Snapshot) {
		s.Sources = append(s.Sources,
			SourceState{
				Name: "system", OpenFiles: 4, LagBytes: 1 << 20, BehindBytes: 3 << 20, BehindSeconds: 41.5,
				LostBytes: map[string]uint64{LossNotFound: 4096, LossTruncated: 0, LossClosed: 17},
				LostFiles: 2, RecoveredFiles: 5, ForcedCloses: 6, UnreadableFiles: 2,
			},
			SourceState{Name: "app", OpenFiles: 1, BehindBytes: 12, BehindSeconds: 0.5,
				LostBytes: map[string]uint64{LossTruncated: 99}, RecoveredFiles: 1},
			SourceState{Name: "journal", Journal: true, JournalRestarts: 3, JournalGaps: 2})
		s.Exporters = append(s.Exporters, ExporterState{Name: "gateway", QueueBatches: 3, InFlight: 1, FailingSeconds: 95,
			Endpoints: []EndpointState{{Name: "gw-a:4317", Requests: 40, Records: 39000, Up: true}, {Name: "gw-b:4317", Requests: 7, Errors: 3, Records: 4000}}})
		s.LastCheckpoint = lastCheckpoint
	})
	now = now.Add(time.Minute)
	m.Reloaded(false)

	fams := scrape(t, m)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{ReadLines, []string{"source=system"}, 30},
		{ReadBytes, []string{"source=system"}, 2400},
		{SentRecords, []string{"exporter=gateway"}, 25},
		{ExportRetries, []string{"exporter=gateway"}, 2},
		{ExportDuration, []string{"exporter=gateway", "result=ok"}, 1},
		{ExportDuration, []string{"exporter=gateway", "result=retryable"}, 2},
		{ProcessorDropped, []string{"processor=only_errors", "reason=filter"}, 10},
		{ProcessorErrors, []string{"processor=only_errors", "reason=filter_error"}, 3},
		{ExporterDropped, []string{"exporter=gateway", "reason=rejected"}, 2},
		{ExporterDropped, []string{"exporter=gateway", "reason=permanent_error"}, 5},
		{ExporterDropped, []string{"exporter=gateway", "reason=gave_up"}, 4},
		{ExportFailures, []string{"exporter=gateway", "reason=auth"}, 2},
		{ExportFailures, []string{"exporter=gateway", "reason=server_error"}, 1},
		{FailingSeconds, []string{"exporter=gateway"}, 95},
		{EndpointRequests, []string{"exporter=gateway", "endpoint=gw-a:4317"}, 40},
		{EndpointRequests, []string{"exporter=gateway", "endpoint=gw-b:4317"}, 7},
		{EndpointErrors, []string{"exporter=gateway", "endpoint=gw-b:4317"}, 3},
		{EndpointUp, []string{"exporter=gateway", "endpoint=gw-a:4317"}, 1},
		{EndpointUp, []string{"exporter=gateway", "endpoint=gw-b:4317"}, 0},
		{EndpointRecords, []string{"exporter=gateway", "endpoint=gw-a:4317"}, 39000},
		{EndpointRecords, []string{"exporter=gateway", "endpoint=gw-b:4317"}, 4000},
		{EndpointDuration, []string{"exporter=gateway", "endpoint=gw-a:4317"}, 2},
		{EndpointDuration, []string{"exporter=gateway", "endpoint=gw-b:4317"}, 1},
		{Reloads, []string{"result=failure"}, 1},
		{QueueBatches, []string{"exporter=gateway"}, 3},
		{InFlightRequests, []string{"exporter=gateway"}, 1},
		{OpenFiles, []string{"source=system"}, 4},
		{LagBytes, []string{"source=system"}, 1 << 20},
		{BehindBytes, []string{"source=system"}, 3 << 20},
		{BehindBytes, []string{"source=app"}, 12},
		{BehindSeconds, []string{"source=system"}, 41.5},
		{BehindSeconds, []string{"source=app"}, 0.5},
		{LostBytes, []string{"source=system", "reason=not_found"}, 4096},
		{LostBytes, []string{"source=system", "reason=truncated"}, 0},
		{LostBytes, []string{"source=system", "reason=closed"}, 17},
		{LostBytes, []string{"source=app", "reason=truncated"}, 99},
		{LostFiles, []string{"source=system"}, 2},
		{LostFiles, []string{"source=app"}, 0},
		{RecoveredFiles, []string{"source=system"}, 5},
		{RecoveredFiles, []string{"source=app"}, 1},
		{ForcedCloses, []string{"source=system"}, 6},
		{UnreadableFiles, []string{"source=system"}, 2},
		{JournalRestarts, []string{"source=journal"}, 3},
		{JournalGaps, []string{"source=journal"}, 2},
		{CheckpointAge, nil, 61.5},
		{LastReloadSuccessful, nil, 0},
		{LastReloadSuccessTime, nil, 1_700_000_000},
		{BuildInfo, []string{"version=1.2.3", "goversion=" + goVersion()}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v: got %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, name := range Names() {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s is not exported", name)
		}
		if isCounter := fams[name].GetType() == dto.MetricType_COUNTER; isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("metric %s is a %v: counters, and only they, end in _total", name, fams[name].GetType())
		}
		for _, s := range fams[name].GetMetric() {
			for _, l := range s.Label {
				if !slices.Contains([]string{"source", "exporter", "endpoint", "processor", "reason", "result", "version", "goversion"}, l.GetName()) {
					t.Errorf("metric %s has label %s outside the bounded set", name, l.GetName())
				}
			}
		}
	}
	if f, ok := fams[ProcessorDropped]; ok {
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if l.GetValue() == "sampler" {
					t.Errorf("zero drops created a series: %v", s)
				}
			}
		}
	}

	m.Reloaded(true)
	fams = scrape(t, m)
	if got := value(t, fams, LastReloadSuccessful); got != 1 {
		t.Errorf("after a successful reload: %s got %v, want 1", LastReloadSuccessful, got)
	}
	if got, want := value(t, fams, LastReloadSuccessTime), float64(now.Unix()); got != want {
		t.Errorf("after a successful reload: %s got %v, want %v", LastReloadSuccessTime, got, want)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go runtime metrics missing")
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestLostBytesReasons: every reason of LossReasons has a series from the
// first scrape, 0 when the snapshot leaves it out, so that rate() and
// increase() work from 0; a reason outside the set is not dropped.
func TestLostBytesReasons(t *testing.T) {
	tests := []struct {
		name string
		lost map[string]uint64
		want map[string]float64 // reason → value
	}{
		{"no map", nil, map[string]float64{"not_found": 0, "truncated": 0, "closed": 0}},
		{"some reasons", map[string]uint64{LossClosed: 3},
			map[string]float64{"not_found": 0, "truncated": 0, "closed": 3}},
		{"a new reason", map[string]uint64{LossNotFound: 1, "vanished": 8},
			map[string]float64{"not_found": 1, "truncated": 0, "closed": 0, "vanished": 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			m.Observe(func(s *Snapshot) {
				s.Sources = append(s.Sources, SourceState{Name: "app", LostBytes: tt.lost})
			})
			fams := scrape(t, m)
			got := map[string]float64{}
			for _, s := range fams[LostBytes].GetMetric() {
				var source, reason string
				for _, l := range s.Label {
					switch l.GetName() {
					case "source":
						source = l.GetValue()
					case "reason":
						reason = l.GetValue()
					default:
						t.Errorf("unexpected label %s=%s", l.GetName(), l.GetValue())
					}
				}
				if source != "app" {
					t.Errorf("series for source %q, want app", source)
				}
				if fams[LostBytes].GetType() != dto.MetricType_COUNTER {
					t.Errorf("%s is a %v, want a counter", LostBytes, fams[LostBytes].GetType())
				}
				got[reason] = s.GetCounter().GetValue()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s by reason (-want +got):\n%s", LostBytes, diff)
			}
		})
	}
}

func TestNamesFollowConvention(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Names() {
		if !strings.HasPrefix(n, "logpump_") || strings.ToLower(n) != n || strings.Contains(n, "__") {
			t.Errorf("%s: want logpump_<subsystem>_<name>_<unit>[_total] in lower case", n)
		}
		if seen[n] {
			t.Errorf("%s listed twice", n)
		}
		seen[n] = true
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Source("a").Read(1, 2)
	m.Exporter("b").Sent(1)
	m.Exporter("b").Request(time.Second, ResultOK)
	m.Exporter("b").Dropped(DropRejected, 1)
	m.Dropped("c", "filter", 1)
	m.Reloaded(true)
	m.Observe(func(*Snapshot) {})
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if diff := cmp.Diff(404, rec.Code); diff != "" {
		t.Errorf("nil handler status (-want +got):\n%s", diff)
	}
}

// BenchmarkRecordBatch measures what the agent spends on metrics for one
// batch: its lines and bytes, one export request, and a drop.
func BenchmarkRecordBatch(b *testing.B) {
	m, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	src := m.Source("system")
	ex := m.Exporter("gateway")
	b.ReportAllocs()
	for b.Loop() {
		src.Read(1000, 120_000)
		ex.Sent(1000)
		ex.Request(3*time.Millisecond, ResultOK)
		m.Dropped("only_errors", "filter", 12)
	}
}

// BenchmarkSourceRead is the per-batch cost on the reading side alone.
func BenchmarkSourceRead(b *testing.B) {
	m, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	src := m.Source("system")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			src.Read(1000, 120_000)
		}
	})
}

func goVersion() string { return runtime.Version() }

// TestOperationsGuideListsEveryMetric keeps docs/operations.md in step with names.go.
func TestOperationsGuideListsEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		if !strings.Contains(string(doc), "| `"+n+"` |") {
			t.Errorf("docs/operations.md: metric %s is not in the metrics table", n)
		}
	}
}
