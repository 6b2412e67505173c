// Package selfmetrics records logpump's own metrics with the OpenTelemetry
// metric SDK and serves them in the Prometheus text format from a private
// registry (nothing is registered globally). The names are listed in
// names.go.
//
// Counters are recorded through handles made once per source and exporter
// when the pipeline is built ([Metrics.Source], [Metrics.Exporter]), and
// called once per batch or request, never per line: a handle holds its
// precomputed attribute set, so recording allocates nothing. Gauges (queue
// depth, open files, lag, checkpoint age) and the counters the tailers keep
// themselves (lost bytes, recovered files) are read at collection time from
// a function the agent registers with [Metrics.Observe].
//
// A nil *Metrics and the nil handles it returns record nothing, so
// components can be built without metrics in tests.
package selfmetrics

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Options configure [New].
type Options struct {
	// Version of the agent, for logpump_build_info.
	Version string
	// Readers receive the metrics besides the Prometheus endpoint, e.g. a
	// periodic reader pushing them over OTLP.
	Readers []sdkmetric.Reader
	// Resource describes the agent to the Readers; the Prometheus endpoint
	// leaves it out.
	Resource *resource.Resource
	// Now is the clock for the reload timestamp and checkpoint age; time.Now when nil.
	Now func() time.Time
}

// Result is the outcome of an export request, a label of [ExportDuration].
type Result string

// Export request outcomes.
const (
	ResultOK        Result = "ok"
	ResultRetryable Result = "retryable"
	ResultPermanent Result = "permanent"
)

// Metrics holds the agent's instruments. It is safe for concurrent use.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
	now      func() time.Time
	bg       context.Context

	readLines, readBytes, sent, retries, failures, reloads metric.Int64Counter
	procDropped, expDropped                                metric.Int64Counter
	procErrors                                             metric.Int64Counter
	duration                                               metric.Float64Histogram
	epDuration                                             metric.Float64Histogram

	reloadOK   atomic.Bool
	reloadTime atomic.Int64 // Unix nanoseconds of the last applied configuration
	observe    atomic.Pointer[func(*Snapshot)]
	reloadAttr [2][]metric.AddOption // failure, success

	mu    sync.Mutex
	drops map[dropKey][]metric.AddOption
}

type dropKey struct{ processor, reason string }

// Snapshot is the state gauges report, filled by the function registered
// with [Metrics.Observe].
type Snapshot struct {
	Sources   []SourceState
	Exporters []ExporterState
	// LastCheckpoint is when checkpoints were last written; zero if never,
	// which leaves the checkpoint age unreported.
	LastCheckpoint time.Time
}

// SourceState is a source's gauges and the counters its tailer keeps.
type SourceState struct {
	Name      string
	OpenFiles int
	// LagBytes sums, over the source's files, size minus read offset.
	LagBytes int64
	// BehindBytes sums, over the source's files, size minus acknowledged
	// offset; BehindSeconds is how long the oldest of those bytes has been
	// on disk (0 when none is).
	BehindBytes   int64
	BehindSeconds float64
	// LostBytes counts bytes lost, by reason. The reasons of [LossReasons]
	// are always reported (0 when absent); another key is reported too,
	// so it must come from a fixed set.
	LostBytes map[string]uint64
	// LostFiles counts the files lost bytes were in; RecoveredFiles files
	// found holding the unread end of a rotated file; ForcedCloses files
	// closed with unread bytes to respect max_open_files.
	LostFiles, RecoveredFiles, ForcedCloses uint64
	// UnreadableFiles counts matched files that could not be opened.
	UnreadableFiles uint64
	// Journal marks a journald source: it has no files, and reports only
	// JournalRestarts (journalctl started again after it failed or ended).
	Journal         bool
	JournalRestarts uint64
	// JournalGaps: resumptions after an entry the journal no longer held.
	JournalGaps uint64
	// JournalSkipped: journal files and fields the native reader skipped.
	JournalSkipped uint64
}

// Loss reasons, the reason label of [LostBytes]. They are the tailer's
// (tailer.LostNotFound, tailer.LostTruncated, tailer.LostClosed).
const (
	// LossNotFound: a file with unacknowledged bytes was gone before they were read.
	LossNotFound = "not_found"
	// LossTruncated: a file was truncated in place before its bytes were read.
	LossTruncated = "truncated"
	// LossClosed: a file closed for max_open_files was rotated away and not found again.
	LossClosed = "closed"
)

