package agent

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
	"github.com/logpump/logpump/export/otlp"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/selfmetrics"
	"github.com/logpump/logpump/journald"
	"github.com/logpump/logpump/tailer"
)

// exporterObserver records a queue's send attempts as exporter metrics.
type exporterObserver struct{ m *selfmetrics.Exporter }

func (o exporterObserver) Attempt(d time.Duration, out export.Outcome, records, rejected int, reason string) {
	switch out {
	case export.Sent:
		o.m.Request(d, selfmetrics.ResultOK)
		o.m.Sent(records)
	case export.Partial:
		o.m.Request(d, selfmetrics.ResultOK)
		o.m.Sent(records - rejected)
		o.m.Dropped("rejected", rejected)
	case export.Failed:
		o.m.Request(d, selfmetrics.ResultPermanent)
		o.m.Failed(reason)
		o.m.Dropped(selfmetrics.DropPermanent, records)
	case export.GaveUp:
		o.m.Request(d, selfmetrics.ResultPermanent)
		o.m.Failed(reason)
		o.m.Dropped(selfmetrics.DropGaveUp, records)
	case export.Retry:
		o.m.Request(d, selfmetrics.ResultRetryable)
		o.m.Failed(reason)
	}
}

// settling calls done once every exporter it counts had an answer (see
// Env.Settled).
type settling struct {
	pending atomic.Int64
	done    func()
}

// firstAnswer tells next (nil: nobody) of every attempt, and its settling
// of the exporter's first answered request.
type firstAnswer struct {
	next     export.Observer
	s        *settling
	answered atomic.Bool
}

func (o *firstAnswer) Attempt(d time.Duration, out export.Outcome, records, rejected int, reason string) {
	if o.next != nil {
		o.next.Attempt(d, out, records, rejected, reason)
	}
	if out == export.Retry || o.answered.Load() || !o.answered.CompareAndSwap(false, true) {
		return
	}
	if o.s.pending.Add(-1) == 0 {
		o.s.done()
	}
}

// countRead is the stage right after a tailer: it counts lines and file
// bytes once per batch.
func countRead(m *selfmetrics.Source) pipe.Stage {
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			for b := range in {
				if b.End > b.Start {
					m.Read(int64(len(b.Records)), b.End-b.Start)
				}
				if !yield(b) {
					return
				}
			}
		}
	}
}

// drops counts records removed by processors, and records they failed on
// and kept, for /debug/pipeline and metrics.
type drops struct {
	m  *selfmetrics.Metrics
	mu sync.Mutex
	n  counts // records dropped
	e  counts // records kept after an error
}

// counts is processor → reason → records.
type counts map[string]map[string]int64

func (c *counts) add(processor, reason string, n int) {
	if *c == nil {
		*c = counts{}
	}
	if (*c)[processor] == nil {
		(*c)[processor] = map[string]int64{}
	}
	(*c)[processor][reason] += int64(n)
}

func (c counts) clone() map[string]map[string]int64 {
	out := make(map[string]map[string]int64, len(c))
	for p, r := range c {
		out[p] = maps.Clone(r)
	}
	return out
}

func (d *drops) add(processor, reason string, n int) {
	d.m.Dropped(processor, reason, n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n.add(processor, reason, n)
}

func (d *drops) addError(processor, reason string, n int) {
	d.m.Errored(processor, reason, n)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.e.add(processor, reason, n)
}

func (d *drops) snapshot() map[string]map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n.clone()
}

func (d *drops) errors() map[string]map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.e.clone()
}

// PipelineState is the /debug/pipeline snapshot.
type PipelineState struct {
	Lanes     []LaneState                 `json:"lanes"`
	Exporters []ExporterState             `json:"exporters"`
	Drops     map[string]map[string]int64 `json:"processor_drops"`
	// Errors counts records processors failed on and kept, e.g. a filter
	// condition that could not be evaluated.
	Errors map[string]map[string]int64 `json:"processor_errors"`
	// LastCheckpoint is when the checkpoint file was last known current.
	LastCheckpoint time.Time `json:"last_checkpoint"`
}

// LaneState is a source, its pipeline and its files.
type LaneState struct {
	Source   string       `json:"source"`
	Pipeline string       `json:"pipeline"`
	Stages   []string     `json:"stages"`
	InFlight int          `json:"in_flight_ranges"`
	Tailer   tailer.Stats `json:"tailer"`
	// Journal is set for a journald source.
	Journal   *journald.Stats `json:"journal,omitempty"`
	TapPoints []string        `json:"tap_points"`
}

