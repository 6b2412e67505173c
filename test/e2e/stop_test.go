package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestCleanStop: SIGTERM while the agent is busy drains the export queue,
// flushes the checkpoints and exits 0 within shutdown_timeout; the next run
// on the same state sends no line twice and misses none.
func TestCleanStop(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: stop under load and restart")
	}
	const (
		lineLen         = 100
		before          = 300_000 // a backlog, so the agent is busy when stopped
		perSec          = 100_000
		shutdownTimeout = 10 * time.Second
	)
	tally := otlpsink.NewTally()
	e := newEnv(t, setup{
		shutdownTimeout: shutdownTimeout,
		onBody:          tally.AddBody,
	})
	s := e.newStream("stop", lineLen, "a.log", "b.log")
	if err := s.write(before); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.pace(ctx, 1<<30, perSec) }()

	p := e.start()
	// Under load: lines are arriving and the writer is ahead of them.
	if !waitUntil(30*time.Second, func() bool { return tally.Total() >= 50_000 }) {
		t.Fatalf("only %d lines arrived", tally.Total())
	}
	behind := s.written() - tally.Total()
	took := p.stop(shutdownTimeout)
	atStop := tally.Total()
	if took >= shutdownTimeout {
		t.Errorf("SIGTERM: exit after %v, want within shutdown_timeout %v", took, shutdownTimeout)
	}

	// The writer goes on while the agent is down and for a moment after
	// the restart; then every line must arrive once.
	p = e.start()
	if !waitUntil(30*time.Second, func() bool { return tally.Total() > atStop }) {
		t.Fatalf("nothing arrived after the restart")
	}
	cancel()
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	total := s.written()
	if !waitUntil(time.Minute, func() bool { return tally.Distinct(total) == total || p.exited() }) {
		t.Errorf("after 1 min %d of %d lines arrived", tally.Distinct(total), total)
	}
	took2 := p.stop(shutdownTimeout)
	rep := tally.Report(total)
	summary(t, "clean-stop", "%v delivered_at_stop=%d behind_at_stop=%d stop_seconds=%.2f second_stop_seconds=%.2f shutdown_timeout=%v",
		rep, atStop, behind, took.Seconds(), took2.Seconds(), shutdownTimeout)
	if rep.Missing != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 {
		t.Errorf("want every line exactly once across a clean restart: %v", rep)
	}
}

// TestStopReceiverDown: with the receiver gone nothing can drain, so a
// SIGTERM ends at shutdown_timeout (and a second signal at once); the
// unacknowledged lines are sent after the restart, none missing.
func TestStopReceiverDown(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: stops that hit the deadline")
	}
	const (
		lineLen         = 100
		shutdownTimeout = 3 * time.Second
	)
	tests := []struct {
		name        string
		second      bool          // send a second SIGTERM after secondAfter
		secondAfter time.Duration // from the first
		within      time.Duration // want the exit within this from the first signal
	}{
		{name: "deadline", within: shutdownTimeout + time.Second},
		// The second signal comes well before the deadline: exiting at once
		// means well before shutdown_timeout.
		{name: "second-signal", second: true, secondAfter: 500 * time.Millisecond, within: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tally := otlpsink.NewTally()
			e := newEnv(t, setup{
				shutdownTimeout: shutdownTimeout,
				onBody:          tally.AddBody,
			})
			s := e.newStream("down-"+tt.name, lineLen, "a.log")
			if err := s.write(5000); err != nil {
				t.Fatal(err)
			}
			p := e.start()
			if !waitUntil(30*time.Second, func() bool { return tally.Distinct(5000) == 5000 }) {
				t.Fatalf("only %d of 5000 lines arrived", tally.Distinct(5000))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.sink.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			// Lines the agent reads but cannot deliver.
			if err := s.write(20_000); err != nil {
				t.Fatal(err)
			}
			// Wait until the agent has tried and failed to send them.
			if !waitUntil(10*time.Second, func() bool { return logContains(e, "send failed") }) {
				t.Log("no export failure logged within 10 s")
			}
			t0 := time.Now()
			p.signal(syscall.SIGTERM)
			if tt.second {
				time.Sleep(tt.secondAfter)
				p.signal(syscall.SIGTERM)
			}
			code, err := p.wait(shutdownTimeout + 10*time.Second)
			took := time.Since(t0)
			if err != nil {
				t.Fatal(err)
			}
			if took > tt.within {
				t.Errorf("exit after %v, want within %v", took, tt.within)
			}

			if err := e.sink.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			p = e.start()
			total := s.written()
			if !waitUntil(time.Minute, func() bool { return tally.Distinct(total) == total || p.exited() }) {
				t.Errorf("after 1 min %d of %d lines arrived", tally.Distinct(total), total)
			}
			p.stop(shutdownTimeout)
			rep := tally.Report(total)
			summary(t, "stop-receiver-down-"+tt.name, "%v exit_code=%d stop_seconds=%.2f shutdown_timeout=%v",
				rep, code, took.Seconds(), shutdownTimeout)
			if rep.Missing != 0 || rep.Unexpected != 0 {
				t.Errorf("want no line missing: %v", rep)
			}
		})
	}
}
