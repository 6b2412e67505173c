package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Run loads the checkpoints, starts the exporters and drives every lane until
// ctx is cancelled. Then it stops: the tailers return at a batch boundary,
// the exporters' queues drain for at most the configured shutdown_timeout,
// and the checkpoints are flushed (always, even after the deadline). What was
// not acknowledged by then is not checkpointed and is read again on the next
// start. Run returns nil after a complete drain and an error wrapping
// context.DeadlineExceeded when the deadline cut it short. Run may be called
// once.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.tracker.Load(); err != nil {
		return fmt.Errorf("load checkpoints: %w", err)
	}
	for _, ex := range a.exporters {
		ex.queue.Start()
	}
	flushCtx, stopFlush := context.WithCancel(context.WithoutCancel(ctx))
	flushed := make(chan error, 1)
	go func() { flushed <- a.tracker.Run(flushCtx) }()

	// hard ends the drain: it is cancelled shutdown_timeout after ctx is.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	var stopped atomic.Int64 // unix nanos of the stop request
	stopTimer := context.AfterFunc(ctx, func() {
		stopped.Store(time.Now().UnixNano())
		time.AfterFunc(a.cfg.ShutdownTimeout, cancelHard)
	})
	defer stopTimer()

	a.log.Info("logpump running", "sources", len(a.lanes), "exporters", len(a.exporters), "state_dir", a.cfg.StateDir)
	var wg sync.WaitGroup
	for _, ln := range a.lanes {
		wg.Go(func() { a.drive(ctx, hard, ln) })
	}
	wg.Wait()

	var drainErr error
	var dmu sync.Mutex
	for _, ex := range a.exporters {
		wg.Go(func() {
			if err := ex.queue.Shutdown(hard); err != nil {
				dmu.Lock()
				drainErr = errors.Join(drainErr, fmt.Errorf("drain exporter %s: %w", ex.name, err))
				dmu.Unlock()
			}
		})
	}
	wg.Wait()
	stopFlush()
	flushErr := <-flushed
	for _, ex := range a.exporters {
		if err := ex.client.Close(); err != nil {
			a.log.Warn("close exporter", "exporter", ex.name, "err", err)
		}
	}
	if flushErr != nil {
		flushErr = fmt.Errorf("flush checkpoints: %w", flushErr)
	}
	err := errors.Join(drainErr, flushErr)
	a.log.Info("logpump stopped", "drain_seconds", time.Since(time.Unix(0, stopped.Load())).Seconds(), "clean", err == nil)
	return err
}

// drive pulls one lane's batches through its stages and hands each routed
// part to its exporter's queue. Reading stops when read is cancelled; the
// hand-off of what was read goes on until hard is cancelled, after which the
// rest is left unacknowledged (and read again on the next start).
func (a *Agent) drive(read, hard context.Context, ln *lane) {
	for b := range ln.chain(ln.tailer.Batches(read)) {
		for _, d := range ln.routes.Split(b) {
			if err := ln.queues[d.Exporter].Enqueue(hard, d.Batch); err != nil {
				a.log.Warn("shutdown deadline reached with batches still queued; they will be read again on the next start",
					"source", ln.source, "exporter", d.Exporter)
				return
			}
		}
	}
}