// LossReasons returns the reasons [LostBytes] always reports, so that a
// rate() works from the first scrape.
func LossReasons() []string { return []string{LossNotFound, LossTruncated, LossClosed} }

// ExporterState is an exporter's gauges.
type ExporterState struct {
	Name string
	// QueueBatches wait for a request; InFlight requests are being sent or retried.
	QueueBatches, InFlight int
	// FailingSeconds: how long attempts have been failing, 0 if they are not.
	FailingSeconds float64
	// Endpoints of an OTLP exporter.
	Endpoints []EndpointState
}

// EndpointState is one endpoint of an exporter: its counters and whether
// it takes requests.
type EndpointState struct {
	Name                      string
	Requests, Errors, Records int64
	Up                        bool
}

// New builds the instruments, the Prometheus exporter and its private
// registry (with the Go runtime and process collectors). It does no I/O.
func New(o Options) (*Metrics, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("register process collector: %w", err)
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
		// Names in names.go carry their unit and _total already.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
	)
	if err != nil {
		return nil, fmt.Errorf("create prometheus exporter: %w", err)
	}
	popts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	for _, r := range o.Readers {
		popts = append(popts, sdkmetric.WithReader(r))
	}
	if o.Resource != nil {
		popts = append(popts, sdkmetric.WithResource(o.Resource))
	}
	m := &Metrics{
		provider: sdkmetric.NewMeterProvider(popts...),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		now:      o.Now,
		bg:       context.Background(),
		drops:    map[dropKey][]metric.AddOption{},
	}
	m.reloadOK.Store(true)
	m.reloadTime.Store(o.Now().UnixNano())
	m.reloadAttr[0] = addOpts(attribute.String("result", "failure"))
	m.reloadAttr[1] = addOpts(attribute.String("result", "success"))
	if err := m.instruments(o.Version); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) instruments(version string) error {
	meter := m.provider.Meter("github.com/logpump/logpump")
	var err error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, e := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("create metric %s: %w", name, e)
		}
		return c
	}
	m.readLines = counter(ReadLines, "{line}", "Lines read from files.")
	m.readBytes = counter(ReadBytes, "By", "Bytes read from files, line ends included.")
	m.sent = counter(SentRecords, "{record}", "Records the exporter's destination accepted.")
	m.retries = counter(ExportRetries, "{attempt}", "Failed export attempts that were retried.")
	m.failures = counter(ExportFailures, "{attempt}", "Failed export attempts, by reason.")
	m.procDropped = counter(ProcessorDropped, "{record}", "Records a processor removed, by reason.")
	m.procErrors = counter(ProcessorErrors, "{record}", "Records a processor kept unchanged because it failed on them, by reason.")
	m.expDropped = counter(ExporterDropped, "{record}", "Records an exporter lost (rejected, permanent error, given up), by reason.")
	m.reloads = counter(Reloads, "{reload}", "Configuration reloads, by result.")
	m.duration, err = meter.Float64Histogram(ExportDuration, metric.WithUnit("s"),
		metric.WithDescription("Time of one export request, by result."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return fmt.Errorf("create metric %s: %w", ExportDuration, err)
	}
	m.epDuration, err = meter.Float64Histogram(EndpointDuration, metric.WithUnit("s"),
		metric.WithDescription("Time of one attempt on one endpoint of an exporter, answered or failed."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return fmt.Errorf("create metric %s: %w", EndpointDuration, err)
	}

	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, e := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("create metric %s: %w", name, e)
		}
		return g
	}
	queue := gauge(QueueBatches, "{batch}", "Batches waiting in the exporter's queue.")
	inflight := gauge(InFlightRequests, "{request}", "Export requests being sent or waiting for a retry.")
	failing, e := meter.Float64ObservableGauge(FailingSeconds, metric.WithUnit("s"), metric.WithDescription("How long the exporter's attempts have been failing; 0 while its destination accepts requests."))
	if e != nil && err == nil {
		err = fmt.Errorf("create metric %s: %w", FailingSeconds, e)
	}
	open := gauge(OpenFiles, "{file}", "Files the source holds open.")
	lag := gauge(LagBytes, "By", "Bytes between the read positions and the ends of the source's files.")
	reloadOK := gauge(LastReloadSuccessful, "1", "1 if the last reload applied the configuration, 0 if it was rejected.")
	build := gauge(BuildInfo, "1", "Always 1; labelled with the agent's version.")
	age, e := meter.Float64ObservableGauge(CheckpointAge, metric.WithUnit("s"), metric.WithDescription("Time since checkpoints were last written."))
	if e != nil && err == nil {
		err = fmt.Errorf("create metric %s: %w", CheckpointAge, e)
	}
	reloadTime, e := meter.Float64ObservableGauge(LastReloadSuccessTime, metric.WithUnit("s"), metric.WithDescription("When a configuration was last applied, in Unix seconds."))
	if e != nil && err == nil {
		err = fmt.Errorf("create metric %s: %w", LastReloadSuccessTime, e)
	}
	behind := gauge(BehindBytes, "By", "Bytes on disk in the source's files not acknowledged yet.")
	behindAge, e := meter.Float64ObservableGauge(BehindSeconds, metric.WithUnit("s"), metric.WithDescription("How long the source's oldest unacknowledged byte has been on disk."))
	if e != nil && err == nil {
		err = fmt.Errorf("create metric %s: %w", BehindSeconds, e)
	}
	observedCounter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, e := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("create metric %s: %w", name, e)
		}
		return c
	}
	lost := observedCounter(LostBytes, "By", "Bytes on disk never acknowledged and no longer readable, by reason.")
	lostFiles := observedCounter(LostFiles, "{file}", "Files that held lost bytes.")
	recovered := observedCounter(RecoveredFiles, "{file}", "Files found holding the unread end of a file rotated out of the patterns.")
	forced := observedCounter(ForcedCloses, "{file}", "Files closed with unread bytes to respect max_open_files.")
	unreadable := observedCounter(UnreadableFiles, "{file}", "Matched files that could not be opened (permission denied).")
	journalRestarts := observedCounter(JournalRestarts, "{restart}", "Times a journald source started reading again (journalctl, or the native reader) after it failed or ended.")
	journalGaps := observedCounter(JournalGaps, "{gap}", "Resumptions after an entry the journal no longer held (vacuumed before it was read).")
	journalSkipped := observedCounter(JournalSkipped, "{object}", "Journal files, and fields of entries, skipped as damaged or unreadable by the native reader.")
	epRequests := observedCounter(EndpointRequests, "{request}", "Attempts sent to an endpoint of an exporter.")
	epErrors := observedCounter(EndpointErrors, "{request}", "Attempts that failed on an endpoint and took it out.")
	epUp := gauge(EndpointUp, "1", "1 while an endpoint of an exporter takes requests, 0 while it is out after a failure.")
	epRecords := observedCounter(EndpointRecords, "{record}", "Records in the attempts an endpoint of an exporter accepted.")
	if err != nil {
		return err
	}
	buildAttrs := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("version", version), attribute.String("goversion", runtime.Version())))

	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(build, 1, buildAttrs)
		ok := int64(0)
		if m.reloadOK.Load() {
			ok = 1
		}
		o.ObserveInt64(reloadOK, ok)
		o.ObserveFloat64(reloadTime, float64(m.reloadTime.Load())/1e9)
		f := m.observe.Load()
		if f == nil {
			return nil
		}
		var s Snapshot
		(*f)(&s)
		for _, src := range s.Sources {
			a := metric.WithAttributeSet(attribute.NewSet(attribute.String("source", src.Name)))
			if src.Journal {
				o.ObserveInt64(journalRestarts, int64(src.JournalRestarts), a)
				o.ObserveInt64(journalGaps, int64(src.JournalGaps), a)
				o.ObserveInt64(journalSkipped, int64(src.JournalSkipped), a)
				continue
			}
			o.ObserveInt64(open, int64(src.OpenFiles), a)
			o.ObserveInt64(lag, src.LagBytes, a)
			o.ObserveInt64(behind, src.BehindBytes, a)
			o.ObserveFloat64(behindAge, src.BehindSeconds, a)
			o.ObserveInt64(lostFiles, int64(src.LostFiles), a)
			o.ObserveInt64(recovered, int64(src.RecoveredFiles), a)
			o.ObserveInt64(forced, int64(src.ForcedCloses), a)
			o.ObserveInt64(unreadable, int64(src.UnreadableFiles), a)
			known := LossReasons()
			reasons := known
			for r := range src.LostBytes {
				if !slices.Contains(known, r) {
					reasons = append(reasons, r)
				}
			}
			slices.Sort(reasons[len(known):])
			for _, r := range reasons {
				o.ObserveInt64(lost, int64(src.LostBytes[r]), metric.WithAttributeSet(attribute.NewSet(
					attribute.String("source", src.Name), attribute.String("reason", r))))
			}
		}
		for _, ex := range s.Exporters {
			a := metric.WithAttributeSet(attribute.NewSet(attribute.String("exporter", ex.Name)))
			o.ObserveInt64(queue, int64(ex.QueueBatches), a)
			o.ObserveInt64(inflight, int64(ex.InFlight), a)
			o.ObserveFloat64(failing, ex.FailingSeconds, a)
			for _, ep := range ex.Endpoints {
				a := metric.WithAttributeSet(attribute.NewSet(attribute.String("exporter", ex.Name), attribute.String("endpoint", ep.Name)))
				o.ObserveInt64(epRequests, ep.Requests, a)
				o.ObserveInt64(epErrors, ep.Errors, a)
				o.ObserveInt64(epRecords, ep.Records, a)
				up := int64(0)
				if ep.Up {
					up = 1
				}
				o.ObserveInt64(epUp, up, a)
			}
		}
		if !s.LastCheckpoint.IsZero() {
			o.ObserveFloat64(age, max(m.now().Sub(s.LastCheckpoint).Seconds(), 0))
		}
		return nil
	}, build, reloadOK, reloadTime, open, lag, queue, inflight, failing, age,
		behind, behindAge, lost, lostFiles, recovered, forced, unreadable, journalRestarts, journalGaps, journalSkipped, epRequests, epErrors, epUp, epRecords)
	if err != nil {
		return fmt.Errorf("register metric callback: %w", err)
	}
	return nil
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Observe registers the function that fills the gauges' [Snapshot] at each
// collection, replacing the previous one (after a reload, the new graph's).
// f is called from the collecting goroutine (an HTTP handler, a push
// reader) and must be safe to call concurrently with the pipeline.
func (m *Metrics) Observe(f func(*Snapshot)) {
	if m == nil {
		return
	}
	m.observe.Store(&f)
}

