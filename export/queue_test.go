package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClient is a hand-written Client that records what it accepted. The
// real OTLP clients are in export/otlp and are tested against real servers.
type fakeClient struct {
	// fail decides the result of attempt n (1-based) sending seqs; nil succeeds.
	fail func(n int, seqs []int64) error
	// gate, when set, holds every Send until it receives a value or ctx ends.
	gate chan struct{}

	mu          sync.Mutex
	accepted    [][]int64 // sequence numbers of each accepted request
	attempts    []time.Time
	inFlight    int
	maxInFlight int
	closed      bool
}

func (c *fakeClient) Send(ctx context.Context, batches []*event.Batch) error {
	return c.send(ctx, bodies(batches))
}

func bodies(batches []*event.Batch) []int64 {
	var seqs []int64
	for _, b := range batches {
		for i := range b.Records {
			seqs = append(seqs, b.Records[i].Body.AsInt())
		}
	}
	return seqs
}

func (c *fakeClient) send(ctx context.Context, seqs []int64) error {
	c.mu.Lock()
	c.attempts = append(c.attempts, time.Now())
	n := len(c.attempts)
	c.inFlight++
	c.maxInFlight = max(c.maxInFlight, c.inFlight)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var err error
	if c.fail != nil {
		err = c.fail(n, seqs)
	}
	var partial *PartialError
	if err == nil || errors.As(err, &partial) {
		c.mu.Lock()
		c.accepted = append(c.accepted, seqs)
		c.mu.Unlock()
	}
	return err
}

// encodingClient is a fakeClient that is also an Encoder: a request keeps
// the sequence numbers it encoded, and every attempt sends those.
type encodingClient struct {
	*fakeClient
	encodes, releases atomic.Int64
}

func (c *encodingClient) Encode(batches []*event.Batch) (Encoded, error) {
	c.encodes.Add(1)
	return &fakeEncoded{c: c, seqs: bodies(batches)}, nil
}

type fakeEncoded struct {
	c        *encodingClient
	seqs     []int64
	released bool
}

func (e *fakeEncoded) Send(ctx context.Context) error {
	if e.released {
		panic("Send after Release")
	}
	return e.c.send(ctx, e.seqs)
}

func (e *fakeEncoded) Release() {
	if e.released {
		panic("Release called twice")
	}
	e.released = true
	e.c.releases.Add(1)
}

// failingOnce is a fakeClient whose attempts wait for gate and whose first
// attempt fails with a retryable error.
func failingOnce(gate chan struct{}) *fakeClient {
	return &fakeClient{gate: gate, fail: func(n int, _ []int64) error {
		if n == 1 {
			return errors.New("unavailable")
		}
		return nil
	}}
}

// partsClient is an encodingClient that is also a PartEncoder: a part
// keeps the sequence numbers of its batch, and a request those of its parts
// and batches in order.
type partsClient struct {
	*encodingClient
	parts, partRequests atomic.Int64
}

type fakePart []int64

func (c *partsClient) EncodePart(b *event.Batch) Part {
	c.parts.Add(1)
	return fakePart(bodies([]*event.Batch{b}))
}

func (c *partsClient) EncodeParts(batches []*event.Batch, parts []Part) (Encoded, error) {
	c.partRequests.Add(1)
	c.encodes.Add(1)
	var seqs []int64
	for i, b := range batches {
		if parts[i] != nil {
			if b.Records != nil {
				panic("a batch encoded ahead still holds its records")
			}
			seqs = append(seqs, parts[i].(fakePart)...)
			continue
		}
		seqs = append(seqs, bodies([]*event.Batch{b})...)
	}
	return &fakeEncoded{c: c.encodingClient, seqs: seqs}, nil
}

func (c *fakeClient) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fakeClient) requestSizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sizes []int
	for _, r := range c.accepted {
		sizes = append(sizes, len(r))
	}
	return sizes
}

// acks counts acknowledgements per sequence number of the first record of
// each batch, so a test can tell which batches were released and how often.
type acks struct {
	mu sync.Mutex
	n  map[int64]int
}

func (a *acks) count(seq int64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[seq]
}

func (a *acks) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := 0
	for _, n := range a.n {
		t += n
	}
	return t
}

