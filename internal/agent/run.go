package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// ErrCheckpoint marks a failure to load or write the checkpoints.
var ErrCheckpoint = errors.New("checkpoints")

// Run loads the checkpoints, starts the exporters and drives every lane until
// ctx is cancelled. Then it stops: the tailers return at a batch boundary,
// the exporters' queues drain for at most the configured shutdown_timeout,
// and the checkpoints are flushed (always, even after the deadline). What was
// not acknowledged by then is not checkpointed and is read again on the next
// start. Run returns nil after a complete drain, an error wrapping
// context.DeadlineExceeded when the deadline cut the drain short (nothing is
// lost: the rest is read again), and one wrapping ErrCheckpoint when the
// checkpoints could not be loaded or written. Run may be called
// once; [Agent.Reload] may be called while it runs.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.tracker.Load(); err != nil {
		return fmt.Errorf("load %w: %w", ErrCheckpoint, err)
	}
	for _, ex := range a.exporters {
		ex.queue.Start()
	}
	flushCtx, stopFlush := context.WithCancel(context.WithoutCancel(ctx))
	flushed := make(chan error, 1)
	go func() { flushed <- a.tracker.Run(flushCtx) }()

	// hard ends the drain: it is cancelled shutdown_timeout after ctx is.
	// (A reload keeps shutdown_timeout.)
	grace := a.cfg.ShutdownTimeout
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stopTimer := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancelHard) })
	defer stopTimer()

	a.mu.Lock()
	a.runCtx, a.hard = ctx, hard
	for _, ln := range a.lanes {
		a.startLane(ln)
	}
	a.log.Info("logpump running", "sources", len(a.lanes), "exporters", len(a.exporters), "state_dir", a.cfg.StateDir)
	a.mu.Unlock()
	if a.env.Ready != nil {
		a.env.Ready()
	}
	<-ctx.Done()
	stopAt := time.Now()

	// A reload in progress sees ctx done and returns; after it no other starts.
	a.mu.Lock()
	lanes, exporters := a.lanes, a.exporters
	a.mu.Unlock()
	for _, ln := range lanes {
		<-ln.done
	}
	// The queues drain until shutdown_timeout after the stop request.
	drain, cancelDrain := context.WithDeadline(context.WithoutCancel(ctx), stopAt.Add(grace))
	defer cancelDrain()
	var drainErr error
	var dmu sync.Mutex
	var wg sync.WaitGroup
	for _, ex := range exporters {
		wg.Go(func() {
			if err := ex.queue.Shutdown(drain); err != nil {
				dmu.Lock()
				drainErr = errors.Join(drainErr, fmt.Errorf("drain exporter %s: %w", ex.name, err))
				dmu.Unlock()
			}
		})
	}
	wg.Wait()
	stopFlush()
	flushErr := <-flushed
	for _, ex := range exporters {
		if err := ex.client.Close(); err != nil {
			a.log.Warn("close exporter", "exporter", ex.name, "err", err)
		}
	}
	if flushErr != nil {
		flushErr = fmt.Errorf("%w: %w", ErrCheckpoint, flushErr)
	}
	err := errors.Join(drainErr, flushErr)
	a.log.Info("logpump stopped", "drain_seconds", time.Since(stopAt).Seconds(), "clean", err == nil)
	return err
}

// startLane runs a lane in its own goroutine until its context (a child of
// Run's) is cancelled. The caller holds a.mu.
func (a *Agent) startLane(ln *lane) {
	ctx, cancel := context.WithCancel(a.runCtx)
	hand, abandon := context.WithCancel(a.hard)
	ln.cancel, ln.abandon, ln.done, ln.started = cancel, abandon, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ln.done)
		defer ln.markStarted()
		defer abandon()
		a.drive(ctx, hand, ln)
	}()
}

