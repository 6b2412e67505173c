package export

import (
	"context"
	"testing"

	"github.com/logpump/logpump/event"
)

type discardClient struct{}

func (discardClient) Send(context.Context, []*event.Batch) error { return nil }
func (discardClient) Close() error                               { return nil }

// BenchmarkQueue measures the queue's own cost per batch of 100 records:
// hand-off, grouping, dispatch and acknowledgement, with a client that
// accepts at once.
func BenchmarkQueue(b *testing.B) {
	o := DefaultQueueOptions()
	q := NewQueue("bench", discardClient{}, o, nil)
	q.Start()
	var pool event.Pool
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		batch := pool.Get()
		for range 100 {
			batch.Next().Body = event.String("line")
		}
		if err := q.Enqueue(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := q.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/record")
}

// BenchmarkQueueBaseline fills and releases the same batches without a
// queue, to subtract from BenchmarkQueue.
func BenchmarkQueueBaseline(b *testing.B) {
	var pool event.Pool
	b.ReportAllocs()
	for b.Loop() {
		batch := pool.Get()
		for range 100 {
			batch.Next().Body = event.String("line")
		}
		batch.Done()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/record")
}
