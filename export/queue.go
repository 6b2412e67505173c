package export

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
)

// QueueOptions tune how a [Queue] groups batches into requests, how many it
// buffers and sends at once, and how it retries. They are decoded from an
// exporter's YAML; start from [DefaultQueueOptions].
type QueueOptions struct {
	Batch BatchOptions  `yaml:"batch"`
	Queue BufferOptions `yaml:"queue"`
	Retry RetryOptions  `yaml:"retry"`
}

// BatchOptions close a request at whichever limit comes first. A single
// batch larger than a limit is sent alone, never split.
type BatchOptions struct {
	// MaxRecords per request.
	MaxRecords int `yaml:"max_records"`
	// MaxBytes of record bodies per request.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// Timeout after the first batch of a request arrived.
	Timeout time.Duration `yaml:"timeout"`
}

// BufferOptions bound the memory and concurrency of a queue.
type BufferOptions struct {
	// Size is how many batches wait to be grouped; Enqueue blocks beyond it.
	Size int `yaml:"size"`
	// InFlight is how many requests are sent (or retried) at once.
	InFlight int `yaml:"in_flight"`
}

// RetryOptions shape the exponential backoff between attempts of a
// retryable request. By default requests are retried for as long as the
// queue runs: the file holds the records, and giving up would lose them.
// MaxAttempts and MaxElapsed, when set, drop a request (counted) after that
// many attempts or that long since its first: for those who prefer losing
// lines to falling behind.
type RetryOptions struct {
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	Multiplier      float64       `yaml:"multiplier"`
	MaxAttempts     int           `yaml:"max_attempts"`
	MaxElapsed      time.Duration `yaml:"max_elapsed"`
}

// DefaultQueueOptions returns the defaults: requests of up to 1000 records,
// 1MiB or 200ms; 2 batches buffered; 4 requests in flight; retries from 1s
// growing 1.5x up to 30s, each delay jittered by ±50%.
//
// Four requests in flight rather than two: a request in flight holds its
// encoded bytes only (see [Encoder]), and with two the pipeline waited on
// the destination's answers. Against the benchmark's sink on loopback, 1.28
// → 1.61 million plain lines/s and 0.61 → 0.51 CPU s per million (medians
// of 7 alternating runs), for 0.7 MiB more peak RSS (1.9 MiB with parsed
// JSON lines); see docs/benchmarks.md.
//
// Two batches buffered rather than four, since a batch waiting in front of
// an OTLP client holds its encoded bytes (see [PartEncoder]): peak RSS with
// parsed JSON lines 20.4 → 19.8 MiB in 3 alternating runs, and with a gRPC
// write buffer of 128 KiB instead of 256 KiB as well, 20.0 → 19.3 MiB.
func DefaultQueueOptions() QueueOptions {
	return QueueOptions{
		Batch: BatchOptions{MaxRecords: 1000, MaxBytes: 1 << 20, Timeout: 200 * time.Millisecond},
		Queue: BufferOptions{Size: 2, InFlight: 4},
		Retry: RetryOptions{InitialInterval: time.Second, MaxInterval: 30 * time.Second, Multiplier: 1.5},
	}
}

// Validate reports every invalid option as a config.FieldError named by its yaml key.
func (o QueueOptions) Validate() error {
	var errs []error
	positive := func(key string, ok bool) {
		if !ok {
			errs = append(errs, config.Fieldf(key, "must be positive"))
		}
	}
	positive("batch.max_records", o.Batch.MaxRecords > 0)
	positive("batch.max_bytes", o.Batch.MaxBytes > 0)
	positive("batch.timeout", o.Batch.Timeout > 0)
	positive("queue.size", o.Queue.Size > 0)
	positive("queue.in_flight", o.Queue.InFlight > 0)
	positive("retry.initial_interval", o.Retry.InitialInterval > 0)
	if o.Retry.MaxInterval < o.Retry.InitialInterval {
		errs = append(errs, config.Fieldf("retry.max_interval", "must be at least retry.initial_interval (%v)", o.Retry.InitialInterval))
	}
	if o.Retry.Multiplier < 1 {
		errs = append(errs, config.Fieldf("retry.multiplier", "must be at least 1"))
	}
	if o.Retry.MaxAttempts < 0 {
		errs = append(errs, config.Fieldf("retry.max_attempts", "must not be negative (0: retry for as long as it runs)"))
	}
	if o.Retry.MaxElapsed < 0 {
		errs = append(errs, config.Fieldf("retry.max_elapsed", "must not be negative (0: retry for as long as it runs)"))
	}
	return errors.Join(errs...)
}

