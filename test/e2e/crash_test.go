package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestCrash kills the agent with SIGKILL at random moments while lines are
// being written and restarts it on the same state each time. Checkpoints
// cover acknowledged lines only, so nothing may be missing; what was
// delivered after the last checkpoint write is delivered again and counted.
// E2E_SEED=N replays the kill moments of an earlier run.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: 1,000,000 lines and 5 kills")
	}
	const (
		total    = 1_000_000
		before   = 100_000 // written before the first start
		perSec   = 60_000  // the rest takes 15 s to write
		lineLen  = 100
		kills    = 5
		inFlight = 16 << 20 // checkpoints.max_in_flight
		// Export queue: size 64 batches; a batch holds at most max_records.
		queueRecords  = 64 * 1000
		flushInterval = time.Second
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("E2E_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with E2E_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	tally := otlpsink.NewTally()
	e := newEnv(t, setup{onBody: tally.AddBody})
	s := e.newStream("crash", lineLen, "a.log", "b.log")
	if err := s.write(before); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.pace(ctx, total, perSec) }()

	p := e.start()
	for i := range kills {
		// A random moment: 0.3 to 3.3 s into this run, so kills fall on
		// start-up, catch-up and steady tailing alike.
		d := 300*time.Millisecond + time.Duration(rng.Int64N(int64(3*time.Second)))
		time.Sleep(d)
		if p.exited() {
			t.Fatalf("agent exited on its own before kill %d", i+1)
		}
		p.kill()
		t.Logf("kill %d after %v: written=%d delivered=%d distinct=%d",
			i+1, d.Round(time.Millisecond), s.written(), tally.Total(), tally.Distinct(s.written()))
		p = e.start()
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !waitUntil(2*time.Minute, func() bool { return tally.Distinct(total) == total || p.exited() }) {
		t.Errorf("after 2 min %d of %d lines arrived", tally.Distinct(total), total)
	}
	took := p.stop(10 * time.Second)
	rep := tally.Report(total)

	// Duplicate bound, per kill. After a SIGKILL the next run starts from the
	// last checkpoint written, which is at most everything acknowledged by
	// then. What arrived at the receiver beyond it is sent again:
	//   - lines read and sent but not yet acknowledged: at most
	//     max_in_flight bytes, i.e. inFlight/lineLen lines;
	//   - the export queue's contents (64 batches of up to 1000 records),
	//     counted on top although they are part of the in-flight bytes;
	//   - lines acknowledged since the last checkpoint write: one flush
	//     interval of throughput. The throughput is the most records the
	//     receiver took in any window of flush_interval + 1 s (the extra
	//     second covers a late tick and the fsync'd write of the file).
	perKill := inFlight/lineLen + queueRecords + tally.MaxIn(flushInterval+time.Second)
	bound := kills * perKill
	summary(t, "crash", "%v kills=%d dup_bound=%d (per kill %d) stop_seconds=%.2f seed=%d",
		rep, kills, bound, perKill, took.Seconds(), seed)
	if rep.Missing != 0 {
		t.Errorf("lines lost after SIGKILL: %v", rep)
	}
	if rep.Unexpected != 0 {
		t.Errorf("records that were never written arrived: %v", rep)
	}
	// A run sends a line once (retries follow failed requests only), so no
	// line can arrive more often than there were runs.
	if rep.MaxCopies > kills+1 {
		t.Errorf("a line arrived %d times in %d runs", rep.MaxCopies, kills+1)
	}
	if rep.Duplicates > bound {
		t.Errorf("duplicates = %d, want at most %d (%d kills x %d)", rep.Duplicates, bound, kills, perKill)
	}
}