// Reloaded records the outcome of a reload: ok when the new configuration
// was applied, false when it was rejected and the old one kept running.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	m.reloadOK.Store(ok)
	if ok {
		m.reloadTime.Store(m.now().UnixNano())
		m.reloads.Add(m.bg, 1, m.reloadAttr[1]...)
	} else {
		m.reloads.Add(m.bg, 1, m.reloadAttr[0]...)
	}
}

// Dropped counts n records the named processor removed for reason. Its
// signature matches the stages' drop callback (stages.Env.Dropped), and it
// is called at most once per batch and reason. Reasons come from a fixed set.
func (m *Metrics) Dropped(processor, reason string, n int) {
	if m == nil || n <= 0 {
		return
	}
	k := dropKey{processor, reason}
	m.mu.Lock()
	a, ok := m.drops[k]
	if !ok {
		a = addOpts(attribute.String("processor", processor), attribute.String("reason", reason))
		m.drops[k] = a
	}
	m.mu.Unlock()
	m.procDropped.Add(m.bg, int64(n), a...)
}

// Errored counts n records the named processor kept unchanged because it
// failed on them (stages.Env.Errored). Reasons come from a fixed set.
func (m *Metrics) Errored(processor, reason string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.procErrors.Add(m.bg, int64(n), metric.WithAttributeSet(attribute.NewSet(
		attribute.String("processor", processor), attribute.String("reason", reason))))
}