// Stats is a snapshot of a queue's counters.
type Stats struct {
	// SentRecords and SentRequests were accepted by the destination.
	SentRecords, SentRequests int64
	// DroppedRecords were in requests that failed permanently, or that
	// retry.max_attempts or retry.max_elapsed gave up (GaveUpRecords of them).
	DroppedRecords, GaveUpRecords int64
	// RejectedRecords were rejected by the destination in partially accepted requests.
	RejectedRecords int64
	// Retries counts failed attempts that were retried.
	Retries int64
	// AbandonedRecords were unsent when the queue stopped; they are not acknowledged.
	AbandonedRecords int64
	// EmptyBatches were acknowledged at once without being sent.
	EmptyBatches int64
	// Flushes counts requests handed to a sender by Flush, before their
	// batch timeout.
	Flushes int64
	// Queued is the number of batches waiting for a request, InFlight the
	// number of requests being sent or waiting to be retried.
	Queued, InFlight int
	// LastSuccess is when a request last succeeded; zero if none has.
	LastSuccess time.Time
	// LastError is the last failed attempt's error, and when it happened.
	LastError     string
	LastErrorTime time.Time
	// FailingSince is when the attempts began to fail, zero while the
	// destination accepts requests: the first failure after a success (or
	// after the start). FailingReason is the reason of the last failure
	// (see [Reason]).
	FailingSince  time.Time
	FailingReason string
}

// Queue groups batches into requests by count, bytes and time, sends them
// with a bounded number in flight, retries retryable errors with exponential
// backoff and jitter for as long as it runs, and releases (Done) every batch
// of a request once the request is settled (see the package documentation).
//
// Enqueue is safe for concurrent use by several pipeline goroutines. Stats is
// safe from any goroutine. The queue owns its Client: Close closes it.
type Queue struct {
	name string
	c    Client
	o    QueueOptions
	log  *slog.Logger

	in       chan item
	kick     chan struct{} // capacity 1: the open request is full, send it
	reqs     chan request
	free     chan request  // the emptied slices of settled requests, for reuse
	stopping chan struct{} // closed when Enqueue stops accepting
	done     chan struct{} // closed when every goroutine has returned

	// ctx is the context of sends; cancelled when the queue is abandoned.
	ctx    context.Context
	cancel context.CancelFunc

	startOnce, stopOnce, closeOnce sync.Once
	wg                             sync.WaitGroup

	mu      sync.Mutex // guards closed, senders.Add and the last* fields
	closed  bool
	senders sync.WaitGroup // Enqueue calls past the closed check

	sentRecords, sentRequests, dropped, rejected, gaveUp atomic.Int64
	retries, abandoned, empty, flushes                   atomic.Int64
	queued, inFlight                                     atomic.Int64

	lastSuccess time.Time
	lastErr     string
	lastErrTime time.Time
	// failingSince and failingReason: see Stats. failedAttempts counts the
	// attempts that failed since.
	failingSince   time.Time
	failingReason  string
	failedAttempts int
	obs            Observer

	// gmu guards the request being grouped and its timer, shared by the
	// grouper, Enqueue and Flush.
	gmu sync.Mutex
	// open is the request being grouped while its timeout runs; nil when
	// there is none. Enqueue adds batches that fit to it directly, and opens
	// it when the input is empty.
	open *request
	// timer runs while a request is open; the grouper sends the request when
	// it fires. It is reset and stopped under gmu only, so that a request
	// sent by Flush leaves no expiry behind to wake the grouper for nothing.
	timer *time.Timer
	// handing is set while the grouper waits for a sender to take a
	// request. Enqueue then opens no request: its batches wait in the input,
	// which bounds what a queue whose senders are all busy holds to the
	// request waiting, queue.size batches and nothing more.
	handing bool
	// inInput counts the batches Enqueue is handing over through in that the
	// grouper has not added yet: while there are any, Enqueue adds nothing
	// to open, so that batches keep their order.
	inInput int
}