// drive pulls one lane's batches through its stages and hands each routed
// part to its exporter's queue. Reading stops when read is cancelled; the
// hand-off of what was read goes on until hard is cancelled, after which the
// rest is left unacknowledged (and read again on the next start).
func (a *Agent) drive(read, hard context.Context, ln *lane) {
	// The queues this lane handed batches to since its tailer was last idle.
	// When the tailer runs out of data they send what they group at once
	// rather than at their batch timeout: nothing more comes from this lane
	// before its next write window, and the timeout would cost a wake-up and
	// up to batch.timeout of latency. The callback runs on this goroutine.
	var sentTo []*export.Queue
	ln.src.OnIdle(func() {
		for _, q := range sentTo {
			q.Flush()
		}
		clear(sentTo)
		sentTo = sentTo[:0]
	})
	batches := ln.src.Batches(read)
	// The stages after the source have begun once the source is first
	// pulled.
	started := func(yield func(*event.Batch) bool) {
		ln.markStarted()
		batches(yield)
	}
	for b := range ln.chain(started) {
		for _, d := range ln.routes.Split(b) {
			q := ln.queues[d.Exporter]
			if err := q.Enqueue(hard, d.Batch); err != nil {
				ln.left.Store(true)
				if a.hard.Err() != nil {
					a.log.Warn("shutdown deadline reached with batches still queued; they will be read again on the next start",
						"source", ln.source, "exporter", d.Exporter)
				} else {
					a.log.Info("reload: batches not handed to their exporter will be read again",
						"source", ln.source, "exporter", d.Exporter)
				}
				return
			}
			if !slices.Contains(sentTo, q) {
				sentTo = append(sentTo, q)
			}
		}
	}
}