// tailerStats returns the stats of a file source's tailer; zero for a
// journald source.
func (ln *lane) tailerStats() tailer.Stats {
	if ln.tailer == nil {
		return tailer.Stats{}
	}
	return ln.tailer.Stats()
}

// journalStats returns the stats of a journald source; nil for a file source.
func (ln *lane) journalStats() *journald.Stats {
	if ln.journal == nil {
		return nil
	}
	st := ln.journal.Stats()
	return &st
}

// ExporterState is an exporter's queue counters and, for OTLP, its
// endpoints.
type ExporterState struct {
	Name      string               `json:"name"`
	Type      string               `json:"type"`
	Stats     export.Stats         `json:"stats"`
	Endpoints []otlp.EndpointStats `json:"endpoints,omitempty"`
}

// endpointer is a client of several endpoints (an OTLP client).
type endpointer interface {
	Endpoints() []otlp.EndpointStats
}

// endpoints returns the endpoints of ex's client, if it has any.
func (ex *exporter) endpoints() []otlp.EndpointStats {
	if e, ok := ex.client.(endpointer); ok {
		return e.Endpoints()
	}
	return nil
}

// Pipeline returns the state of the running graph, for /debug/pipeline. It
// is safe to call from any goroutine.
func (a *Agent) Pipeline() PipelineState {
	a.mu.Lock()
	lanes, exporters := a.lanes, a.exporters
	a.mu.Unlock()
	st := PipelineState{Drops: a.drops.snapshot(), Errors: a.drops.errors(), LastCheckpoint: a.tracker.LastFlush()}
	for _, ln := range lanes {
		st.Lanes = append(st.Lanes, LaneState{
			Source: ln.source, Pipeline: ln.pipeline, Stages: ln.stages,
			InFlight: a.tracker.InFlight(ln.source), Tailer: ln.tailerStats(), Journal: ln.journalStats(), TapPoints: ln.taps,
		})
	}
	for _, ex := range exporters {
		st.Exporters = append(st.Exporters, ExporterState{Name: ex.name, Type: ex.typ, Stats: ex.queue.Stats(), Endpoints: ex.endpoints()})
	}
	return st
}

// observe fills the metrics' gauges at each collection.
func (a *Agent) observe(s *selfmetrics.Snapshot) {
	a.mu.Lock()
	lanes, exporters := a.lanes, a.exporters
	a.mu.Unlock()
	for _, ln := range lanes {
		if ln.journal != nil {
			js := ln.journal.Stats()
			s.Sources = append(s.Sources, selfmetrics.SourceState{
				Name: ln.source, Journal: true, JournalRestarts: js.Restarts, JournalGaps: js.Gaps, JournalSkipped: js.Skipped,
			})
			continue
		}
		s.Sources = append(s.Sources, sourceState(ln.source, ln.tailerStats()))
	}
	for _, ex := range exporters {
		qs := ex.queue.Stats()
		es := selfmetrics.ExporterState{Name: ex.name, QueueBatches: qs.Queued, InFlight: qs.InFlight}
		if !qs.FailingSince.IsZero() {
			es.FailingSeconds = time.Since(qs.FailingSince).Seconds()
		}
		for _, ep := range ex.endpoints() {
			es.Endpoints = append(es.Endpoints, selfmetrics.EndpointState{
				Name: ep.Name, Requests: ep.Requests, Errors: ep.Errors, Records: ep.Records, Up: ep.State == otlp.EndpointUp})
		}
		s.Exporters = append(s.Exporters, es)
	}
	s.LastCheckpoint = a.tracker.LastFlush()
}

// sourceState is what the metrics report of a source's tailer.
func sourceState(name string, ts tailer.Stats) selfmetrics.SourceState {
	var lag int64
	for _, f := range ts.Files {
		lag += f.Lag
	}
	return selfmetrics.SourceState{
		Name: name, OpenFiles: ts.OpenFiles + ts.Draining, LagBytes: lag,
		BehindBytes: ts.BehindBytes, BehindSeconds: ts.BehindSeconds,
		LostBytes: ts.LostBytes, LostFiles: ts.LostFiles, RecoveredFiles: ts.Recovered, ForcedCloses: ts.ForcedCloses,
		UnreadableFiles: ts.UnreadableFiles,
	}
}

