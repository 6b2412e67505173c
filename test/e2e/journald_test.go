package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/journald/journaldtest"
	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestJournald: entries of a real systemd-journald (its own namespace) reach
// a real Collector receiver once each: those stored before the first start
// (start_at: beginning), those written while the agent runs, and those
// written while it is stopped, read after the restart from the saved
// cursor. After a SIGKILL the entries read but not acknowledged come again
// (counted), none is missing, and the killed agent's journalctl does not
// outlive it. It runs with each reader: the native one and journalctl.
// Records carry host.name from the entries' _HOSTNAME.
func TestJournald(t *testing.T) {
	for _, rd := range []string{"native", "journalctl"} {
		t.Run(rd, func(t *testing.T) { testJournald(t, rd) })
	}
}

func testJournald(t *testing.T, reader string) {
	j := journaldtest.Start(t)
	var mu sync.Mutex
	seen := map[int]int{}
	var first otlpsink.Record
	e := newEnv(t, setup{})
	// The sink keeps only counts, and the first record of the test.
	e.sink.Stop(t.Context())
	sink, err := otlpsink.Start(t.Context(), otlpsink.Options{OnRecord: func(r otlpsink.Record) {
		n, ok := seqOf(r.Body)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			first = r
		}
		seen[n]++
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Stop(t.Context()) })
	cfg := fmt.Sprintf(`state_dir: %s
shutdown_timeout: 10s
checkpoints: {flush_interval: 200ms}
sources:
  system:
    type: journald
    namespace: %s
    identifiers: [e2e]
    start_at: beginning
    reader: %s
exporters:
  collector:
    type: otlp_grpc
    endpoint: %s
    tls: {insecure: true}
    retry: {initial_interval: 100ms, max_interval: 1s}
pipelines:
  main:
    sources: [system]
    exporters: [collector]
`, e.stateDir, j.Namespace, reader, sink.GRPCEndpoint())
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			j.Send(t, "MESSAGE", "seq "+strconv.Itoa(i), "PRIORITY", "3", "SYSLOG_IDENTIFIER", "e2e")
		}
		// Entries of another identifier are not selected.
		j.Send(t, "MESSAGE", "seq -1", "SYSLOG_IDENTIFIER", "other")
	}
	waitAll := func(to int) {
		t.Helper()
		if !waitUntil(30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for i := range to {
				if seen[i] == 0 {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("after 30s not every entry below %d arrived", to)
		}
	}
	count := func(to int) (missing, dups int) {
		mu.Lock()
		defer mu.Unlock()
		for i := range to {
			switch c := seen[i]; {
			case c == 0:
				missing++
			case c > 1:
				dups += c - 1
			}
		}
		return missing, dups
	}

	// settle waits until what the agent reads has caught up with the
	// journal: a marker entry written now has arrived (the journal is read
	// in order), and then no record for a second.
	markers := 0
	settle := func() {
		t.Helper()
		markers++
		m := -1000 - markers
		j.Send(t, "MESSAGE", "seq "+strconv.Itoa(m), "SYSLOG_IDENTIFIER", "e2e")
		total := func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, c := range seen {
				n += c
			}
			return n
		}
		last, since := -1, time.Now()
		if !waitUntil(30*time.Second, func() bool {
			mu.Lock()
			arrived := seen[m] > 0
			mu.Unlock()
			if n := total(); n != last {
				last, since = n, time.Now()
			}
			return arrived && time.Since(since) > time.Second
		}) {
			t.Fatalf("after 30s the marker entry %d has not arrived, or records still arrive", m)
		}
	}

	// started starts the agent and waits until it runs (a SIGTERM before
	// it handles signals would kill it).
	runs := 0
	started := func() *agentProc {
		t.Helper()
		p := e.start()
		runs++
		if !waitUntil(30*time.Second, func() bool {
			data, _ := os.ReadFile(e.agentLog)
			return strings.Count(string(data), `"msg":"logpump running"`) >= runs
		}) {
			t.Fatalf("run %d of the agent is not running after 30s", runs)
		}
		return p
	}

	send(0, 2000)
	p := started()
	send(2000, 5000)
	waitAll(5000)
	p.stop(10 * time.Second)
	send(5000, 6000) // while stopped
	p = started()
	waitAll(6000)
	if missing, dups := count(6000); missing != 0 || dups != 0 {
		t.Errorf("clean stops: %d missing, %d duplicates of 6000", missing, dups)
	}

	// A kill while entries stream in.
	done := make(chan struct{})
	go func() {
		defer close(done)
		send(6000, 9000)
	}()
	time.Sleep(200 * time.Millisecond)
	p.kill()
	<-done
	if n := journalctlsOf(j.Namespace); n != 0 {
		t.Errorf("%d journalctl processes outlived the killed agent", n)
	}
	p = started()
	waitAll(9000)
	missing, dups := count(9000)
	if missing != 0 {
		t.Errorf("after a kill: %d of 9000 entries missing", missing)
	}

	// A backend outage: reading pauses (the journal is the buffer), and
	// every entry written meanwhile arrives once after it. The entries the
	// restarted agent reads again must have arrived before the count is
	// taken: every entry below 9000 may have arrived before the kill, and
	// the second copies after waitAll returned.
	settle()
	_, dupsBefore := count(9000)
	if err := sink.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Written through the outage, 100 a second (a namespace's journald
	// also exits after 30 s without a message).
	for i := 9000; i < 12000; i += 100 {
		send(i, i+100)
		time.Sleep(time.Second)
	}
	if err := sink.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitAll(12000)
	if m, d := count(12000); m != 0 || d != dupsBefore {
		t.Errorf("outage: %d missing, %d duplicates more, want none", m, d-dupsBefore)
	}

	// Eight more stops while entries stream in, SIGKILL and SIGTERM in turn:
	// five of each in all with the final stop.
	next := 12000
	kills, terms := 1, 2
	for i := range 8 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			send(next, next+1000)
		}()
		time.Sleep(100 * time.Millisecond)
		if i%2 == 0 {
			p.kill()
			kills++
		} else {
			p.stop(10 * time.Second)
			terms++
		}
		<-done
		next += 1000
		p = started()
	}
	waitAll(next)
	p.stop(10 * time.Second)
	missing, dups = count(next)
	if missing != 0 {
		t.Errorf("%d of %d entries missing", missing, next)
	}
	summary(t, "journald "+reader, "%d entries, %d clean stops, %d kills, a 30 s outage: %d missing, %d read twice (after kills only)",
		next, terms, kills, missing, dups)
	mu.Lock()
	if seen[-1] != 0 {
		t.Errorf("an entry of an identifier not selected arrived")
	}
	mu.Unlock()

	if first.SeverityNumber != 17 || first.SeverityText != "err" {
		t.Errorf("severity %d %q, want 17 (ERROR) \"err\"", first.SeverityNumber, first.SeverityText)
	}
	for k, want := range map[string]any{"SYSLOG_IDENTIFIER": "e2e", "_NAMESPACE": j.Namespace, "_TRANSPORT": "journal"} {
		if got := first.Attributes[k]; got != want {
			t.Errorf("attribute %s = %v, want %v", k, got, want)
		}
	}
	if got := first.Resource["service.name"]; got != "system" {
		t.Errorf("resource service.name = %v, want the source's name", got)
	}
	if got, want := first.Resource["host.name"], first.Attributes["_HOSTNAME"]; got != want || want == nil {
		t.Errorf("resource host.name = %v, want the entry's _HOSTNAME %v", got, want)
	}
	if first.Timestamp.IsZero() || time.Since(first.Timestamp) > time.Hour {
		t.Errorf("timestamp %v, want the time the entry was written", first.Timestamp)
	}
}

func seqOf(body string) (int, bool) {
	s, ok := strings.CutPrefix(body, "seq ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// journalctlsOf counts the running journalctl processes reading namespace.
func journalctlsOf(namespace string) int {
	// The kernel's parent-death signal is asynchronous: give it a moment.
	n := 0
	for range 50 {
		n = 0
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			cmdline, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
			if err == nil && strings.Contains(string(cmdline), "journalctl") && strings.Contains(string(cmdline), namespace) {
				n++
			}
		}
		if n == 0 {
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}
