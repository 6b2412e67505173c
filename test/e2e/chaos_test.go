package e2e

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestChaos runs scenarios that combine what happens to a log agent on a
// real host at once: three applications writing ~600 lines/s each through
// descriptors they keep open, real logrotate every 3-5 s (create,
// copytruncate, compress + delaycompress), the backend down for 15-20 s,
// the agent killed or stopped and started again every 3-7 s, and SIGHUP
// reloads. Every line carries a global sequence number; at the end the
// receiver's tally says which lines are missing (none may be) and which
// arrived twice: none may without a kill; with kills, no run of the agent
// may deliver a line twice (a copy read again from its start) and the
// total stays under a generous bound (see the end of runChaos).
//
// The summary line ("E2E chaos NAME: ...") gives missing lines per file
// with the file's rotation mode, and dup_by_file=a:TOTAL/SAME_RUN. Missing
// lines are also listed as ranges (file, how often its writer had reopened
// it, when they were written) with what the suite did around then, and so
// are the lines that came more than once when some are missing.
//
// Environment:
//
//	LOGPUMP_CHAOS=30m             long form: the scenarios' chaos phases total 30 min (each gets 1/len(scenarios))
//	LOGPUMP_CHAOS_SEED=N          replay the random moments of an earlier run (the seed is printed)
//	LOGPUMP_CHAOS_REPORT_ONLY=1   report failures in the summary instead of failing (baseline measurements)
//	LOGPUMP_CHAOS_FAST=1          stress form: logrotate every 1-2.5 s, restarts every 1.5-4 s, outages twice as
//	                              long, 40 rotations kept (with LOGPUMP_CHAOS=7m: 60 s per scenario)
//	LOGPUMP_REQUIRE_LOGROTATE=1   fail instead of skipping when logrotate is not installed
//
// Run one scenario: go test -count=1 -v -run 'TestChaos/outage-live$' .
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("long test: chaos scenarios of 30-45 s each")
	}
	bin, err := exec.LookPath("logrotate")
	if err != nil {
		bin = "/usr/sbin/logrotate"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("LOGPUMP_REQUIRE_LOGROTATE") == "1" {
				t.Fatal("logrotate not found and LOGPUMP_REQUIRE_LOGROTATE=1")
			}
			t.Skip("logrotate not installed (apt-get install logrotate); set LOGPUMP_REQUIRE_LOGROTATE=1 to fail instead")
		}
	}
	cp := chaosParams{logrotate: bin, seed: uint64(time.Now().UnixNano()), each: 35 * time.Second,
		rotMin: 3 * time.Second, rotSpan: 2 * time.Second, restartMin: 3 * time.Second, restartMax: 7 * time.Second,
		outageScale: 1, keep: chaosKeep}
	if os.Getenv("LOGPUMP_CHAOS_FAST") == "1" {
		cp.rotMin, cp.rotSpan, cp.restartMin, cp.restartMax = time.Second, 1500*time.Millisecond, 1500*time.Millisecond, 4*time.Second
		cp.outageScale, cp.keep = 2, 4*chaosKeep
	}
	if s := os.Getenv("LOGPUMP_CHAOS_SEED"); s != "" {
		if cp.seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LOGPUMP_CHAOS_SEED: %v", err)
		}
	}
	if s := os.Getenv("LOGPUMP_CHAOS"); s != "" {
		total, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LOGPUMP_CHAOS: %v", err)
		}
		cp.long = true
		cp.each = total / time.Duration(len(chaosScenarios))
	}
	cp.reportOnly = os.Getenv("LOGPUMP_CHAOS_REPORT_ONLY") == "1"
	t.Logf("chaos seed %d (replay with LOGPUMP_CHAOS_SEED=%d), %v per scenario, report only: %v", cp.seed, cp.seed, cp.each, cp.reportOnly)
	fmt.Printf("E2E chaos: seed=%d each=%v long=%v report_only=%v\n", cp.seed, cp.each, cp.long, cp.reportOnly)
	for _, sc := range chaosScenarios {
		t.Run(sc.name, func(t *testing.T) {
			// Two at a time in the short form: a scenario needs about a
			// third of a core (three writers, logrotate, the agent, the
			// receiver). The long form runs them one after the other.
			if !cp.long {
				t.Parallel()
			}
			runChaos(t, cp, sc)
		})
	}
}

