package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/logpump/logpump/config"
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
	ln.cancel, ln.done = cancel, make(chan struct{})
	go func() {
		defer close(ln.done)
		a.drive(ctx, a.hard, ln)
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
	for b := range ln.chain(ln.src.Batches(read)) {
		for _, d := range ln.routes.Split(b) {
			q := ln.queues[d.Exporter]
			if err := q.Enqueue(hard, d.Batch); err != nil {
				a.log.Warn("shutdown deadline reached with batches still queued; they will be read again on the next start",
					"source", ln.source, "exporter", d.Exporter)
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
//     queues); new ones start; removed or changed ones drain and stop once
//     nothing routes to them;
//   - a lane (a source with its pipeline) whose source, processors, routes
//     and exporters did not change keeps running untouched;
//   - a changed or removed lane stops reading at a batch boundary; once its
//     goroutine has handed on what it read, its replacement starts and
//     resumes each file where it stopped reading (ranges still in flight
//     are acknowledged as usual), so no line is read twice or skipped, and
//     no moment passes without a reader holding the files.
//
// Changes of state_dir and checkpoints need a restart; they are logged and
// ignored. Reload must be called while Run runs; reloads are serialised.
func (a *Agent) Reload(cfg *config.Config) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.mu.Lock()
	runCtx := a.runCtx
	old := a.cfg
	oldLanes, oldExporters := a.lanes, a.exporters
	a.mu.Unlock()
	if runCtx == nil || runCtx.Err() != nil {
		return errors.New("reload: the agent is not running")
	}
	next, err := build(cfg, a.env, a.tracker, a.drops)
	if err != nil {
		return err
	}
	if cfg.StateDir != old.StateDir || cfg.Checkpoints != old.Checkpoints {
		a.log.Warn("state_dir and checkpoints settings change only on restart; keeping the running ones",
			"state_dir", old.StateDir)
		cfg.StateDir, cfg.Checkpoints = old.StateDir, old.Checkpoints
	}
	if cfg.ShutdownTimeout != old.ShutdownTimeout {
		a.log.Warn("shutdown_timeout changes only on restart; keeping the running one", "shutdown_timeout", old.ShutdownTimeout)
		cfg.ShutdownTimeout = old.ShutdownTimeout
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
	retired := byName

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

	for _, ex := range started {
		ex.queue.Start()
	}
	for _, ln := range stopping {
		ln.cancel()
	}
	for _, ln := range stopping {
		// Its goroutine has handed every batch it read to the queues. The
		// replacement resumes each file where this one stopped reading
		// (checkpoint.Tracker.Resume): the ranges in flight are
		// acknowledged as usual, none is read twice, and no time passes in
		// which no reader holds the files open (during an outage, waiting
		// for the acknowledgements left rotated files unwatched until
		// rotation deleted them).
		<-ln.done
	}
	a.mu.Lock()
	if runCtx.Err() == nil {
		for _, ln := range starting {
			a.startLane(ln)
		}
		a.cfg, a.lanes = cfg, lanes
	} else {
		a.lanes = keepRunning(oldLanes, lanes)
	}
	a.exporters = exporters
	for _, ex := range retired {
		if runCtx.Err() != nil {
			a.exporters = append(a.exporters, ex) // Run drains it with the others
		}
	}
	a.mu.Unlock()
	if runCtx.Err() == nil {
		for _, ex := range retired {
			go a.retire(ex, cfg.ShutdownTimeout)
		}
	}
	a.log.Info("configuration reloaded", "lanes_kept", len(lanes)-len(starting), "lanes_restarted", len(starting),
		"lanes_stopped", len(stopping), "exporters_started", len(started), "exporters_retired", len(retired))
	return nil
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

// retire drains an exporter that the new configuration removed or changed.
// Nothing routes to it any more.
func (a *Agent) retire(ex *exporter, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := ex.queue.Shutdown(ctx); err != nil {
		a.log.Warn("retired exporter did not drain in time; its unacknowledged lines will be read again on the next start",
			"exporter", ex.name, "err", err)
	}
	if err := ex.client.Close(); err != nil {
		a.log.Warn("close exporter", "exporter", ex.name, "err", err)
	}
}
