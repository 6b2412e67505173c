package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestExportErrors: the receiver rejects every request holding one of ten
// "poison" lines. A permanent rejection is counted by the agent and not
// retried; the lines of the rejected requests count as done (they are not
// sent again, even after a restart) and the lines after them arrive. A
// retryable rejection is retried until it succeeds, and every line arrives
// once.
func TestExportErrors(t *testing.T) {
	const (
		lineLen            = 100
		phase              = 3000
		poisonLo, poisonHi = phase, phase + 10 // [lo, hi)
		retryableFailures  = 3
		maxRetryInterval   = 2 * time.Second // retry.max_interval in the config
	)
	tests := []struct {
		name      string
		protocol  string
		permanent bool
	}{
		{"permanent-grpc", "grpc", true},
		{"permanent-http", "http", true},
		{"retryable-grpc", "grpc", false},
		{"retryable-http", "http", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delivered := otlpsink.NewTally()
			rejected := otlpsink.NewTally() // every attempt that was rejected
			e := newEnv(t, setup{
				protocol: tt.protocol,
				onBody:   delivered.AddBody,
			})
			s := e.newStream("errors-"+tt.name, lineLen, "a.log")
			if err := s.write(phase); err != nil {
				t.Fatal(err)
			}
			p := e.start()
			if !waitUntil(30*time.Second, func() bool { return delivered.Distinct(phase) == phase }) {
				t.Fatalf("only %d of %d lines arrived before the rejections", delivered.Distinct(phase), phase)
			}

			var mu sync.Mutex
			attempts := 0
			var lastReject time.Time
			e.sink.SetReject(func(ld plog.Logs) error {
				if !holdsSeq(ld, poisonLo, poisonHi) {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				if !tt.permanent && attempts == retryableFailures {
					return nil
				}
				attempts++
				lastReject = time.Now()
				forEachBody(ld, rejected.AddBody)
				if tt.permanent {
					return otlpsink.Permanent(fmt.Errorf("poison lines %d to %d", poisonLo, poisonHi-1))
				}
				return errors.New("busy, try again")
			})

			// Lines phase..2*phase-1 over 0.3 s, so they make several requests.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.pace(ctx, 2*phase, 10*phase); err != nil {
				t.Fatal(err)
			}
			settled := func(n int) bool {
				for seq := range n {
					// A line is settled when it arrived, or (permanent
					// errors only) when its request was rejected.
					if delivered.Count(seq) == 0 && (!tt.permanent || rejected.Count(seq) == 0) {
						return false
					}
				}
				return true
			}
			if !waitUntil(30*time.Second, func() bool { return settled(2 * phase) }) {
				t.Fatalf("lines neither delivered nor rejected 30 s after writing: %v", delivered.Report(2*phase))
			}
			if tt.permanent {
				// More lines after the failure; and long enough for two retries
				// at the longest retry interval, had the agent retried.
				if err := s.write(phase); err != nil {
					t.Fatal(err)
				}
				if !waitUntil(30*time.Second, func() bool { return settled(3 * phase) }) {
					t.Fatalf("lines after the rejected request did not arrive: %v", delivered.Report(3*phase))
				}
				mu.Lock()
				quiet := time.Until(lastReject.Add(2 * maxRetryInterval))
				mu.Unlock()
				time.Sleep(quiet)
			}

			// A restart on the same state: what was rejected permanently is
			// done and is not read again; the marker lines after it arrive.
			p.stop(10 * time.Second)
			p = e.start()
			if err := s.write(100); err != nil {
				t.Fatal(err)
			}
			total := s.written()
			if !waitUntil(30*time.Second, func() bool { return settled(total) }) {
				t.Errorf("marker lines after the restart did not arrive: %v", delivered.Report(total))
			}
			p.stop(10 * time.Second)

			rep := delivered.Report(total)
			rej := rejected.Report(total)
			st := e.sink.Stats()
			dropped, dropLogs := droppedInLog(t, e)
			summary(t, "errors-"+tt.name, "%v rejected_requests=%d rejected_records=%d rejected_distinct=%d agent_dropped=%d",
				rep, st.RejectedRequests, st.RejectedRecords, rej.Distinct, dropped)

			for seq := poisonLo; seq < poisonHi; seq++ {
				if rejected.Count(seq) == 0 {
					t.Errorf("poison line %d was never rejected", seq)
				}
			}
			if rep.Duplicates != 0 || rep.Unexpected != 0 {
				t.Errorf("delivered lines: want no duplicates: %v", rep)
			}
			both := 0
			for seq := range total {
				d, r := delivered.Count(seq), rejected.Count(seq)
				switch {
				case d == 0 && r == 0:
					t.Errorf("line %d was neither delivered nor rejected", seq)
				case tt.permanent && d > 0 && r > 0:
					both++
				case tt.permanent && r > 1:
					t.Errorf("line %d was rejected permanently %d times: a permanent error was retried", seq, r)
				}
			}
			if both > 0 {
				t.Errorf("%d lines were delivered after a permanent rejection", both)
			}
			if tt.permanent {
				if got, want := rep.Missing, rej.Distinct; got != want {
					t.Errorf("missing = %d, want the %d permanently rejected lines", got, want)
				}
				if dropLogs == 0 || dropped != st.RejectedRecords {
					t.Errorf("agent log: %d drops of %d records, want the %d records the receiver rejected",
						dropLogs, dropped, st.RejectedRecords)
				}
				for seq := 2 * phase; seq < total; seq++ {
					if delivered.Count(seq) == 0 {
						t.Errorf("line %d, written after the rejection, did not arrive", seq)
						break
					}
				}
				return
			}
			if rep.Missing != 0 {
				t.Errorf("retryable rejections lost lines: %v", rep)
			}
			if got, want := st.RejectedRequests, retryableFailures; got != want {
				t.Errorf("rejected requests = %d, want %d (then the retry succeeds)", got, want)
			}
		})
	}
}

// holdsSeq reports whether ld holds a line whose sequence number is in [lo, hi).
func holdsSeq(ld plog.Logs, lo, hi int) bool {
	found := false
	forEachBody(ld, func(b string) {
		if seq, ok := otlpsink.ParseSeq(b); ok && seq >= lo && seq < hi {
			found = true
		}
	})
	return found
}

func forEachBody(ld plog.Logs, f func(string)) {
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				f(lrs.At(k).Body().AsString())
			}
		}
	}
}

// droppedInLog sums the records of the agent's "dropping request: ..." log
// entries.
func droppedInLog(t *testing.T, e *env) (records, entries int) {
	t.Helper()
	data, err := os.ReadFile(e.agentLog)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var entry struct {
			Msg     string `json:"msg"`
			Records int    `json:"records"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil || !strings.HasPrefix(entry.Msg, "dropping request") {
			continue
		}
		records += entry.Records
		entries++
	}
	return records, entries
}