// batch returns a batch of n records numbered first, first+1, ... whose
// acknowledgement is counted in a under first.
func (a *acks) batch(first int64, n int, bodyBytes int) *event.Batch {
	b := event.NewBatch()
	for i := range n {
		r := b.Next()
		r.Body = event.Int(first + int64(i))
		if bodyBytes > 0 {
			r.Body = event.Value{Kind: event.KindInt, Num: uint64(first + int64(i)), Str: string(make([]byte, bodyBytes))}
		}
	}
	b.SetAck(func() {
		a.mu.Lock()
		if a.n == nil {
			a.n = map[int64]int{}
		}
		a.n[first]++
		a.mu.Unlock()
	})
	return b
}

func testOptions() QueueOptions {
	o := DefaultQueueOptions()
	o.Batch.Timeout = time.Hour
	return o
}

func TestQueueGroupsBatchesIntoRequests(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(*QueueOptions)
		batches []int // records per batch
		bytes   int   // body bytes per record
		before  []int // request sizes sent before Shutdown
		after   []int // request sizes once Shutdown flushed
	}{
		{
			name:    "by count",
			opts:    func(o *QueueOptions) { o.Batch.MaxRecords = 10 },
			batches: []int{4, 4, 4, 4, 4},
			before:  []int{8, 8},
			after:   []int{8, 8, 4},
		},
		{
			name:    "exact fill flushes at once",
			opts:    func(o *QueueOptions) { o.Batch.MaxRecords = 6 },
			batches: []int{3, 3, 6, 1},
			before:  []int{6, 6},
			after:   []int{6, 6, 1},
		},
		{
			name:    "a batch over the limit goes alone, unsplit",
			opts:    func(o *QueueOptions) { o.Batch.MaxRecords = 5 },
			batches: []int{2, 12, 1},
			before:  []int{2, 12},
			after:   []int{2, 12, 1},
		},
		{
			name:    "by bytes",
			opts:    func(o *QueueOptions) { o.Batch.MaxBytes = 1000 },
			batches: []int{2, 2, 2, 2},
			bytes:   200,
			before:  []int{4},
			after:   []int{4, 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOptions()
				o.Queue.InFlight = 1
				tt.opts(&o)
				c := &fakeClient{}
				q := NewQueue("test", c, o, nil)
				q.Start()
				var a acks
				seq := int64(0)
				for _, n := range tt.batches {
					if err := q.Enqueue(t.Context(), a.batch(seq, n, tt.bytes)); err != nil {
						t.Fatalf("Enqueue: %v", err)
					}
					seq += int64(n)
				}
				synctest.Wait()
				if got := c.requestSizes(); !slices.Equal(got, tt.before) {
					t.Errorf("requests before Shutdown = %v, want %v", got, tt.before)
				}
				if err := q.Shutdown(t.Context()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				if got := c.requestSizes(); !slices.Equal(got, tt.after) {
					t.Errorf("requests after Shutdown = %v, want %v", got, tt.after)
				}
				if got, want := a.total(), len(tt.batches); got != want {
					t.Errorf("acknowledged batches = %d, want %d", got, want)
				}
			})
		})
	}
}

func TestQueueFlushesAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := DefaultQueueOptions()
		o.Batch.Timeout = 200 * time.Millisecond
		c := &fakeClient{}
		q := NewQueue("test", c, o, nil)
		q.Start()
		defer q.Close()
		var a acks
		start := time.Now()
		if err := q.Enqueue(t.Context(), a.batch(0, 3, 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		// A second batch does not restart the timer of the request.
		if err := q.Enqueue(t.Context(), a.batch(3, 2, 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(49 * time.Millisecond)
		synctest.Wait()
		if got := c.requestSizes(); len(got) != 0 {
			t.Fatalf("sent %v after %v, before the timeout", got, time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if got, want := c.requestSizes(), []int{5}; !slices.Equal(got, want) {
			t.Errorf("requests after timeout = %v, want %v", got, want)
		}
		if got, want := a.total(), 2; got != want {
			t.Errorf("acknowledged = %d, want %d", got, want)
		}
	})
}

// startGated starts a queue whose client holds every request until the
// test lets it go through c.gate; the queue is closed when the test ends.
func startGated(t *testing.T, o QueueOptions) (*Queue, *fakeClient) {
	c := &fakeClient{gate: make(chan struct{})}
	q := NewQueue("test", c, o, nil)
	q.Start()
	t.Cleanup(func() { q.Close() })
	return q, c
}

// wantRequests checks the sizes of the requests c accepted so far.
func wantRequests(t *testing.T, c *fakeClient, when string, want ...int) {
	t.Helper()
	if got := c.requestSizes(); !slices.Equal(got, want) {
		t.Errorf("requests %s = %v, want %v", when, got, want)
	}
}

func TestQueueFlushSendsOpenRequestAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := DefaultQueueOptions()
		o.Batch.Timeout = time.Hour
		c := &fakeClient{}
		q := NewQueue("test", c, o, nil)
		q.Start()
		defer q.Close()
		var a acks
		q.Flush() // nothing open: nothing to do
		for i := range 3 {
			if err := q.Enqueue(t.Context(), a.batch(int64(2*i), 2, 0)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		wantRequests(t, c, "before Flush")
		q.Flush()
		synctest.Wait()
		wantRequests(t, c, "after Flush", 6)
		// The next request is grouped again, up to its own timeout.
		if err := q.Enqueue(t.Context(), a.batch(6, 1, 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour - time.Millisecond)
		synctest.Wait()
		wantRequests(t, c, "before the next timeout", 6)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		wantRequests(t, c, "after the next timeout", 6, 1)
		if got, want := q.Stats().Flushes, int64(1); got != want {
			t.Errorf("Flushes = %d, want %d", got, want)
		}
		if got, want := a.total(), 4; got != want {
			t.Errorf("acknowledged = %d, want %d", got, want)
		}
	})
}

func TestQueueFlushWithBusySendersWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := DefaultQueueOptions()
		o.Batch.Timeout = time.Second
		o.Batch.MaxRecords = 2
		o.Queue.InFlight = 1
		q, c := startGated(t, o)
		var a acks
		for i := range 3 { // a full request, held by the only sender, and one open
			if err := q.Enqueue(t.Context(), a.batch(int64(i), 1, 0)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		q.Flush() // no sender free: the open request stays open
		synctest.Wait()
		if got, want := q.Stats().Flushes, int64(0); got != want {
			t.Errorf("Flushes = %d, want %d", got, want)
		}
		c.gate <- struct{}{}
		time.Sleep(time.Second)
		synctest.Wait()
		c.gate <- struct{}{}
		synctest.Wait()
		wantRequests(t, c, "", 2, 1)
	})
}

// TestQueueBusySendersBoundWhatWaits: while every sender is busy and a
// full request waits for one, new batches wait in the input (queue.size of
// them) and Enqueue blocks after that: no new request is opened meanwhile.
func TestQueueBusySendersBoundWhatWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := DefaultQueueOptions()
		o.Batch.MaxRecords, o.Queue.InFlight, o.Queue.Size = 2, 1, 1
		q, c := startGated(t, o)
		var a acks
		for i := range 5 { // a request being sent, a full one waiting, one batch in the input
			if err := q.Enqueue(t.Context(), a.batch(int64(i), 1, 0)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := q.Enqueue(ctx, a.batch(5, 1, 0)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Enqueue with every sender busy and the input full = %v, want %v", err, context.DeadlineExceeded)
		}
		for range 3 {
			c.gate <- struct{}{}
			time.Sleep(o.Batch.Timeout)
			synctest.Wait()
		}
		wantRequests(t, c, "after the senders were freed", 2, 2, 1)
	})
}

func TestQueueRetriesWithBackoffUntilSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords = 1
		o.Retry = RetryOptions{InitialInterval: time.Second, MaxInterval: 4 * time.Second, Multiplier: 2}
		const failures = 5
		c := &fakeClient{fail: func(n int, _ []int64) error {
			if n <= failures {
				return errors.New("connection refused")
			}
			return nil
		}}
		q := NewQueue("test", c, o, nil)
		q.Start()
		var a acks
		if err := q.Enqueue(t.Context(), a.batch(0, 1, 0)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := a.count(0); got != 0 {
			t.Fatalf("acknowledged %d times while the send was failing", got)
		}
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := a.count(0); got != 1 {
			t.Errorf("acknowledged %d times, want 1", got)
		}
		if got := len(c.attempts); got != failures+1 {
			t.Fatalf("attempts = %d, want %d", got, failures+1)
		}
		// Intervals 1s, 2s, 4s, 4s (capped), 4s, each jittered to [d/2, 3d/2].
		base := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
		for i, d := range base {
			gap := c.attempts[i+1].Sub(c.attempts[i])
			if gap < d/2 || gap > d*3/2 {
				t.Errorf("delay before attempt %d = %v, want within [%v, %v]", i+2, gap, d/2, d*3/2)
			}
		}
		st := q.Stats()
		if st.Retries != failures || st.SentRecords != 1 || st.SentRequests != 1 || st.DroppedRecords != 0 {
			t.Errorf("stats = %+v, want 5 retries, 1 record in 1 request, none dropped", st)
		}
		if st.LastSuccess.IsZero() || st.LastError != "connection refused" {
			t.Errorf("stats last success %v, last error %q", st.LastSuccess, st.LastError)
		}
	})
}

func TestQueueHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords = 1
		c := &fakeClient{fail: func(n int, _ []int64) error {
			if n == 1 {
				return RetryAfter(errors.New("throttled"), 7*time.Second)
			}
			return nil
		}}
		q := NewQueue("test", c, o, nil)
		q.Start()
		var a acks
		if err := q.Enqueue(t.Context(), a.batch(0, 1, 0)); err != nil {
			t.Fatal(err)
		}
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, want := c.attempts[1].Sub(c.attempts[0]), 7*time.Second; got != want {
			t.Errorf("delay = %v, want %v", got, want)
		}
	})
}

func TestQueueSettlesFailedRequests(t *testing.T) {
	tests := []struct {
		name                        string
		err                         error
		wantSent, wantDrop, wantRej int64
	}{
		{"permanent", Permanent(errors.New("400 bad request")), 0, 4, 0},
		{"wrapped permanent", fmt.Errorf("send: %w", Permanent(errors.New("invalid argument"))), 0, 4, 0},
		{"partial", &PartialError{Rejected: 3, Message: "timestamp too old"}, 1, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOptions()
				o.Batch.MaxRecords = 4
				c := &fakeClient{fail: func(int, []int64) error { return tt.err }}
				q := NewQueue("test", c, o, nil)
				q.Start()
				var a acks
				for _, first := range []int64{0, 2} {
					if err := q.Enqueue(t.Context(), a.batch(first, 2, 0)); err != nil {
						t.Fatal(err)
					}
				}
				if err := q.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
				if a.count(0) != 1 || a.count(2) != 1 {
					t.Errorf("acknowledgements = %v, want each batch once", a.n)
				}
				if got := len(c.attempts); got != 1 {
					t.Errorf("attempts = %d, want 1 (no retry)", got)
				}
				st := q.Stats()
				got := [3]int64{st.SentRecords, st.DroppedRecords, st.RejectedRecords}
				want := [3]int64{tt.wantSent, tt.wantDrop, tt.wantRej}
				if got != want {
					t.Errorf("sent, dropped, rejected = %v, want %v", got, want)
				}
			})
		})
	}
}

func TestQueueBoundsRequestsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords = 1
		o.Queue.InFlight = 3
		o.Queue.Size = 100
		c := &fakeClient{gate: make(chan struct{})}
		q := NewQueue("test", c, o, nil)
		q.Start()
		var a acks
		for i := range 20 {
			if err := q.Enqueue(t.Context(), a.batch(int64(i), 1, 0)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := q.Stats().InFlight; got != 3 {
			t.Errorf("Stats().InFlight = %d, want 3", got)
		}
		for range 20 {
			c.gate <- struct{}{}
		}
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if c.maxInFlight != 3 {
			t.Errorf("most concurrent sends = %d, want 3", c.maxInFlight)
		}
		if got := a.total(); got != 20 {
			t.Errorf("acknowledged = %d, want 20", got)
		}
	})
}

func TestQueueEnqueueBlocksWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords = 1
		o.Queue.InFlight = 1
		o.Queue.Size = 2
		c := &fakeClient{gate: make(chan struct{})}
		q := NewQueue("test", c, o, nil)
		q.Start()
		var a acks
		// One request in flight, one held by the grouper, two buffered.
		for i := range 4 {
			if err := q.Enqueue(t.Context(), a.batch(int64(i), 1, 0)); err != nil {
				t.Fatalf("Enqueue %d: %v", i, err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		blocked := a.batch(4, 1, 0)
		if err := q.Enqueue(ctx, blocked); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Enqueue on a full queue = %v, want %v", err, context.DeadlineExceeded)
		}
		if got := q.Stats().Queued; got != 3 {
			t.Errorf("Stats().Queued = %d, want 3", got)
		}
		// The caller still owns the refused batch; the queue never released it.
		if got := a.count(4); got != 0 {
			t.Errorf("refused batch acknowledged %d times", got)
		}
		// Unblocking the destination makes room again.
		done := make(chan error)
		go func() { done <- q.Enqueue(t.Context(), blocked) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Enqueue returned %v while the queue was full", err)
		default:
		}
		c.gate <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(c.gate)
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := a.total(); got != 5 {
			t.Errorf("acknowledged = %d, want 5", got)
		}
	})
}

func TestQueueShutdownDeadlineAbandonsWithoutAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords = 2
		c := &fakeClient{fail: func(int, []int64) error { return errors.New("unavailable") }}
		q := NewQueue("test", c, o, nil)
		q.Start()
		var a acks
		for i := range 5 {
			if err := q.Enqueue(t.Context(), a.batch(int64(i), 1, 0)); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := q.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
		}
		if got := a.total(); got != 0 {
			t.Errorf("acknowledged %d batches that were never sent", got)
		}
		st := q.Stats()
		if st.AbandonedRecords != 5 || st.SentRecords != 0 || st.Queued != 0 || st.InFlight != 0 {
			t.Errorf("stats = %+v, want 5 abandoned, nothing sent, queued or in flight", st)
		}
		if err := q.Enqueue(t.Context(), a.batch(9, 1, 0)); !errors.Is(err, ErrClosed) {
			t.Errorf("Enqueue after Shutdown = %v, want %v", err, ErrClosed)
		}
		if err := q.Shutdown(t.Context()); err != nil {
			t.Errorf("second Shutdown = %v", err)
		}
		if err := q.Close(); err != nil || !c.closed {
			t.Errorf("Close = %v, client closed %v", err, c.closed)
		}
	})
}

func TestQueueCloseAbandonsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &fakeClient{gate: make(chan struct{})}
		q := NewQueue("test", c, testOptions(), nil)
		q.Start()
		var a acks
		if err := q.Enqueue(t.Context(), a.batch(0, 3, 0)); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if a.total() != 0 || !c.closed {
			t.Errorf("after Close: %d acknowledged, client closed %v; want 0, true", a.total(), c.closed)
		}
	})
}

func TestQueueAcknowledgesEmptyBatchesWithoutSending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &fakeClient{}
		q := NewQueue("test", c, testOptions(), nil)
		// Not started: an empty batch needs nothing from the queue's goroutines.
		var a acks
		tick := a.batch(0, 0, 0)
		if err := q.Enqueue(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		if got := a.count(0); got != 1 {
			t.Errorf("empty batch acknowledged %d times, want 1", got)
		}
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := len(c.attempts); got != 0 {
			t.Errorf("sent %d requests, want none", got)
		}
		if got := q.Stats().EmptyBatches; got != 1 {
			t.Errorf("EmptyBatches = %d, want 1", got)
		}
	})
}

