// Package pipe holds the shape shared by every processing step: a Stage is an
// iterator transformer over batches, and a pipeline is a chain of stages.
package pipe

import (
	"iter"

	"github.com/logpump/logpump/event"
)

// Stage transforms a sequence of batches into another. Stages run in the one
// goroutine that drives their chain, so they need no locks.
//
// Contract for a stage:
//   - check every yield result and return when it is false;
//   - a batch not yielded on must be released with Done (a drop acknowledges it);
//   - a batch yielded on is handed over: do not touch it after yield returns;
//   - never drop a batch because a context was cancelled: stopping happens at
//     the source, and stages finish the batches they are given.
type Stage func(iter.Seq[*event.Batch]) iter.Seq[*event.Batch]

// Chain composes stages left to right into one stage. A chain of no stages
// passes batches through unchanged.
func Chain(stages ...Stage) Stage {
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		for _, s := range stages {
			in = s(in)
		}
		return in
	}
}

// Map returns a stage that applies f to every batch in place. f may shrink
// b.Records (dropping records); a batch left with no records is still yielded
// so that its range is acknowledged in order with the others.
func Map(f func(b *event.Batch)) Stage {
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			for b := range in {
				f(b)
				if !yield(b) {
					return
				}
			}
		}
	}
}

// Records returns a stage that applies f to every record of every batch. f
// returns false to drop the record. f may use b to copy data into the batch's
// arena.
func Records(f func(b *event.Batch, r *event.Record) bool) Stage {
	return Map(func(b *event.Batch) {
		kept := b.Records[:0]
		for i := range b.Records {
			if f(b, &b.Records[i]) {
				kept = append(kept, b.Records[i])
			}
		}
		// Records past the kept ones are reset by the pool; their attribute
		// slices were moved (shared) into kept entries, so clear the tail to
		// avoid two records sharing one backing array after reuse.
		for i := len(kept); i < len(b.Records); i++ {
			b.Records[i] = event.Record{}
		}
		b.Records = kept
	})
}
