package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestOutage stops the receiver for 30 s while the file keeps growing, then
// starts it again on the same port, over OTLP/gRPC and OTLP/HTTP. Every line
// must arrive exactly once, and the agent's memory must not grow with the
// backlog: the file is the buffer.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: a 30 s outage")
	}
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) { testOutage(t, protocol) })
	}
}

func testOutage(t *testing.T, protocol string) {
	const (
		lineLen = 200
		perSec  = 25_000 // 5 MB/s: 150 MB written during the outage
		outage  = 30 * time.Second
		// Memory bound. The agent holds at most checkpoints.max_in_flight
		// (16 MiB) of read but unacknowledged lines, plus the requests being
		// encoded and sent (in_flight 2 x 1000 records, under 1 MiB), plus the
		// Go runtime and binary (~20-30 MiB). With the garbage collector's
		// default target of twice the live heap that is about 70 MiB; the
		// bound gives twice that. The backlog written during the outage
		// (~150 MB) is larger than the bound, so an agent that kept the
		// backlog in memory would exceed it.
		rssBound = 150 * mib
	)
	tally := otlpsink.NewTally()
	e := newEnv(t, setup{protocol: protocol, onBody: tally.AddBody})
	s := e.newStream("outage", lineLen, "a.log")
	if err := s.write(10_000); err != nil {
		t.Fatal(err)
	}
	p := e.start()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.pace(ctx, 1<<30, perSec) }()

	// Steady state first: the agent keeps up with the writer.
	if !waitUntil(30*time.Second, func() bool { return tally.Distinct(1<<30) >= 50_000 }) {
		t.Fatalf("only %d lines arrived before the outage", tally.Distinct(1<<30))
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := e.sink.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	downAt, writtenAtDown, deliveredAtDown := time.Now(), s.written(), tally.Total()
	var peakRSS int64
	var first, last memory
	tick := time.NewTicker(250 * time.Millisecond)
	for time.Since(downAt) < outage {
		<-tick.C
		m, err := readMemory(p.pid())
		if err != nil {
			t.Fatalf("agent gone during the outage: %v", err)
		}
		if first.rss == 0 {
			first = m
		}
		last = m
		peakRSS = max(peakRSS, m.rss)
	}
	tick.Stop()
	backlog := s.written() - writtenAtDown
	lateArrivals := tally.Total() - deliveredAtDown
	if err := e.sink.Restart(sctx); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	deliveredAtUp := tally.Total()
	var firstAfter time.Duration
	waitUntil(2*time.Minute, func() bool {
		if firstAfter == 0 && tally.Total() > deliveredAtUp {
			firstAfter = time.Since(upAt)
		}
		return firstAfter != 0
	})
	// A few more seconds of writing after the outage, then stop the writer
	// and wait for the backlog to drain.
	time.Sleep(3 * time.Second)
	cancel()
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	total := s.written()
	if !waitUntil(2*time.Minute, func() bool { return tally.Distinct(total) == total || p.exited() }) {
		t.Errorf("2 min after the outage %d of %d lines arrived", tally.Distinct(total), total)
	}
	drained := time.Since(upAt)
	end, _ := readMemory(p.pid())
	took := p.stop(10 * time.Second)
	rep := tally.Report(total)
	summary(t, "outage-"+protocol, "%v outage_seconds=%.0f backlog_lines=%d backlog_mb=%.0f peak_rss_mib=%.1f hwm_at_outage_end_mib=%.1f rss_at_outage_start_mib=%.1f hwm_at_end_mib=%.1f first_after_restart_seconds=%.2f drain_seconds=%.1f stop_seconds=%.2f",
		rep, outage.Seconds(), backlog, float64(backlog*lineLen)/1e6, float64(peakRSS)/mib, float64(last.hwm)/mib,
		float64(first.rss)/mib, float64(end.hwm)/mib, firstAfter.Seconds(), drained.Seconds(), took.Seconds())
	if lateArrivals > 0 {
		t.Logf("%d records arrived after the receiver was stopped (requests in progress at the stop)", lateArrivals)
	}
	if rep.Missing != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 {
		t.Errorf("want every line exactly once across the outage: %v", rep)
	}
	if peakRSS > rssBound || last.hwm > rssBound {
		t.Errorf("agent memory during the outage: peak VmRSS %.1f MiB, VmHWM %.1f MiB; want under %d MiB while %d MB of backlog were written",
			float64(peakRSS)/mib, float64(last.hwm)/mib, rssBound/mib, backlog*lineLen/1e6)
	}
	// Catching up is bounded by the same in-flight cap.
	if end.hwm > rssBound {
		t.Errorf("agent memory while catching up: VmHWM %.1f MiB, want under %d MiB", float64(end.hwm)/mib, rssBound/mib)
	}
}