// TestQueueLosesNothing enqueues sequence-numbered records from several
// goroutines to a destination that fails often, and checks that every record
// arrived, that duplicates stay within what retries of accepted requests
// could cause (none here: the fake fails before accepting), and that every
// batch was acknowledged exactly once.
func TestQueueLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := DefaultQueueOptions()
		o.Batch.MaxRecords = 50
		o.Queue.InFlight = 3
		o.Queue.Size = 8
		o.Retry.InitialInterval = 10 * time.Millisecond
		o.Retry.MaxInterval = 100 * time.Millisecond
		var mu sync.Mutex
		rng := rand.New(rand.NewPCG(1, 2))
		c := &fakeClient{fail: func(int, []int64) error {
			mu.Lock()
			defer mu.Unlock()
			switch rng.IntN(10) {
			case 0, 1, 2:
				return errors.New("unavailable")
			case 3:
				return RetryAfter(errors.New("throttled"), 50*time.Millisecond)
			}
			return nil
		}}
		q := NewQueue("test", c, o, nil)
		q.Start()
		const producers, batches, perBatch = 4, 100, 7
		var a acks
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range batches {
					first := int64((p*batches + i) * perBatch)
					if err := q.Enqueue(t.Context(), a.batch(first, perBatch, 0)); err != nil {
						t.Errorf("Enqueue: %v", err)
						return
					}
					time.Sleep(time.Duration(i%3) * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		const total = producers * batches * perBatch
		seen := make([]int, total)
		for _, req := range c.accepted {
			for _, s := range req {
				seen[s]++
			}
		}
		var missing, dups int
		for _, n := range seen {
			if n == 0 {
				missing++
			}
			dups += max(n-1, 0)
		}
		if missing != 0 || dups != 0 {
			t.Errorf("of %d records: %d missing, %d duplicated; want none", total, missing, dups)
		}
		for p := range producers {
			for i := range batches {
				first := int64((p*batches + i) * perBatch)
				if n := a.count(first); n != 1 {
					t.Fatalf("batch %d acknowledged %d times, want 1", first, n)
				}
			}
		}
		st := q.Stats()
		if st.SentRecords != total || st.Retries == 0 {
			t.Errorf("stats = %+v; want %d sent and some retries", st, total)
		}
		t.Logf("%d records in %d requests, %d retries", st.SentRecords, st.SentRequests, st.Retries)
	})
}

// TestQueueDetachesEncodedRequests sends through an Encoder: a request is
// encoded once whatever its retries, its batches give up their records as
// soon as it is encoded (by the grouper while every sender is busy, else by
// the sender) and are acknowledged once it succeeded.
func TestQueueDetachesEncodedRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords, o.Queue.InFlight = 2, 1
		o.Retry = RetryOptions{InitialInterval: time.Second, MaxInterval: time.Second, Multiplier: 1}
		gate := make(chan struct{})
		c := &encodingClient{fakeClient: failingOnce(gate)}
		q := NewQueue("test", c, o, nil)
		q.Start()
		defer q.Close()
		var a acks
		var batches []*event.Batch
		for i := range 4 { // two requests of two batches: one sent, one waiting for the sender
			b := a.batch(int64(i), 1, 0)
			batches = append(batches, b)
			if err := q.Enqueue(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		for i, b := range batches {
			if b.Records != nil {
				t.Errorf("batch %d still holds its records with its request encoded", i)
			}
		}
		if n := c.encodes.Load(); n != 2 {
			t.Errorf("%d requests encoded before any attempt ended, want 2 (the one in flight, the one waiting)", n)
		}
		gate <- struct{}{} // the first attempt fails and is retried a second later
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if a.total() != 0 {
			t.Errorf("%d batches acknowledged before any request succeeded", a.total())
		}
		gate <- struct{}{}
		synctest.Wait()
		gate <- struct{}{}
		synctest.Wait()
		wantRequests(t, c.fakeClient, "after the retry", 2, 2)
		if a.total() != 4 || c.encodes.Load() != 2 || c.releases.Load() != 2 {
			t.Errorf("%d acknowledgements, %d encodings, %d releases; want 4, 2 and 2", a.total(), c.encodes.Load(), c.releases.Load())
		}
		if st := q.Stats(); st.Retries != 1 || st.SentRecords != 4 {
			t.Errorf("stats = %+v, want 1 retry and 4 records sent", st)
		}
	})
}