// Outcome is how one attempt to send a request ended.
type Outcome uint8

// Outcomes of an attempt.
const (
	// Sent: the destination accepted every record.
	Sent Outcome = iota
	// Partial: the destination accepted the request but rejected some records.
	Partial
	// Failed: a permanent error; the records are dropped.
	Failed
	// Retry: a retryable error; the request will be sent again.
	Retry
	// GaveUp: a retryable error after retry.max_attempts or
	// retry.max_elapsed; the records are dropped.
	GaveUp
)

// Observer is told of every attempt to send a request; the agent's metrics
// implement it. It is called from the queue's sending goroutines, once per
// attempt (never per record), and must not block.
type Observer interface {
	// Attempt reports an attempt that took d for a request of records, of
	// which rejected were refused (Partial: the rejected ones; Failed and
	// GaveUp: all). reason is the failure's (see [Reason]), "" for Sent
	// and Partial.
	Attempt(d time.Duration, o Outcome, records, rejected int, reason string)
}

type nopObserver struct{}

func (nopObserver) Attempt(time.Duration, Outcome, int, int, string) {}

// item is a batch handed to Enqueue: with its part when it was encoded
// ahead (and detached), and its size, taken before.
type item struct {
	b       *event.Batch
	part    Part
	records int
	bytes   int
}

type request struct {
	batches []*event.Batch
	// parts[i] is batches[i] encoded ahead by a [PartEncoder], or nil.
	parts   []Part
	records int
	bytes   int
	// encoded is the request encoded by an [Encoder]; its batches are then
	// detached and released with Settle.
	encoded Encoded
}

// encode encodes r if c is an [Encoder] and r is not encoded yet, and
// detaches r's batches that were not: from then on r holds its encoded
// bytes, and its batches only their acknowledgements.
func (r *request) encode(c Client) error {
	enc, ok := c.(Encoder)
	if !ok || r.encoded != nil {
		return nil
	}
	var e Encoded
	var err error
	if slices.ContainsFunc(r.parts, func(p Part) bool { return p != nil }) {
		e, err = c.(PartEncoder).EncodeParts(r.batches, r.parts)
	} else {
		e, err = enc.Encode(r.batches)
	}
	if err != nil {
		return err
	}
	r.encoded = e
	for i, b := range r.batches {
		if r.parts[i] == nil {
			b.Detach()
		}
	}
	clear(r.parts) // the request's now
	return nil
}

// detached reports whether batches[i] no longer holds its records for r.
func (r *request) detached(i int) bool { return r.encoded != nil || r.parts[i] != nil }

// NewQueue returns a queue named name (for logs and stats) sending through c.
// It does no I/O and starts nothing; call Start. o must be valid (see
// [QueueOptions.Validate]); a nil log discards.
func NewQueue(name string, c Client, o QueueOptions, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	return &Queue{
		timer:    timer,
		name:     name,
		c:        c,
		o:        o,
		log:      log.With("exporter", name),
		in:       make(chan item, max(o.Queue.Size, 1)),
		kick:     make(chan struct{}, 1),
		reqs:     make(chan request),
		free:     make(chan request, max(o.Queue.InFlight, 1)+1),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		obs:      nopObserver{},
	}
}