// Shutdown flushes the readers (a push reader sends what it holds) and
// stops recording. It returns ctx.Err() if the deadline passes first.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	return m.provider.Shutdown(ctx)
}

// Source records one source's counters. Make it once per source with
// [Metrics.Source]; it is safe for concurrent use.
type Source struct {
	m     *Metrics
	attrs []metric.AddOption
}

// Source returns the recorder of the named source's counters.
func (m *Metrics) Source(name string) *Source {
	if m == nil {
		return nil
	}
	return &Source{m: m, attrs: addOpts(attribute.String("source", name))}
}

// Read counts lines and bytes read, once per batch.
func (s *Source) Read(lines, bytes int64) {
	if s == nil {
		return
	}
	s.m.readLines.Add(s.m.bg, lines, s.attrs...)
	s.m.readBytes.Add(s.m.bg, bytes, s.attrs...)
}

// Exporter records one exporter's counters and request durations. Make it
// once per exporter with [Metrics.Exporter]; it is safe for concurrent use.
type Exporter struct {
	m       *Metrics
	name    string
	attrs   []metric.AddOption
	results [3][]metric.RecordOption // ok, retryable, permanent
	drops   [3][]metric.AddOption    // rejected, permanent_error, gave_up

	fmu      sync.Mutex
	failures map[string][]metric.AddOption // by reason, made on first use
	// endpoints holds the record options of each endpoint's latency, by
	// name, made on first use.
	endpoints sync.Map
}