// TestQueueEncodesLargeBatchesAhead sends through a PartEncoder: a batch of
// PartRecords records or more is encoded as Enqueue takes it and gives up
// its records at once, even while every sender is busy; a smaller one keeps
// them until its request is encoded. The request holds every record in the
// order of its batches, is encoded from its parts once whatever its
// retries, and its batches are acknowledged once it succeeded.
func TestQueueEncodesLargeBatchesAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords, o.Queue.InFlight = 4*PartRecords, 1
		o.Retry = RetryOptions{InitialInterval: time.Second, MaxInterval: time.Second, Multiplier: 1}
		gate := make(chan struct{})
		c := &partsClient{encodingClient: &encodingClient{fakeClient: failingOnce(gate)}}
		q := NewQueue("test", c, o, nil)
		q.Start()
		defer q.Close()
		var a acks
		// A small request goes first and keeps the only sender busy.
		if err := q.Enqueue(t.Context(), a.batch(0, 1, 0)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		q.Flush()
		synctest.Wait()
		sizes := []int{PartRecords, 2, PartRecords + 1, PartRecords - 1}
		var batches []*event.Batch
		seq := int64(1)
		for _, n := range sizes {
			b := a.batch(seq, n, 0)
			seq += int64(n)
			batches = append(batches, b)
			if err := q.Enqueue(t.Context(), b); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		for i, b := range batches {
			if ahead := sizes[i] >= PartRecords; ahead != (b.Records == nil) {
				t.Errorf("batch of %d records holds its records: %v, want %v", sizes[i], b.Records != nil, !ahead)
			}
		}
		if n := c.parts.Load(); n != 2 {
			t.Errorf("%d batches encoded ahead, want 2", n)
		}
		gate <- struct{}{} // the first request fails, and is retried a second later
		time.Sleep(2 * time.Second)
		synctest.Wait()
		gate <- struct{}{} // its retry
		synctest.Wait()
		q.Flush() // the request of the four batches
		synctest.Wait()
		gate <- struct{}{}
		synctest.Wait()
		if a.total() != 5 {
			t.Errorf("%d batches acknowledged, want 5", a.total())
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		var got []int64
		for _, r := range c.accepted {
			got = append(got, r...)
		}
		want := make([]int64, seq)
		for i := range want {
			want[i] = int64(i)
		}
		if !slices.Equal(got, want) {
			t.Errorf("records sent = %v, want 0..%d in order", got, seq-1)
		}
		if c.partRequests.Load() != 1 || c.releases.Load() != 2 {
			t.Errorf("%d requests encoded from parts, %d released; want 1 and 2", c.partRequests.Load(), c.releases.Load())
		}
	})
}

func TestQueueOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*QueueOptions)
		want []string // keys of the errors
	}{
		{"defaults", func(*QueueOptions) {}, nil},
		{"zeros", func(o *QueueOptions) { *o = QueueOptions{} }, []string{
			"batch.max_records", "batch.max_bytes", "batch.timeout", "queue.size", "queue.in_flight",
			"retry.initial_interval", "retry.multiplier",
		}},
		{"max below initial", func(o *QueueOptions) { o.Retry.MaxInterval = o.Retry.InitialInterval / 2 }, []string{"retry.max_interval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultQueueOptions()
			tt.edit(&o)
			var got []string
			if err := o.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *config.FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("error %v is not a config.FieldError", e)
					}
					got = append(got, fe.Key)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name      string
		err       error
		permanent bool
		delay     time.Duration
		hasDelay  bool
	}{
		{"plain", base, false, 0, false},
		{"permanent", Permanent(base), true, 0, false},
		{"wrapped permanent", fmt.Errorf("send: %w", Permanent(base)), true, 0, false},
		{"retry after", RetryAfter(base, 3*time.Second), false, 3 * time.Second, true},
		{"wrapped retry after", fmt.Errorf("send: %w", RetryAfter(base, time.Second)), false, time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPermanent(tt.err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
			d, ok := RetryDelay(tt.err)
			if d != tt.delay || ok != tt.hasDelay {
				t.Errorf("RetryDelay = %v, %v; want %v, %v", d, ok, tt.delay, tt.hasDelay)
			}
			if !errors.Is(tt.err, base) {
				t.Errorf("%v does not wrap its cause", tt.err)
			}
		})
	}
	if Permanent(nil) != nil || RetryAfter(nil, time.Second) != nil {
		t.Error("marking a nil error must give nil")
	}
}

// logCounter is a slog handler counting records by level and keeping their
// messages.
type logCounter struct {
	mu   sync.Mutex
	msgs map[slog.Level][]string
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msgs == nil {
		h.msgs = map[slog.Level][]string{}
	}
	h.msgs[r.Level] = append(h.msgs[r.Level], r.Message)
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.msgs[l])
}