// SetObserver sets who is told of every send attempt. Call it before Start.
func (q *Queue) SetObserver(o Observer) {
	if o != nil {
		q.obs = o
	}
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Start starts the queue's goroutines: one grouping batches into requests and
// in_flight senders. Calling it again does nothing.
func (q *Queue) Start() {
	q.startOnce.Do(func() {
		q.wg.Add(1 + max(q.o.Queue.InFlight, 1))
		go q.group()
		for range max(q.o.Queue.InFlight, 1) {
			go q.work()
		}
		go func() {
			q.wg.Wait()
			close(q.done)
		}()
	})
}

// Enqueue hands b to the queue with its reference: the queue releases it when
// its request is settled. A batch without records is released at once and
// never sent. In front of a [PartEncoder], a batch of [PartRecords] records
// or more is encoded here, on the caller's goroutine, and detached. Enqueue
// blocks while the queue is full (backpressure). If ctx ends first it
// returns ctx.Err(), and after Shutdown or Close it returns [ErrClosed]; in
// both cases the caller still owns b's reference, but after ctx.Err() not
// necessarily its records: a batch encoded ahead was detached (and is
// released with Settle, if at all).
func (q *Queue) Enqueue(ctx context.Context, b *event.Batch) error {
	if len(b.Records) == 0 {
		q.empty.Add(1)
		b.Done()
		return nil
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.senders.Add(1)
	q.mu.Unlock()
	defer q.senders.Done()

	q.queued.Add(1)
	it := item{b: b, records: len(b.Records), bytes: b.Bytes()}
	if pe, ok := q.c.(PartEncoder); ok && it.records >= PartRecords {
		it.part = pe.EncodePart(b)
		b.Detach()
	}
	if q.join(it) {
		return nil
	}
	select {
	case q.in <- it:
		return nil
	case <-ctx.Done():
		q.unjoin()
		return ctx.Err()
	case <-q.stopping:
		q.unjoin()
		return ErrClosed
	}
}

// join adds b to the open request if b fits in it, opening one (and
// starting its timeout) when none is open and nothing waits in the input,
// and wakes the grouper if b fills it. This costs no goroutine switch: a
// source yielding many small batches (a trickle of lines into many files)
// wakes the grouper at most once per request, at its timeout, rather than
// once per batch. Otherwise b is to go through the input, and join counts
// it there.
func (q *Queue) join(it item) bool {
	n, size := it.records, it.bytes
	q.gmu.Lock()
	defer q.gmu.Unlock()
	r := q.open
	if q.inInput > 0 || (r == nil && q.handing) || (r != nil && (r.records+n > q.o.Batch.MaxRecords || r.bytes+size > int(q.o.Batch.MaxBytes))) {
		q.inInput++
		return false
	}
	if r == nil {
		r = q.openLocked()
	}
	r.add(it)
	if q.full(r) {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// openLocked opens a request and starts its timeout; gmu is held.
func (q *Queue) openLocked() *request {
	r := &request{}
	select {
	case f := <-q.free:
		r.batches, r.parts = f.batches, f.parts
	default:
	}
	q.open = r
	q.timer.Reset(q.o.Batch.Timeout)
	return r
}

// closeLocked takes the open request out and stops its timeout; gmu is
// held and a request is open.
func (q *Queue) closeLocked() request {
	r := *q.open
	q.open = nil
	q.timer.Stop()
	return r
}

// Flush sends the request being grouped now instead of at its batch
// timeout, if a sender is free to take it at once and no batch is on its
// way through the input; otherwise it does nothing and the request goes
// when it fills or times out, as usual. A source calls it when it has read
// everything it knows of and is about to wait (see tailer.Tailer.OnIdle):
// nothing more comes from it for a while, so waiting would only delay its
// lines and cost a wake-up of the grouper when the timeout fires. It is safe
// for concurrent use, and does nothing after Shutdown or Close.
func (q *Queue) Flush() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.senders.Add(1) // the input, and so the senders' channel, stays open
	q.mu.Unlock()
	defer q.senders.Done()

	q.gmu.Lock()
	defer q.gmu.Unlock()
	if q.open == nil || q.inInput > 0 {
		return
	}
	select {
	case q.reqs <- *q.open:
		q.queued.Add(-int64(len(q.closeLocked().batches)))
		q.flushes.Add(1)
	default: // every sender is busy: the request may as well grow
	}
}

// unjoin uncounts a batch Enqueue did not hand over after all.
func (q *Queue) unjoin() {
	q.gmu.Lock()
	q.inInput--
	q.gmu.Unlock()
	q.queued.Add(-1)
}

func (q *Queue) full(r *request) bool {
	return r.records >= q.o.Batch.MaxRecords || r.bytes >= int(q.o.Batch.MaxBytes)
}

func (r *request) add(it item) {
	r.batches = append(r.batches, it.b)
	r.parts = append(r.parts, it.part)
	r.records += it.records
	r.bytes += it.bytes
}

// Shutdown stops accepting batches, sends the partial request and waits until
// every request is settled. If ctx ends first it cancels the sends in flight,
// abandons every unsettled batch without releasing it (so checkpoints do not
// advance past it), waits for the queue's goroutines to return and returns
// ctx.Err(). It does not close the Client. Calling it again waits again.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.Start()
	q.stop()
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		q.cancel()
		<-q.done
		return ctx.Err()
	}
}

// Close abandons everything unsent at once (without releasing it), waits for
// the queue's goroutines to return and closes the Client.
func (q *Queue) Close() error {
	q.Start()
	q.stop()
	q.cancel()
	<-q.done
	var err error
	q.closeOnce.Do(func() { err = q.c.Close() })
	return err
}

// stop makes Enqueue refuse new batches and closes the input once every
// Enqueue in progress has returned.
func (q *Queue) stop() {
	q.stopOnce.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.stopping)
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			q.senders.Wait()
			close(q.in)
		}()
	})
}