// Exporter returns the recorder of the named exporter's metrics.
func (m *Metrics) Exporter(name string) *Exporter {
	if m == nil {
		return nil
	}
	e := &Exporter{m: m, name: name, attrs: addOpts(attribute.String("exporter", name))}
	for i, r := range []DropReason{DropRejected, DropPermanent, DropGaveUp} {
		e.drops[i] = addOpts(attribute.String("exporter", name), attribute.String("reason", string(r)))
	}
	for i, r := range []Result{ResultOK, ResultRetryable, ResultPermanent} {
		set := attribute.NewSet(attribute.String("exporter", name), attribute.String("result", string(r)))
		e.results[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	return e
}

// durationBuckets bound the request duration histograms, in seconds.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// EndpointLatency records the duration of one attempt on the named
// endpoint of the exporter. The endpoints are bounded by the configuration
// and the addresses its names resolve to; the attribute set of each is
// made once.
func (e *Exporter) EndpointLatency(endpoint string, d time.Duration) {
	if e == nil {
		return
	}
	opts, ok := e.endpoints.Load(endpoint)
	if !ok {
		opts, _ = e.endpoints.LoadOrStore(endpoint, []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String("exporter", e.name), attribute.String("endpoint", endpoint)))})
	}
	e.m.epDuration.Record(e.m.bg, d.Seconds(), opts.([]metric.RecordOption)...)
}

// Sent counts records the destination accepted, once per request.
func (e *Exporter) Sent(records int) {
	if e == nil || records <= 0 {
		return
	}
	e.m.sent.Add(e.m.bg, int64(records), e.attrs...)
}

// Request records the duration of one export attempt and its outcome; a
// retryable outcome also counts a retry.
func (e *Exporter) Request(d time.Duration, r Result) {
	if e == nil {
		return
	}
	i := 0
	switch r {
	case ResultRetryable:
		i = 1
		e.m.retries.Add(e.m.bg, 1, e.attrs...)
	case ResultPermanent:
		i = 2
	}
	e.m.duration.Record(e.m.bg, d.Seconds(), e.results[i]...)
}

// DropReason says why an exporter lost records.
type DropReason string

// Exporter drop reasons.
const (
	// DropRejected: the destination accepted the request but rejected these
	// records (an OTLP partial success).
	DropRejected DropReason = "rejected"
	// DropPermanent: the request failed with an error that retrying cannot fix.
	DropPermanent DropReason = "permanent_error"
	// DropGaveUp: the request still failed after retry.max_attempts or
	// retry.max_elapsed.
	DropGaveUp DropReason = "gave_up"
)

// Failed counts one failed attempt by the reason of its failure (a small
// fixed set: see [ExportFailures]).
func (e *Exporter) Failed(reason string) {
	if e == nil {
		return
	}
	e.fmu.Lock()
	opts, ok := e.failures[reason]
	if !ok {
		if e.failures == nil {
			e.failures = map[string][]metric.AddOption{}
		}
		opts = addOpts(attribute.String("exporter", e.name), attribute.String("reason", reason))
		e.failures[reason] = opts
	}
	e.fmu.Unlock()
	e.m.failures.Add(e.m.bg, 1, opts...)
}

// Dropped counts n records the exporter lost, once per request.
func (e *Exporter) Dropped(reason DropReason, n int) {
	if e == nil || n <= 0 {
		return
	}
	i := 0
	switch reason {
	case DropPermanent:
		i = 1
	case DropGaveUp:
		i = 2
	}
	e.m.expDropped.Add(e.m.bg, int64(n), e.drops[i]...)
}

// addOpts returns the options recording under the attribute set of kvs. A
// handle keeps the slice, so that passing it on (opts...) allocates nothing.
func addOpts(kvs ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
}
