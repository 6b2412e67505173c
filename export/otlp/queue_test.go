package otlp

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// seqs returns the "seq" attribute of every record in reqs.
func seqs(reqs []*collogspb.ExportLogsServiceRequest) []int64 {
	var out []int64
	for _, req := range reqs {
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					for _, kv := range lr.Attributes {
						if kv.Key == "seq" {
							out = append(out, kv.Value.GetIntValue())
						}
					}
				}
			}
		}
	}
	return out
}

// checkSequence checks the sequence numbers received of total records
// sent through a queue of stats st: none missing, duplicates bounded by
// what the retries can cause (maxRecords per retry).
func checkSequence(t *testing.T, total int, received []int64, st export.Stats, maxRecords int) {
	t.Helper()
	count := make([]int, total)
	for _, s := range received {
		count[s]++
	}
	var missing, dups int
	for _, n := range count {
		if n == 0 {
			missing++
		}
		dups += max(n-1, 0)
	}
	t.Logf("%d records: %d missing, %d duplicated; %d requests, %d retries", total, missing, dups, st.SentRequests, st.Retries)
	if missing != 0 {
		t.Errorf("%d of %d records missing", missing, total)
	}
	if dups > int(st.Retries)*maxRecords {
		t.Errorf("%d duplicates, more than %d retries can explain", dups, st.Retries)
	}
}

// runSequence pushes total sequence-numbered records through a queue in
// front of c from several goroutines, then checks what the receiver got:
// none missing, duplicates counted and bounded by what retries can cause,
// and every batch acknowledged exactly once.
func runSequence(t *testing.T, c export.Client, received func() []int64) {
	t.Helper()
	const producers, batches, perBatch = 4, 50, 10
	const total = producers * batches * perBatch
	o := export.DefaultQueueOptions()
	o.Batch.MaxRecords = 64
	o.Batch.Timeout = 5 * time.Millisecond
	o.Queue.InFlight = 3
	o.Retry = export.RetryOptions{InitialInterval: 2 * time.Millisecond, MaxInterval: 20 * time.Millisecond, Multiplier: 2}
	q := export.NewQueue("otlp", c, o, nil)
	q.Start()
	res := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("seq")}}}
	acked := make([]atomic.Int32, producers*batches)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			var pool event.Pool
			for i := range batches {
				id := p*batches + i
				b := pool.Get()
				b.Resource = res
				for k := range perBatch {
					r := b.Next()
					r.Body = event.String(b.CopyString("line"))
					r.Attrs = append(r.Attrs, event.KeyValue{Key: "seq", Value: event.Int(int64(id*perBatch + k))})
				}
				b.SetAck(func() { acked[id].Add(1) })
				if err := q.Enqueue(t.Context(), b); err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := q.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := q.Stats()
	checkSequence(t, total, received(), st, o.Batch.MaxRecords)
	if st.Retries == 0 {
		t.Error("no retries: the receiver was meant to fail some requests")
	}
	for id := range acked {
		if n := acked[id].Load(); n != 1 {
			t.Fatalf("batch %d acknowledged %d times, want 1", id, n)
		}
	}
}

func TestQueueThroughGRPCLosesNothing(t *testing.T) {
	s := &logsServer{}
	var calls atomic.Int64
	s.reply = func(*collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
		switch calls.Add(1) % 4 {
		case 1:
			return nil, status.Error(codes.Unavailable, "restarting")
		case 2:
			return nil, statusWithRetry(codes.ResourceExhausted, 5*time.Millisecond)
		}
		return &collogspb.ExportLogsServiceResponse{}, nil
	}
	// The receiver keeps failed requests too; count only the accepted ones.
	var mu sync.Mutex
	var accepted []*collogspb.ExportLogsServiceRequest
	reply := s.reply
	s.reply = func(req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
		resp, err := reply(req)
		if err == nil {
			mu.Lock()
			accepted = append(accepted, req)
			mu.Unlock()
		}
		return resp, err
	}
	addr := startGRPC(t, s)
	o := DefaultOptions()
	o.Endpoint = "http://" + addr
	c, err := NewGRPC(resolvedGRPC(t, o), nil)
	if err != nil {
		t.Fatal(err)
	}
	runSequence(t, c, func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return seqs(accepted)
	})
}

func TestQueueThroughHTTPLosesNothing(t *testing.T) {
	var calls atomic.Int64
	h := &httpReceiver{}
	var mu sync.Mutex
	var accepted []*collogspb.ExportLogsServiceRequest
	h.reply = func(w http.ResponseWriter, req *collogspb.ExportLogsServiceRequest) {
		switch calls.Add(1) % 4 {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case 2:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		mu.Lock()
		accepted = append(accepted, req)
		mu.Unlock()
		writeProto(w, http.StatusOK, &collogspb.ExportLogsServiceResponse{})
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	o := DefaultOptions()
	o.Endpoint = srv.URL
	c, err := NewHTTP(resolvedHTTP(t, o), nil)
	if err != nil {
		t.Fatal(err)
	}
	runSequence(t, c, func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return seqs(accepted)
	})
}
