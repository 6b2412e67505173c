package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestGateways sends to three Collector receivers listed as one exporter's
// endpoints, over OTLP/gRPC, and counts every line:
//   - a backlog spreads evenly: each receiver gets 33 % ± 10 %;
//   - one receiver stopped while lines keep coming, and started again 10 s
//     later: the other two take its share (lines keep arriving during the
//     outage), and none is missing;
//   - all three stopped for 20 s: nothing arrives, the agent waits, and
//     once they are back none is missing.
func TestGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: outages of 10 s and 20 s")
	}
	const (
		lineLen = 120
		backlog = 300_000
		perSec  = 10_000
	)
	tally := otlpsink.NewTally()
	e := newEnv(t, setup{gateways: 3, onBody: tally.AddBody})
	s := e.newStream("gw", lineLen, "a.log", "b.log")
	if err := s.write(backlog); err != nil {
		t.Fatal(err)
	}
	p := e.start()
	ctx := context.Background()
	records := func() []int {
		out := make([]int, len(e.sinks))
		for i, sk := range e.sinks {
			out[i] = sk.Stats().Records
		}
		return out
	}
	waitAll := func(what string, total int) {
		t.Helper()
		if !waitUntil(90*time.Second, func() bool { return tally.Distinct(total) == total || p.exited() }) {
			t.Fatalf("%s: %d of %d lines arrived", what, tally.Distinct(total), total)
		}
	}

	// 1. Spread.
	waitAll("backlog", backlog)
	spread := records()
	for i, n := range spread {
		if share := float64(n) / float64(backlog); share < 0.23 || share > 0.43 {
			t.Errorf("receiver %d got %d of %d records (%.1f %%), want 33 %% ± 10 %%", i, n, backlog, 100*share)
		}
	}

	// 2. One receiver down for 10 s while lines keep coming.
	wctx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.pace(wctx, 1<<30, perSec) }()
	time.Sleep(2 * time.Second)
	if err := e.sinks[1].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	down, deliveredAtDown, writtenAtDown := time.Now(), tally.Total(), s.written()
	time.Sleep(10 * time.Second)
	deliveredDuring, writtenDuring := tally.Total()-deliveredAtDown, s.written()-writtenAtDown
	if err := e.sinks[1].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The two others absorbed its share: delivery kept up with the writer
	// (what was written in the last second may still be on its way).
	if deliveredDuring < writtenDuring-2*perSec {
		t.Errorf("while one of three receivers was down for %v, %d lines arrived of %d written; want the others to take its share",
			time.Since(down).Round(time.Second), deliveredDuring, writtenDuring)
	}
	time.Sleep(3 * time.Second)
	stopWriting()
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	total := s.written()
	waitAll("after one receiver's outage", total)
	afterOne := records()
	if afterOne[1] == spread[1] {
		t.Error("the restarted receiver got no records after it was back")
	}

	// 3. All three down for 20 s.
	wctx, stopWriting = context.WithCancel(ctx)
	defer stopWriting()
	go func() { writeErr <- s.pace(wctx, 1<<30, perSec) }()
	time.Sleep(time.Second)
	for _, sk := range e.sinks {
		if err := sk.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	atStop := tally.Total()
	time.Sleep(20 * time.Second)
	if p.exited() {
		t.Fatal("agent exited while every receiver was down")
	}
	if n := tally.Total() - atStop; n != 0 {
		t.Errorf("%d records arrived while every receiver was down", n)
	}
	for _, sk := range e.sinks {
		if err := sk.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	stopWriting()
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	total = s.written()
	waitAll("after every receiver's outage", total)
	p.stop(10 * time.Second)
	rep := tally.Report(total)
	final := records()
	summary(t, "gateways", "%v records_per_receiver_backlog=%v records_per_receiver_end=%v", rep, spread, final)
	if rep.Missing != 0 || rep.Unexpected != 0 {
		t.Errorf("want no line missing: %v", rep)
	}
	if rep.Duplicates > 0 {
		t.Logf("%d duplicates (requests in progress when a receiver stopped, sent again)", rep.Duplicates)
	}
}