// Stats returns a snapshot of the queue's counters.
func (q *Queue) Stats() Stats {
	s := Stats{
		SentRecords:      q.sentRecords.Load(),
		SentRequests:     q.sentRequests.Load(),
		DroppedRecords:   q.dropped.Load(),
		RejectedRecords:  q.rejected.Load(),
		GaveUpRecords:    q.gaveUp.Load(),
		Retries:          q.retries.Load(),
		AbandonedRecords: q.abandoned.Load(),
		EmptyBatches:     q.empty.Load(),
		Flushes:          q.flushes.Load(),
		Queued:           int(q.queued.Load()),
		InFlight:         int(q.inFlight.Load()),
	}
	q.mu.Lock()
	s.LastSuccess, s.LastError, s.LastErrorTime = q.lastSuccess, q.lastErr, q.lastErrTime
	s.FailingSince, s.FailingReason = q.failingSince, q.failingReason
	q.mu.Unlock()
	return s
}

// group collects batches from q.in into requests and hands them to the
// senders. It flushes a request when a limit is reached, when the batch
// timeout expires and when the input is closed. While a request is open,
// Enqueue adds the batches that fit to it without waking this goroutine
// (see join).
func (q *Queue) group() {
	defer q.wg.Done()
	defer close(q.reqs)
	for {
		var ready []request // to hand to the senders, in order
		select {
		case it, ok := <-q.in:
			if !ok {
				if r := q.detach(); !q.flush(r) {
					q.abandonAll(r)
				}
				return
			}
			ready = q.take(it)
		case <-q.kick:
			ready = q.detachFull()
		case <-q.timer.C:
			ready = []request{q.detach()}
		case <-q.ctx.Done():
			q.abandonAll(q.detach())
			return
		}
		for i, r := range ready {
			if !q.flush(r) {
				for _, rest := range ready[i:] {
					q.abandon(rest)
				}
				q.abandonAll(q.detach())
				return
			}
		}
	}
}

// take adds it, received from the input, to the open request. It returns
// the requests to send: the open one if it does not fit in it, and its own
// if it fills it. A request opened for it starts its timeout.
func (q *Queue) take(it item) (ready []request) {
	q.gmu.Lock()
	defer q.gmu.Unlock()
	q.inInput--
	r := q.open
	if r != nil && (r.records+it.records > q.o.Batch.MaxRecords || r.bytes+it.bytes > int(q.o.Batch.MaxBytes)) {
		ready = append(ready, *r)
		r = nil
	}
	if r == nil {
		r = q.openLocked()
	}
	r.add(it)
	if q.full(r) {
		ready = append(ready, q.closeLocked())
	}
	return ready
}