// restartKind is how a scenario stops the agent before starting it again.
type restartKind int

const (
	noRestarts restartKind = iota
	killOnly               // SIGKILL
	termOnly               // SIGTERM, a clean stop
	killOrTerm             // either, at random
)

func (k restartKind) String() string {
	return [...]string{"none", "kill", "term", "mixed"}[k]
}

// chaosScenario is one combination of writers' rotation, the agent's
// patterns and the disturbances.
type chaosScenario struct {
	name            string
	modes           [3]rotMode // of app-a.log, app-b.log, app-c.log
	dateext, olddir bool
	rotatedMatched  bool   // the source matches rotated names too
	excludeGz       bool   // ... but not the .gz ones
	compression     string // the source's compression
	outage          time.Duration
	restarts        restartKind
	reloads         bool
}

// mixedModes gives each file its own rotation: a is renamed and recreated,
// b copied and truncated, c renamed, recreated and compressed one rotation
// later.
var mixedModes = [3]rotMode{rotCreate, rotCopyTruncate, rotCompress}

// chaosScenarios is issue 17's table, plus a reload and a dateext/olddir
// variant.
var chaosScenarios = []chaosScenario{
	{name: "outage-live", modes: mixedModes, outage: 20 * time.Second},
	{name: "outage-rotated", modes: mixedModes, rotatedMatched: true, excludeGz: true, outage: 20 * time.Second},
	{name: "outage-restarts", modes: mixedModes, outage: 15 * time.Second, restarts: killOrTerm},
	{name: "term-rotated", modes: mixedModes, rotatedMatched: true, excludeGz: true, restarts: termOnly},
	{name: "gzip-auto", modes: mixedModes, rotatedMatched: true, compression: "auto", outage: 20 * time.Second, restarts: killOrTerm},
	{name: "reload-outage", modes: mixedModes, outage: 20 * time.Second, reloads: true},
	{name: "kill-olddir-dateext", modes: mixedModes, dateext: true, olddir: true, rotatedMatched: true, excludeGz: true, restarts: killOnly},
}

// chaosParams are the suite's settings from the environment.
type chaosParams struct {
	logrotate  string
	seed       uint64
	each       time.Duration // chaos phase of one scenario
	long       bool
	reportOnly bool
	// The pace: logrotate every rotMin to rotMin+rotSpan, a restart every
	// restartMin to restartMax, outages of the scenario's length times
	// outageScale, keep rotations kept.
	rotMin, rotSpan        time.Duration
	restartMin, restartMax time.Duration
	outageScale, keep      int
}

const (
	chaosFiles      = "abc"
	chaosLineLen    = 120
	chaosPerSec     = 600 // lines per second and file
	chaosShutdown   = 3 * time.Second
	chaosInFlight   = 16 << 20 // checkpoints.max_in_flight (newEnv's default)
	chaosQueueLines = 64 * 1000
)

// chaosTimeline records what the suite did, with times from the scenario's
// start, to print next to missing ranges.
type chaosTimeline struct {
	mu     sync.Mutex
	t0     time.Time
	events []chaosEvent
}

type chaosEvent struct {
	at   time.Duration
	what string
}

func (tl *chaosTimeline) add(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.events = append(tl.events, chaosEvent{time.Since(tl.t0), fmt.Sprintf(format, args...)})
}

// between returns the events from a to b, as "12.3s kill".
func (tl *chaosTimeline) between(a, b time.Duration) []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []string
	for _, ev := range tl.events {
		if ev.at >= a && ev.at <= b {
			out = append(out, fmt.Sprintf("%.1fs %s", ev.at.Seconds(), ev.what))
		}
	}
	return out
}