// TestQueueFailingStateWarnsOncePerChange: a destination refusing every
// attempt for an hour costs one warning per change of reason, not one per
// attempt; Stats says since when it fails (the first failure, not the
// last) and why; the records are held, not dropped, and acknowledged once
// the destination accepts them; the recovery is said once.
func TestQueueFailingStateWarnsOncePerChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOptions()
		o.Batch.MaxRecords = 1
		o.Retry = RetryOptions{InitialInterval: time.Second, MaxInterval: 30 * time.Second, Multiplier: 1.5}
		var mu sync.Mutex
		reason := ReasonAuth
		healthy := false
		c := &fakeClient{fail: func(int, []int64) error {
			mu.Lock()
			defer mu.Unlock()
			if healthy {
				return nil
			}
			return WithReason(errors.New("401 Unauthorized"), reason)
		}}
		logs := &logCounter{}
		q := NewQueue("test", c, o, slog.New(logs))
		q.Start()
		var a acks
		start := time.Now()
		if err := q.Enqueue(t.Context(), a.batch(0, 1, 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		st := q.Stats()
		if !st.FailingSince.Equal(start) || st.FailingReason != ReasonAuth {
			t.Errorf("failing since %v (%q), want since the first attempt %v (auth)", st.FailingSince, st.FailingReason, start)
		}
		if st.DroppedRecords != 0 || a.count(0) != 0 {
			t.Fatalf("dropped %d, acknowledged %d times while failing: want the record held", st.DroppedRecords, a.count(0))
		}
		mu.Lock()
		reason = ReasonServerError
		mu.Unlock()
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if got := q.Stats().FailingReason; got != ReasonServerError {
			t.Errorf("failing reason %q after it changed, want server_error", got)
		}
		c.mu.Lock()
		n := len(c.attempts)
		c.mu.Unlock()
		if n < 100 {
			t.Fatalf("only %d attempts in an hour", n)
		}
		if got := logs.count(slog.LevelWarn); got != 2 {
			t.Errorf("%d warnings for %d failed attempts with 2 reasons, want 2", got, n)
		}
		mu.Lock()
		healthy = true
		mu.Unlock()
		if err := q.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if a.count(0) != 1 {
			t.Errorf("acknowledged %d times once accepted, want 1", a.count(0))
		}
		if st := q.Stats(); !st.FailingSince.IsZero() || st.FailingReason != "" {
			t.Errorf("still failing after a success: %v %q", st.FailingSince, st.FailingReason)
		}
		if got := logs.count(slog.LevelInfo); got != 1 {
			t.Errorf("%d info lines, want 1 saying the destination accepts again", got)
		}
	})
}

// TestQueueGivesUpWhenAskedTo: retry.max_attempts and retry.max_elapsed
// drop a request that keeps failing, counted, and acknowledge it.
func TestQueueGivesUpWhenAskedTo(t *testing.T) {
	tests := []struct {
		name         string
		attempts     int
		elapsed      time.Duration
		wantAttempts int
	}{
		{"max_attempts", 4, 0, 4},
		// Attempts at 0, ~1s, ~2.5s, ~4.75s... (jittered): the first to
		// fail 10s or more after the first is the last.
		{"max_elapsed", 0, 10 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOptions()
				o.Batch.MaxRecords = 3
				o.Retry.MaxAttempts, o.Retry.MaxElapsed = tt.attempts, tt.elapsed
				c := &fakeClient{fail: func(int, []int64) error { return WithReason(errors.New("500"), ReasonServerError) }}
				q := NewQueue("test", c, o, nil)
				q.Start()
				var a acks
				start := time.Now()
				if err := q.Enqueue(t.Context(), a.batch(0, 3, 0)); err != nil {
					t.Fatal(err)
				}
				if err := q.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
				if a.count(0) != 1 {
					t.Errorf("acknowledged %d times, want 1 (given up)", a.count(0))
				}
				st := q.Stats()
				if st.DroppedRecords != 3 || st.GaveUpRecords != 3 || st.SentRecords != 0 {
					t.Errorf("dropped %d, gave up %d, sent %d; want 3, 3, 0", st.DroppedRecords, st.GaveUpRecords, st.SentRecords)
				}
				if tt.wantAttempts > 0 && len(c.attempts) != tt.wantAttempts {
					t.Errorf("attempts = %d, want %d", len(c.attempts), tt.wantAttempts)
				}
				if tt.elapsed > 0 {
					last := c.attempts[len(c.attempts)-1].Sub(start)
					prev := c.attempts[len(c.attempts)-2].Sub(start)
					if last < tt.elapsed || prev >= tt.elapsed {
						t.Errorf("gave up after the attempt at %v (previous at %v), want the first at or after %v", last, prev, tt.elapsed)
					}
				}
			})
		})
	}
}