// Reload swaps the running graph for one built from cfg, without losing or
// duplicating a line. The whole configuration is checked first; on any error
// the running graph is left as it is and the error (a config.Errors) is
// returned. Then:
//   - exporters whose configuration did not change keep running (and their
//     queues); new ones start; removed or changed ones send what they hold
//     and stop once nothing routes to them;
//   - a lane (a source with its pipeline) whose source, processors, routes
//     and exporters did not change keeps running untouched;
//   - a changed or removed lane stops reading at a batch boundary; once its
//     goroutine has handed on what it read, its replacement starts and
//     resumes each file where it stopped reading (ranges still in flight
//     are acknowledged as usual), so no line is read twice or skipped.
//
// A removed or changed exporter that is failing (the reload is often its
// fix: a token, a path, TLS) is abandoned at once: its requests are never
// acknowledged, and the lanes that routed to it, or that could not hand it
// what they read, rewind: their replacements resume at the checkpoints
// (checkpoint.Tracker.Rewind) and send those lines again through the new
// configuration. One that is not failing gets shutdown_timeout to send what
// it holds, then is abandoned in the same way. A newer reload that changes
// an exporter this one waits for supersedes it: the waits end at once.
//
// Changes of state_dir and checkpoints need a restart; they are logged and
// ignored. Reload must be called while Run runs; reloads are serialised.
func (a *Agent) Reload(cfg *config.Config) error {
	// What changes only on restart is put back before building, so that the
	// stages are checked against the settings that stay (max_in_flight).
	a.mu.Lock()
	running := a.cfg
	a.mu.Unlock()
	if cfg.StateDir != running.StateDir || cfg.Checkpoints != running.Checkpoints {
		a.log.Warn("state_dir and checkpoints settings change only on restart; keeping the running ones",
			"state_dir", running.StateDir)
		cfg.StateDir, cfg.Checkpoints = running.StateDir, running.Checkpoints
	}
	if cfg.ShutdownTimeout != running.ShutdownTimeout {
		a.log.Warn("shutdown_timeout changes only on restart; keeping the running one", "shutdown_timeout", running.ShutdownTimeout)
		cfg.ShutdownTimeout = running.ShutdownTimeout
	}
	next, err := build(cfg, a.env, a.tracker, a.drops, a.kube) // no I/O
	if err != nil {
		return err
	}
	// The Kubernetes watches of the lanes being replaced stay up for their
	// replacements: a reload does not list the cluster again. They are held
	// until every lane started by this reload has taken its own.
	release := a.kube.Hold()
	var startedLanes []*lane
	defer func() {
		if startedLanes == nil {
			release()
			return
		}
		go func() {
			for _, ln := range startedLanes {
				<-ln.started
			}
			release()
		}()
	}()
	a.supersedeFor(next.exporters)
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.mu.Lock()
	runCtx := a.runCtx
	oldLanes, oldExporters := a.lanes, a.exporters
	a.mu.Unlock()
	if runCtx == nil || runCtx.Err() != nil {
		closeUnstarted(next.exporters)
		return errors.New("reload: the agent is not running")
	}

	byName := map[string]*exporter{}
	for _, ex := range oldExporters {
		byName[ex.name] = ex
	}
	queues := map[string]*export.Queue{}
	var exporters, started []*exporter
	for _, ex := range next.exporters {
		if o, ok := byName[ex.name]; ok && o.fingerprint == ex.fingerprint {
			ex.client.Close() // never started: the running one stays
			ex = o
			delete(byName, ex.name)
		} else {
			started = append(started, ex)
		}
		exporters = append(exporters, ex)
		queues[ex.name] = ex.queue
	}
	var retired []*exporter
	for _, ex := range oldExporters {
		if _, ok := byName[ex.name]; ok {
			retired = append(retired, ex)
		}
	}

	bySource := map[string]*lane{}
	for _, ln := range oldLanes {
		bySource[ln.source] = ln
	}
	var lanes, starting []*lane
	for _, ln := range next.lanes {
		if o, ok := bySource[ln.source]; ok && o.fingerprint == ln.fingerprint {
			lanes = append(lanes, o)
			delete(bySource, ln.source)
			continue
		}
		ln.queues = queues
		lanes = append(lanes, ln)
		starting = append(starting, ln)
	}
	stopping := bySource

	// The exporters the waits below depend on: the retired ones, and those
	// the stopping lanes hand their batches to.
	waitFor := map[string]bool{}
	for _, ex := range retired {
		waitFor[ex.name] = true
	}
	for _, ln := range stopping {
		for _, name := range ln.routes.Exporters() {
			waitFor[name] = true
		}
	}
	began := time.Now()
	reloadCtx, stopReload := a.reloadContext(waitFor)
	defer stopReload()

	for _, ex := range started {
		ex.queue.Start()
	}
	for _, ln := range stopping {
		ln.cancel()
	}
	// Each stopping lane hands what it read to the queues. One held by a
	// retired exporter that is failing, or by any exporter a newer reload
	// changes, stops handing over; what it did not hand over is read again.
	// One held by a kept exporter that is down waits for it: everything it
	// handed over is delivered by that exporter once it is back, and reading
	// it again would send it twice.
	handGiveUp, stopHand := watchFailing(reloadCtx, retired, began)
	defer stopHand()
	lanesDone := make(chan struct{})
	go func() {
		for _, ln := range stopping {
			<-ln.done
		}
		close(lanesDone)
	}()
	select {
	case <-lanesDone:
	case <-handGiveUp.Done():
		for _, ln := range stopping {
			ln.abandon()
		}
		<-lanesDone
	}

	if runCtx.Err() != nil {
		// The agent is stopping: Run drains every exporter it knew of,
		// the retired ones with the others; the lanes not started never run.
		a.mu.Lock()
		a.lanes = keepRunning(oldLanes, lanes)
		a.mu.Unlock()
		for _, ex := range started {
			ex.queue.Close()
		}
		return errors.New("reload: the agent stopped during the reload")
	}

	// Retired exporters send what they hold until they fail, for at most
	// shutdown_timeout; what they did not send by then is abandoned, never
	// acknowledged.
	drainCtx, stopDrainTimer := context.WithTimeoutCause(reloadCtx, cfg.ShutdownTimeout,
		fmt.Errorf("shutdown_timeout (%v) passed", cfg.ShutdownTimeout))
	defer stopDrainTimer()
	giveUp, stopDrain := watchFailing(drainCtx, retired, began)
	defer stopDrain()
	abandoned := a.drainRetired(giveUp, retired)

	// The replacement lanes resume each file where the old one stopped
	// reading (checkpoint.Tracker.Resume): ranges in flight are acknowledged
	// by whoever holds them, and none is read twice. Ranges nobody will
	// acknowledge are read again from the checkpoint instead.
	var rewound []string
	var rewoundBytes int64
	for _, ln := range stopping {
		if ln.left.Load() || slices.ContainsFunc(ln.routes.Exporters(), func(e string) bool { return abandoned[e] }) {
			rewound = append(rewound, ln.source)
			rewoundBytes += a.tracker.Rewind(ln.source)
		}
	}
	if len(rewound) > 0 {
		cause := context.Cause(giveUp)
		if len(abandoned) == 0 {
			cause = context.Cause(handGiveUp)
		}
		a.log.Warn("reload: records not delivered by the old configuration are read again from the checkpoint through the new one",
			"sources", rewound, "bytes", rewoundBytes, "cause", cause.Error())
	}

	a.mu.Lock()
	for _, ln := range starting {
		a.startLane(ln)
	}
	startedLanes = append(startedLanes, starting...)
	a.cfg, a.lanes, a.exporters = cfg, lanes, exporters
	a.mu.Unlock()
	a.log.Info("configuration reloaded", "lanes_kept", len(lanes)-len(starting), "lanes_restarted", len(starting),
		"lanes_stopped", len(stopping), "exporters_started", len(started), "exporters_retired", len(retired),
		"exporters_abandoned", len(abandoned), "sources_rewound", len(rewound), "seconds", time.Since(began).Seconds())
	return nil
}