func runChaos(t *testing.T, cp chaosParams, sc chaosScenario) {
	wallStart := time.Now()
	sc.outage *= time.Duration(cp.outageScale)
	h := fnv.New64a()
	h.Write([]byte(sc.name))
	rng := rand.New(rand.NewPCG(cp.seed, h.Sum64()))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}

	tally := otlpsink.NewTally()
	runs := &runTally{}
	onBody := func(body string) {
		tally.AddBody(body)
		runs.addBody(body)
	}
	st := setup{onBody: onBody, shutdownTimeout: chaosShutdown, sourceCompression: sc.compression, include: []string{"*.log"}}
	if sc.rotatedMatched {
		inc, gz := rotatedPatterns(sc.dateext, sc.olddir)
		st.include = append(st.include, inc...)
		if sc.excludeGz {
			st.exclude = gz
		}
	}
	e := newEnv(t, st)
	baseCfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	led := &ledger{t0: time.Now()}
	tl := &chaosTimeline{t0: led.t0}
	var writers []*appWriter
	for i, name := range chaosFiles {
		w, err := newAppWriter(uint8(i), string(name), filepath.Join(e.logsDir, "app-"+string(name)+".log"), chaosLineLen, led)
		if err != nil {
			t.Fatal(err)
		}
		writers = append(writers, w)
		t.Cleanup(w.close)
	}
	fifo := filepath.Join(e.dir, "reopen.fifo")
	reopen, err := openReopenChannel(fifo, writers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reopen.close)
	rot, err := writeRotation(cp.logrotate, e.dir, e.logsDir, fifo, writers, sc.modes[:], sc.dateext, sc.olddir, cp.keep)
	if err != nil {
		t.Fatal(err)
	}

	// Failures: t.Error, or with LOGPUMP_CHAOS_REPORT_ONLY=1 a log line and
	// verdict=would-fail in the summary.
	var failures []string
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		failures = append(failures, msg)
		if cp.reportOnly {
			t.Logf("REPORT ONLY, not failing: %s", msg)
		} else {
			t.Error(msg)
		}
	}

	// Writers and rotation run until the chaos phase ends.
	wctx, stopWriting := context.WithCancel(context.Background())
	defer stopWriting()
	var bg sync.WaitGroup
	bgErrs := make(chan error, len(writers)+1)
	for _, w := range writers {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := w.run(wctx, chaosPerSec); err != nil {
				bgErrs <- err
			}
		}()
	}
	rotSeed := rng.Uint64()
	bg.Add(1)
	go func() {
		defer bg.Done()
		r := rand.New(rand.NewPCG(rotSeed, 1))
		for {
			d := cp.rotMin + time.Duration(r.Int64N(int64(cp.rotSpan)))
			select {
			case <-wctx.Done():
				return
			case <-time.After(d):
			}
			if err := rot.rotate(); err != nil {
				bgErrs <- err
				return
			}
			tl.add("logrotate #%d", rot.runs)
		}
	}()

	// The run is noted before the agent starts: the receiver may take its
	// first lines before start returns, and a line must not count as
	// delivered twice by one run because the run was not noted yet.
	runs.run.Store(int32(e.runs + 1))
	p := e.start()
	tl.add("agent start (run %d)", e.runs)
	var kills, terms, reloads, outages, crashes int
	var downFor time.Duration

	// The schedule: each kind of event has its next moment; the loop sleeps
	// until the earliest.
	start := time.Now()
	end := start.Add(cp.each)
	never := end.Add(time.Hour)
	nextRestart, nextReload, outageAt, upAt := never, never, never, never
	if sc.restarts != noRestarts {
		nextRestart = start.Add(between(cp.restartMin, cp.restartMax))
	}
	if sc.reloads {
		nextReload = start.Add(between(2*time.Second, 5*time.Second))
	}
	if sc.outage > 0 {
		// Somewhere in the phase, ending at least 3 s before it does.
		outageAt = start.Add(between(3*time.Second, cp.each-sc.outage-3*time.Second))
	}
	sinkDown := false
	stopSink := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.sink.Stop(ctx); err != nil {
			t.Fatalf("stop receiver: %v", err)
		}
		sinkDown = true
	}
	startSink := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.sink.Restart(ctx); err != nil {
			t.Fatalf("restart receiver: %v", err)
		}
		sinkDown = false
	}
	// checkAlive notes an agent that ended on its own and starts it again.
	checkAlive := func(when string) {
		if !p.exited() {
			return
		}
		crashes++
		code := -1
		if p.exit != nil {
			code = p.exit.ExitCode()
		}
		fail("agent (run %d) exited on its own with code %d before %s", e.runs, code, when)
		tl.add("agent found exited (code %d)", code)
		runs.run.Store(int32(e.runs + 1))
		p = e.start()
		tl.add("agent start (run %d)", e.runs)
	}

	for {
		now := time.Now()
		next := earliest(end, nextRestart, nextReload, outageAt, upAt)
		if next.After(now) {
			time.Sleep(next.Sub(now))
		}
		now = time.Now()
		if !now.Before(end) {
			break
		}
		if !now.Before(outageAt) {
			stopSink()
			outages++
			tl.add("receiver down")
			upAt, outageAt = now.Add(sc.outage), never
		}
		if !now.Before(upAt) {
			startSink()
			downFor += sc.outage
			tl.add("receiver up")
			upAt = never
			if cp.long && sc.outage > 0 {
				// Another outage after 20-60 s of service, when it fits.
				at := now.Add(between(20*time.Second, 60*time.Second))
				if at.Add(sc.outage + 3*time.Second).Before(end) {
					outageAt = at
				}
			}
		}
		if !now.Before(nextReload) {
			checkAlive("a reload")
			cfg := string(baseCfg)
			if reloads%2 == 0 {
				// A filter that changes every time and drops nothing.
				cfg = strings.Replace(cfg, "    exporters: [collector]", "    processors: [keep]\n    exporters: [collector]", 1)
				cfg += fmt.Sprintf("processors:\n  keep: {type: filter, drop: 'body == \"never-%d\"'}\n", reloads)
			}
			if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			p.signal(syscall.SIGHUP)
			reloads++
			tl.add("SIGHUP #%d", reloads)
			nextReload = time.Now().Add(between(2*time.Second, 5*time.Second))
		}
		if !now.Before(nextRestart) {
			checkAlive("a restart")
			kill := sc.restarts == killOnly || (sc.restarts == killOrTerm && rng.IntN(2) == 0)
			if kill {
				p.signal(syscall.SIGKILL)
				if _, err := p.wait(10 * time.Second); err != nil {
					t.Fatal(err)
				}
				kills++
				tl.add("SIGKILL (run %d)", e.runs)
			} else {
				t0 := time.Now()
				p.signal(syscall.SIGTERM)
				code, err := p.wait(chaosShutdown + 5*time.Second)
				took := time.Since(t0)
				if err != nil {
					fail("SIGTERM (run %d): %v", e.runs, err)
					p.signal(syscall.SIGKILL)
					p.wait(10 * time.Second)
				} else if code != 0 {
					fail("SIGTERM (run %d): exit code %d after %v, want 0", e.runs, code, took)
				}
				terms++
				tl.add("SIGTERM (run %d, exit took %.1fs)", e.runs, took.Seconds())
			}
			runs.run.Store(int32(e.runs + 1))
			p = e.start()
			tl.add("agent start (run %d)", e.runs)
			nextRestart = time.Now().Add(between(cp.restartMin, cp.restartMax))
		}
	}

	// The end: no more rotation or writing; the receiver up; the agent
	// catches up until everything arrived or nothing arrived for 6 s.
	stopWriting()
	bg.Wait()
	close(bgErrs)
	for err := range bgErrs {
		fail("%v", err)
	}
	written := led.written()
	tl.add("writers and logrotate stopped: %d lines", written)
	if sinkDown {
		startSink()
		downFor += time.Since(upAt.Add(-sc.outage))
		tl.add("receiver up")
	}
	checkAlive("the catch-up")
	catchUpBound := 90 * time.Second
	if cp.long {
		catchUpBound = 5 * time.Minute
	}
	catchStart := time.Now()
	lastTotal, lastChange := tally.Total(), time.Now()
	waitUntil(catchUpBound, func() bool {
		if n := tally.Total(); n != lastTotal {
			lastTotal, lastChange = n, time.Now()
		}
		return tally.Distinct(written) == written || time.Since(lastChange) > 6*time.Second
	})
	catchUp := time.Since(catchStart)
	if p.exited() {
		crashes++
		fail("agent (run %d) exited on its own during the catch-up: %v", e.runs, p.exit)
	} else {
		t0 := time.Now()
		p.signal(syscall.SIGTERM)
		if code, err := p.wait(chaosShutdown + 5*time.Second); err != nil || code != 0 {
			fail("final SIGTERM: exit code %d, err %v after %v", code, err, time.Since(t0))
		}
	}

	rep := tally.Report(written)
	lines := led.snapshot()
	ranges := missingRanges(lines, tally)
	missingBy := make([]int, len(writers))
	for _, r := range ranges {
		missingBy[r.file] += r.lines
	}
	dupBy := make([]int, len(writers))
	for seq, li := range lines {
		if c := tally.Count(seq); c > 1 {
			dupBy[li.file] += c - 1
		}
	}
	sameRun := runs.sameRunCopies()
	sameRunBy := make([]int, len(writers))
	for _, seq := range sameRun {
		if seq < len(lines) {
			sameRunBy[lines[seq].file]++
		}
	}
	var byFile, dupByFile []string
	for i, w := range writers {
		byFile = append(byFile, fmt.Sprintf("%s(%s):%d", w.name, sc.modes[i], missingBy[i]))
		dupByFile = append(dupByFile, fmt.Sprintf("%s:%d/%d", w.name, dupBy[i], sameRunBy[i]))
	}
	applied := 0
	if sc.reloads {
		applied = strings.Count(readLog(t, e), `"msg":"configuration reloaded"`)
	}

	// Duplicate bound when the agent was killed (per kill, as TestCrash
	// argues it): what was read but not acknowledged (max_in_flight bytes),
	// the export queue on top, and one checkpoint flush interval of
	// throughput (the most records the receiver took in any 2 s). Generous:
	// the in-flight cap alone is more than a short scenario writes. Without
	// kills a line must arrive once.
	perKill := chaosInFlight/chaosLineLen + chaosQueueLines + tally.MaxIn(2*time.Second)
	dupBound := kills * perKill
	verdictOK := true
	if rep.Missing > 0 {
		verdictOK = false
		var b strings.Builder
		fmt.Fprintf(&b, "%d of %d lines missing (by file: %s) in %d ranges; first ones:", rep.Missing, written, strings.Join(byFile, " "), len(ranges))
		listRanges := func(ranges []missingRange) {
			for _, r := range ranges[:min(len(ranges), 8)] {
				from, to := time.Duration(r.fromMS)*time.Millisecond, time.Duration(r.toMS)*time.Millisecond
				fmt.Fprintf(&b, "\n  app-%c.log (%s) opened %d times before: seq %d-%d (%d lines) written %.2f-%.2fs; around then: %s",
					chaosFiles[r.file], sc.modes[r.file], r.gen, r.first, r.last, r.lines, from.Seconds(), to.Seconds(),
					strings.Join(tl.between(from-6*time.Second, to+time.Second), ", "))
			}
		}
		listRanges(ranges)
		if rep.Duplicates > 0 {
			// Lines missing next to lines that came twice: often one byte
			// range read from the wrong file or at the wrong offset.
			copied := copiedRanges(lines, tally)
			fmt.Fprintf(&b, "\nand %d lines more than once, in %d ranges; first ones:", rep.Duplicates, len(copied))
			listRanges(copied)
		}
		fail("%s", b.String())
	}
	if rep.Unexpected > 0 {
		verdictOK = false
		fail("records that were never written arrived: %v", rep)
	}
	// Without a kill, a line comes once, but for copytruncate during an
	// outage: the copy is matched with the truncated original as soon as
	// both are seen, and a few lines read from the original in between may
	// come again from the copy. They are bounded by a second of writing per
	// rotation, and reported.
	ctDups, otherDups, otherSameRun := 0, 0, 0
	for i, m := range sc.modes {
		if m == rotCopyTruncate && sc.outage > 0 {
			ctDups += dupBy[i]
		} else {
			otherDups += dupBy[i]
			otherSameRun += sameRunBy[i]
		}
	}
	ctBound := rot.runs * chaosPerSec
	switch {
	case kills == 0 && (otherDups > 0 || ctDups > ctBound):
		verdictOK = false
		fail("%d duplicates without a kill (restart: %v, %d clean stops; copytruncate during an outage %d, at most %d); want every line once",
			rep.Duplicates, sc.restarts, terms, ctDups, ctBound)
	case kills > 0 && rep.Duplicates > dupBound:
		verdictOK = false
		fail("%d duplicates after %d kills, want at most %d (%d per kill)", rep.Duplicates, kills, dupBound, perKill)
	case kills == 0 && otherSameRun > 0:
		// After a kill a run may read a line again from two places (the
		// file and its compressed copy, both found from checkpoints that
		// were behind): duplicates of a kill, bounded above and reported
		// in dup_by_file. Without one, a run reads a line once.
		verdictOK = false
		fail("%d copies delivered twice by the same run of the agent (by file: %s), e.g. seq %v; a run reads a line once",
			len(sameRun), strings.Join(dupByFile, " "), sameRun[:min(len(sameRun), 5)])
	case rep.MaxCopies > e.runs+min(ctDups, 1):
		verdictOK = false
		fail("a line arrived %d times in %d runs of the agent", rep.MaxCopies, e.runs)
	}
	if sc.reloads && applied < reloads {
		// A reload left unapplied is reported, not a failure: a SIGHUP
		// during an earlier reload's drain may be merged with it.
		t.Logf("%d of %d reloads logged as applied", applied, reloads)
	}
	if len(failures) > 0 {
		verdictOK = false
	}
	verdict := "ok"
	switch {
	case !verdictOK && cp.reportOnly:
		verdict = "would-fail"
	case !verdictOK:
		verdict = "FAIL"
	}
	summary(t, "chaos "+sc.name, "written=%d delivered=%d distinct=%d missing=%d duplicates=%d max_copies=%d missing_by_file=%s dup_by_file=%s rotations=%d outages=%d down_s=%.0f restarts=%s kills=%d terms=%d reloads=%d/%d runs=%d crashes=%d dup_bound=%d catch_up_s=%.1f wall_s=%.1f seed=%d verdict=%s",
		rep.Written, rep.Delivered, rep.Distinct, rep.Missing, rep.Duplicates, rep.MaxCopies, strings.Join(byFile, ","),
		strings.Join(dupByFile, ","), rot.runs, outages, downFor.Seconds(), sc.restarts, kills, terms, applied, reloads, e.runs, crashes, dupBound,
		catchUp.Seconds(), time.Since(wallStart).Seconds(), cp.seed, verdict)
}

func earliest(t0 time.Time, ts ...time.Time) time.Time {
	for _, t := range ts {
		if t.Before(t0) {
			t0 = t
		}
	}
	return t0
}