// detach takes the open request out (empty if none), closing it to Enqueue.
func (q *Queue) detach() request {
	q.gmu.Lock()
	defer q.gmu.Unlock()
	if q.open == nil {
		return request{}
	}
	return q.closeLocked()
}

// detachFull detaches the open request if it is full.
func (q *Queue) detachFull() []request {
	q.gmu.Lock()
	defer q.gmu.Unlock()
	if q.open == nil || !q.full(q.open) {
		return nil
	}
	return []request{q.closeLocked()}
}

// flush hands r to a sender. It reports false, r unsent, if the queue is
// abandoned first.
func (q *Queue) flush(r request) bool {
	if len(r.batches) == 0 {
		return true
	}
	q.gmu.Lock()
	q.handing = true
	q.gmu.Unlock()
	defer func() {
		q.gmu.Lock()
		q.handing = false
		q.gmu.Unlock()
	}()
	select {
	case q.reqs <- r:
		q.queued.Add(-int64(len(r.batches)))
		return true
	default:
	}
	// Every sender is busy: encode r while it waits for one, so that it
	// holds its encoded bytes rather than its records. A failed encoding
	// is left to the sender, which tries again and counts it.
	_ = r.encode(q.c)
	select {
	case q.reqs <- r:
		q.queued.Add(-int64(len(r.batches)))
		return true
	case <-q.ctx.Done():
		if r.encoded != nil {
			r.encoded.Release()
		}
		return false
	}
}

// abandonAll counts pending and every batch still in the input as unsent,
// without releasing them. The input is closed soon after the queue is
// abandoned, because stop always precedes cancel.
func (q *Queue) abandonAll(pending request) {
	q.abandon(pending)
	for it := range q.in {
		q.abandon(request{batches: []*event.Batch{it.b}, records: it.records})
	}
	q.abandon(q.detach()) // opened by an Enqueue that was under way
}

// abandon counts r as unsent. Its batches are deliberately not released.
func (q *Queue) abandon(r request) {
	if len(r.batches) == 0 {
		return
	}
	q.queued.Add(-int64(len(r.batches)))
	q.abandoned.Add(int64(r.records))
}

func (q *Queue) work() {
	defer q.wg.Done()
	for r := range q.reqs {
		if !q.send(r) {
			break
		}
	}
	// Abandoned: count what the grouper still hands over, without sending.
	for r := range q.reqs {
		q.abandoned.Add(int64(r.records))
	}
}

// send sends r until it is settled and reports true, or until the queue is
// abandoned and reports false, leaving r's batches unreleased.
func (q *Queue) send(r request) bool {
	q.inFlight.Add(1)
	defer q.inFlight.Add(-1)
	interval := q.o.Retry.InitialInterval
	var timer *time.Timer
	defer func() {
		if r.encoded != nil {
			r.encoded.Release()
		}
	}()
	var first time.Time
	for attempt := 1; ; attempt++ {
		began := time.Now()
		if attempt == 1 {
			first = began
		}
		err := q.attempt(&r)
		took := time.Since(began)
		var partial *PartialError
		switch {
		case err == nil:
			q.obs.Attempt(took, Sent, r.records, 0, "")
			q.sentRecords.Add(int64(r.records))
			q.sentRequests.Add(1)
			q.succeeded()
			q.release(r)
			return true
		case errors.As(err, &partial):
			q.obs.Attempt(took, Partial, r.records, int(partial.Rejected), "")
			q.sentRequests.Add(1)
			q.sentRecords.Add(int64(r.records) - partial.Rejected)
			q.rejected.Add(partial.Rejected)
			q.noteError(err)
			q.succeeded()
			q.log.Warn("destination rejected records", "rejected", partial.Rejected, "records", r.records, "message", partial.Message)
			q.release(r)
			return true
		case IsPermanent(err):
			q.obs.Attempt(took, Failed, r.records, r.records, Reason(err))
			q.dropped.Add(int64(r.records))
			q.noteError(err)
			q.log.Error("dropping request: the destination refused it as invalid, sending it again cannot succeed",
				"records", r.records, "batches", len(r.batches), "reason", Reason(err), "err", err)
			q.release(r)
			return true
		}
		q.noteError(err)
		if q.ctx.Err() != nil {
			q.abandoned.Add(int64(r.records))
			return false
		}
		if q.givingUp(attempt, time.Since(first)) {
			q.obs.Attempt(took, GaveUp, r.records, r.records, Reason(err))
			q.dropped.Add(int64(r.records))
			q.gaveUp.Add(int64(r.records))
			q.failed(err)
			q.log.Error("dropping request: retry limit reached (retry.max_attempts / retry.max_elapsed)",
				"records", r.records, "attempts", attempt, "elapsed", time.Since(first).Round(time.Millisecond), "reason", Reason(err), "err", err)
			q.release(r)
			return true
		}
		q.obs.Attempt(took, Retry, r.records, 0, Reason(err))
		q.retries.Add(1)
		delay, ok := RetryDelay(err)
		if !ok {
			delay = jitter(interval)
		}
		interval = min(time.Duration(float64(interval)*q.o.Retry.Multiplier), q.o.Retry.MaxInterval)
		if q.failed(err) {
			q.log.Warn("send failed; the records are held and sent again, reading waits meanwhile",
				"reason", Reason(err), "records", r.records, "delay", delay, "err", err)
		} else {
			q.log.Debug("send failed, will retry", "attempt", attempt, "delay", delay, "records", r.records, "reason", Reason(err), "err", err)
		}
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		select {
		case <-timer.C:
		case <-q.ctx.Done():
			timer.Stop()
			q.abandoned.Add(int64(r.records))
			return false
		}
	}
}