// closeUnstarted closes the clients of exporters that never started.
func closeUnstarted(exporters []*exporter) {
	for _, ex := range exporters {
		ex.client.Close()
	}
}

// supersedeFor tells a reload under way which running exporters the next
// one (of exporters) changes or removes: if it waits for one of them, it
// stops waiting.
func (a *Agent) supersedeFor(exporters []*exporter) {
	a.mu.Lock()
	running := a.exporters
	a.mu.Unlock()
	changes := map[string]bool{}
	for _, ex := range running {
		if i := slices.IndexFunc(exporters, func(n *exporter) bool { return n.name == ex.name }); i < 0 || exporters[i].fingerprint != ex.fingerprint {
			changes[ex.name] = true
		}
	}
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	if a.supersede != nil {
		a.supersede(changes)
	}
}

// reloadContext returns the context of a reload's waits, cancelled with its
// cause when a newer reload changes one of the exporters in waitFor (see
// supersedeFor); stop releases it.
func (a *Agent) reloadContext(waitFor map[string]bool) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	a.pendingMu.Lock()
	a.supersede = func(changes map[string]bool) {
		for name := range changes {
			if waitFor[name] {
				cancel(fmt.Errorf("a newer reload changes exporter %s", name))
				return
			}
		}
	}
	a.pendingMu.Unlock()
	return ctx, func() {
		cancel(errors.New("reload done"))
		a.pendingMu.Lock()
		a.supersede = nil
		a.pendingMu.Unlock()
	}
}

// retiredStall is how long a retired exporter may hold requests without
// an answer before a reload gives up on it: one whose destination accepts
// connections but never answers (a black hole) fails no attempt before its
// timeout.
const retiredStall = 5 * time.Second

// watchFailing returns a child of parent cancelled, with the reason as its
// cause, as soon as one of exporters is failing (its last attempts failed
// and none succeeded since: export.Stats.FailingSince), or has held
// requests for retiredStall since began without one succeeding.
func watchFailing(parent context.Context, exporters []*exporter, began time.Time) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	if len(exporters) == 0 {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, ex := range exporters {
				qs := ex.queue.Stats()
				if !qs.FailingSince.IsZero() {
					cancel(fmt.Errorf("exporter %s failing since %s (%s): %s", ex.name,
						qs.FailingSince.UTC().Format(time.RFC3339), qs.FailingReason, qs.LastError))
					return
				}
				last := qs.LastSuccess
				if last.Before(began) {
					last = began
				}
				if qs.InFlight > 0 && time.Since(last) > retiredStall {
					cancel(fmt.Errorf("exporter %s holds %d requests without an answer for %v", ex.name, qs.InFlight, retiredStall))
					return
				}
			}
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}

// drainRetired shuts the retired exporters down, letting them send what
// they hold until giveUp, and closes them. It returns the names of those
// that abandoned records.
func (a *Agent) drainRetired(giveUp context.Context, retired []*exporter) map[string]bool {
	var mu sync.Mutex
	var wg sync.WaitGroup
	abandoned := map[string]bool{}
	for _, ex := range retired {
		wg.Go(func() {
			err := ex.queue.Shutdown(giveUp)
			if err != nil || ex.queue.Stats().AbandonedRecords > 0 {
				mu.Lock()
				abandoned[ex.name] = true
				mu.Unlock()
				a.log.Warn("reload: retired exporter abandoned what it had not delivered",
					"exporter", ex.name, "records", ex.queue.Stats().AbandonedRecords, "cause", context.Cause(giveUp).Error())
			}
			if err := ex.client.Close(); err != nil {
				a.log.Warn("close exporter", "exporter", ex.name, "err", err)
			}
		})
	}
	wg.Wait()
	return abandoned
}

// keepRunning returns the lanes Run must still wait for when a stop cut a
// reload short: the old ones and the kept ones (never-started new lanes have
// no goroutine).
func keepRunning(old, next []*lane) []*lane {
	var out []*lane
	seen := map[*lane]bool{}
	for _, ln := range append(old, next...) {
		if ln.done != nil && !seen[ln] {
			seen[ln] = true
			out = append(out, ln)
		}
	}
	return out
}
