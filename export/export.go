// Package export sends batches to their destinations. A [Client] speaks to one
// destination (an OTLP endpoint, the console); a [Queue] in front of it groups
// batches into requests, bounds how many are in flight, retries what may be
// retried and acknowledges every batch once its request is settled.
//
// Acknowledgement contract: a batch handed to [Queue.Enqueue] is released
// exactly once, after its request succeeded, failed permanently (its records
// counted as dropped) or was partially rejected (the rejected records
// counted). A batch whose request is still being retried when the queue is
// abandoned (Shutdown deadline, Close) is never released, so the checkpoint
// of its file does not advance past it and it is read again on the next
// start. In front of an [Encoder] the queue lets go of a batch's records as
// soon as its request is encoded ([event.Batch.Detach]), and in front of a
// [PartEncoder] as soon as the batch is handed over, if it holds
// [PartRecords] records or more; it then releases the batch with Settle,
// otherwise with Done.
package export

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/logpump/logpump/event"
)

// Client sends one request made of whole batches to one destination.
//
// Send returns nil on success; an error wrapped by [Permanent] when the
// request must not be retried (the batches count as done and their records as
// dropped); a [*PartialError] when the destination rejected some records
// (counted; the request is done); any other error is retryable and may carry
// a delay asked for by the destination ([RetryAfter]).
//
// Send must not keep the batches or any string of their records after it
// returns. Send is called from several goroutines at once (up to the queue's
// in_flight); it must return promptly once ctx is done.
type Client interface {
	Send(ctx context.Context, batches []*event.Batch) error
	Close() error
}

// Encoder is a [Client] that can encode a request once and send the same
// bytes on every attempt. A [Queue] in front of one detaches the request's
// batches as soon as it is encoded ([event.Batch.Detach]): a request being
// sent, or waiting for its retry, holds its encoded bytes and no records.
type Encoder interface {
	Client
	// Encode encodes batches into one request that keeps nothing of them.
	// An error is classified as Send's.
	Encode(batches []*event.Batch) (Encoded, error)
}

// PartEncoder is an [Encoder] that can also encode a batch on its own, as a
// part of a request to come. A [Queue] in front of one encodes each batch of
// [PartRecords] records or more as [Queue.Enqueue] takes it and detaches it
// at once: a batch waiting for its request, or in a request waiting for a
// sender, then holds its encoded bytes and no records, and records are
// recycled one batch after they were read.
type PartEncoder interface {
	Encoder
	// EncodePart encodes b's records into a part that keeps nothing of b.
	EncodePart(b *event.Batch) Part
	// EncodeParts encodes one request of batches, in their order, where
	// parts[i], when not nil, is batches[i] encoded by EncodePart (and
	// batches[i] is not read). On success the parts belong to the request;
	// on an error, classified as Send's, they stay valid to be given again.
	EncodeParts(batches []*event.Batch, parts []Part) (Encoded, error)
}

// Part is a batch encoded by [PartEncoder.EncodePart], valid until a request
// is encoded from it. One that never is (its queue was abandoned) is left to
// the garbage collector.
type Part any

// PartRecords is the least number of records of a batch that a [Queue]
// encodes as a part. Smaller batches (a few lines of a file written now and
// then) are encoded with their request, so that a request of many files'
// trickles keeps one ResourceLogs per resource rather than one per batch.
const PartRecords = 32

// Encoded is a request made by [Encoder.Encode].
type Encoded interface {
	// Send makes one attempt, with the errors of [Client.Send]. Attempts
	// of one request are never concurrent.
	Send(ctx context.Context) error
	// Release is called once, after the last attempt.
	Release()
}

// ErrClosed is returned by [Queue.Enqueue] after Shutdown or Close.
var ErrClosed = errors.New("export queue closed")

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not retryable: sending the same request again would
// fail the same way. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.err, e.delay)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks the retryable err with the delay the destination asked
// for before the next attempt. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, delay: d}
}

// RetryDelay returns the delay set by [RetryAfter] on err or an error it wraps.
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// Reasons of failed attempts, bounded for metric labels; see [Reason].
const (
	ReasonConnection  = "connection"   // no answer: refused, reset, DNS, TLS handshake
	ReasonTimeout     = "timeout"      // no answer in time
	ReasonUnavailable = "unavailable"  // the destination said it cannot take requests now
	ReasonRateLimited = "rate_limited" // too many requests, resources exhausted
	ReasonAuth        = "auth"         // not authenticated or not allowed
	ReasonNotFound    = "not_found"    // no such path, service or method
	ReasonServerError = "server_error" // the destination failed
	ReasonTooLarge    = "too_large"    // the request, or one record, is larger than accepted
	ReasonBadRequest  = "bad_request"  // the destination cannot use the request
	ReasonRedirect    = "redirect"     // an HTTP redirect, not followed
	ReasonOther       = "other"
)

type reasonError struct {
	err    error
	reason string
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// WithReason marks err with the reason of the failure, one of the Reason*
// constants. WithReason(nil, r) is nil.
func WithReason(err error, reason string) error {
	if err == nil {
		return nil
	}
	return &reasonError{err: err, reason: reason}
}

// Reason returns the reason set by [WithReason] on err or an error it wraps,
// or [ReasonOther].
func Reason(err error) string {
	var r *reasonError
	if errors.As(err, &r) {
		return r.reason
	}
	return ReasonOther
}

// PartialError reports that the destination accepted a request but rejected
// Rejected of its records. It is not retried.
type PartialError struct {
	Rejected int64
	Message  string
}

func (e *PartialError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d records rejected", e.Rejected)
	}
	return fmt.Sprintf("%d records rejected: %s", e.Rejected, e.Message)
}