// givingUp reports whether retry.max_attempts or retry.max_elapsed says to
// drop a request after its attempt-th failed attempt, elapsed after its first.
func (q *Queue) givingUp(attempt int, elapsed time.Duration) bool {
	o := q.o.Retry
	return o.MaxAttempts > 0 && attempt >= o.MaxAttempts || o.MaxElapsed > 0 && elapsed >= o.MaxElapsed
}

// failed records a failed attempt in the queue's state. It reports whether
// the state changed (the destination was accepting requests, or failed for
// another reason): the change is worth a warning, each attempt is not.
func (q *Queue) failed(err error) bool {
	reason := Reason(err)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failedAttempts++
	if !q.failingSince.IsZero() && q.failingReason == reason {
		return false
	}
	if q.failingSince.IsZero() {
		q.failingSince = time.Now()
	}
	q.failingReason = reason
	return true
}

// succeeded records an accepted request, and says so once after failures.
func (q *Queue) succeeded() {
	q.mu.Lock()
	since, n := q.failingSince, q.failedAttempts
	q.lastSuccess = time.Now()
	q.failingSince, q.failingReason, q.failedAttempts = time.Time{}, "", 0
	q.mu.Unlock()
	if !since.IsZero() {
		q.log.Info("destination accepts requests again", "failing_for", time.Since(since).Round(time.Millisecond), "failed_attempts", n)
	}
}

// attempt makes one attempt to send r: its encoded form when the client is
// an [Encoder] (encoding r first if the grouper did not), else through Send.
// A failed encoding is a failed attempt.
func (q *Queue) attempt(r *request) error {
	if err := r.encode(q.c); err != nil {
		return err
	}
	if r.encoded != nil {
		return r.encoded.Send(q.ctx)
	}
	return q.c.Send(q.ctx, r.batches)
}

func (q *Queue) noteError(err error) {
	q.mu.Lock()
	q.lastErr, q.lastErrTime = err.Error(), time.Now()
	q.mu.Unlock()
}

// jitter spreads d uniformly over [d/2, 3d/2) so that agents retrying against
// one destination do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)+1))
}

// release releases r's batches and offers its slices for reuse.
func (q *Queue) release(r request) {
	for i, b := range r.batches {
		if r.detached(i) {
			b.Settle()
		} else {
			b.Done()
		}
	}
	clear(r.batches)
	clear(r.parts)
	select {
	case q.free <- request{batches: r.batches[:0], parts: r.parts[:0]}:
	default:
	}
}