// Ready reports whether the agent takes work: the pipeline runs and no
// exporter is stuck retrying a request its destination keeps refusing.
func (a *Agent) Ready() error {
	a.mu.Lock()
	running := a.runCtx != nil && a.runCtx.Err() == nil
	exporters := a.exporters
	a.mu.Unlock()
	if !running {
		return errors.New("pipeline not running")
	}
	var errs []error
	if since, err := a.tracker.WriteError(); err != nil {
		errs = append(errs, fmt.Errorf("checkpoints cannot be written since %s: %v",
			since.UTC().Format(time.RFC3339), err))
	}
	for _, ex := range exporters {
		qs := ex.queue.Stats()
		if qs.InFlight > 0 && !qs.FailingSince.IsZero() {
			errs = append(errs, fmt.Errorf("exporter %s failing since %s (%s), holding its records: %s",
				ex.name, qs.FailingSince.UTC().Format(time.RFC3339), qs.FailingReason, qs.LastError))
		}
	}
	return errors.Join(errs...)
}

// Warnings returns a line for each source at risk of losing lines (see
// atRisk) and for each endpoint of an exporter that is out after a failure
// while others take its requests, for /readyz; none when every source
// keeps up and every endpoint accepts. They do not make the agent unready:
// reading more slowly than files are written is not cured by taking the
// agent out of service, and an exporter delivers while any endpoint
// accepts. Lines name files only when paths is true. It is safe to call
// from any goroutine.
func (a *Agent) Warnings(paths bool) []string {
	a.mu.Lock()
	lanes, exporters := a.lanes, a.exporters
	a.mu.Unlock()
	var out []string
	for _, ln := range lanes {
		st := ln.tailerStats()
		if w := atRisk(ln.source, st, paths); w != "" {
			out = append(out, w)
		}
		if w := unreadable(ln.source, st, paths); w != "" {
			out = append(out, w)
		}
	}
	for _, ex := range exporters {
		eps := ex.endpoints()
		if len(eps) < 2 {
			continue // one endpoint down is the exporter failing (Ready)
		}
		for _, ep := range eps {
			if ep.State == otlp.EndpointDown {
				out = append(out, fmt.Sprintf("endpoint down: exporter %s: %s since %s (%s); the others take its requests",
					ex.name, ep.Name, ep.DownSince.UTC().Format(time.RFC3339), ep.Reason))
			}
		}
	}
	return out
}

// unreadable describes the matched files of a source that cannot be opened
// (permission denied), naming the first when paths is true; "" when none.
func unreadable(source string, s tailer.Stats, paths bool) string {
	if len(s.Unreadable) == 0 {
		return ""
	}
	msg := fmt.Sprintf("unreadable: source %s: %d matched file(s) cannot be opened", source, len(s.Unreadable))
	if paths {
		msg += fmt.Sprintf(", e.g. %s: %s", s.Unreadable[0].Path, s.Unreadable[0].Err)
	}
	return msg
}

// atRisk describes a source whose oldest unacknowledged byte is in a
// draining file: one that rotation moved out of the patterns, read to its
// end before it is closed. If rotation goes on before it is acknowledged,
// the next rotation may delete it and its bytes are lost (counted in
// logpump_tailer_lost_bytes_total). It returns "" when the source is not at
// risk. The file is named when paths is true, by the path it was followed
// under: its name before the rotation, or where follow_rotated found it.
func atRisk(source string, s tailer.Stats, paths bool) string {
	var oldest *tailer.FileStats
	for i := range s.Files {
		f := &s.Files[i]
		if f.Behind <= 0 {
			continue
		}
		// On a tie the draining file is the one at risk.
		if oldest == nil || f.BehindSince.Before(oldest.BehindSince) ||
			f.BehindSince.Equal(oldest.BehindSince) && f.Draining && !oldest.Draining {
			oldest = f
		}
	}
	if oldest == nil || !oldest.Draining {
		return ""
	}
	where := "a rotated file"
	if paths {
		where = "rotated file " + oldest.Path
	}
	age := time.Duration(s.BehindSeconds * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("at risk: source %s: %s not acknowledged for %s, the oldest in %s",
		source, byteSize(s.BehindBytes), age, where)
}

// byteSize formats n bytes for people: 512 B, 1.5 KiB, 12.3 MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit-0.05 && i < 4 { // 1023.96 KiB prints as 1.0 MiB
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

// tapName names a tap point; sources and processors have separate namespaces.
func tapName(kind, name string) string { return kind + "/" + name }
