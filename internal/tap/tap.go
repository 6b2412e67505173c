// Package tap lets an operator watch records pass a named point of a
// running pipeline without disturbing it.
//
// A [Registry] holds named tap points. [Registry.Point] returns a
// pass-through stage to insert in a chain; while nobody listens it costs one
// atomic load per batch. A subscriber ([Registry.Subscribe]) receives copies
// of the next records that pass, through a bounded channel: the pipeline
// never waits for it, and records that find the channel full are dropped
// and counted. The records are rendered (their strings copied out of the
// batch's arena) before the batch moves on, so a subscriber may keep them.
//
// [Registry.Handler] serves subscriptions over HTTP as JSON lines, and
// [Read] is its client, used by "logpump tap".
package tap

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// MaxRecords bounds what one subscription may ask for.
const MaxRecords = 10000

// ErrUnknownPoint is returned by [Registry.Subscribe] for a name no stage
// registered.
var ErrUnknownPoint = errors.New("unknown tap point")

// Registry holds the tap points of an agent. A point outlives the pipelines
// that use it: after a reload, the new pipeline's stage of the same name
// feeds the same subscribers. A Registry is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	points map[string]*point
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{points: map[string]*point{}}
}

type point struct {
	name string
	// subs is nil while nobody listens; it is replaced, never changed in
	// place, under mu.
	subs atomic.Pointer[[]*Subscription]
	mu   sync.Mutex
}

// Point registers name (once; later calls share the point) and returns a
// stage that passes batches through unchanged, offering their records to
// the point's subscribers first. Several goroutines may run stages of the
// same point at once.
func (r *Registry) Point(name string) pipe.Stage {
	p := r.point(name, true)
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			for b := range in {
				if subs := p.subs.Load(); subs != nil {
					p.offer(*subs, b)
				}
				if !yield(b) {
					return
				}
			}
		}
	}
}

func (r *Registry) point(name string, create bool) *point {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.points[name]
	if p == nil && create {
		p = &point{name: name}
		r.points[name] = p
	}
	return p
}

// Names returns the registered point names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.points))
	for n := range r.points {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Subscribe starts copying the next n records (1 to [MaxRecords]) passing
// the named point. Close the subscription when done with it.
func (r *Registry) Subscribe(name string, n int) (*Subscription, error) {
	if n < 1 || n > MaxRecords {
		return nil, fmt.Errorf("subscribe to tap %s: n must be between 1 and %d, got %d", name, MaxRecords, n)
	}
	p := r.point(name, false)
	if p == nil {
		return nil, fmt.Errorf("subscribe to tap %s: %w", name, ErrUnknownPoint)
	}
	s := &Subscription{p: p, n: n, ch: make(chan Record, min(n, 256))}
	s.wanted.Store(int64(n))
	p.mu.Lock()
	subs := []*Subscription{s}
	if old := p.subs.Load(); old != nil {
		subs = append(subs, *old...)
	}
	p.subs.Store(&subs)
	p.mu.Unlock()
	return s, nil
}

// offer renders records of b for every subscriber that wants more and has
// room, and counts a drop for one without room.
func (p *point) offer(subs []*Subscription, b *event.Batch) {
	for _, s := range subs {
		for i := range b.Records {
			if s.wanted.Load() <= 0 {
				break
			}
			if len(s.ch) == cap(s.ch) {
				s.dropped.Add(1)
				continue
			}
			if s.wanted.Add(-1) < 0 {
				break // another goroutine took the last one
			}
			select {
			case s.ch <- render(p.name, b, &b.Records[i]):
			default:
				// Filled up since the check by another goroutine: give the
				// slot back so the subscriber still gets n records.
				s.wanted.Add(1)
				s.dropped.Add(1)
			}
		}
	}
}

// Subscription receives copies of records passing one tap point.
type Subscription struct {
	p       *point
	n       int
	ch      chan Record
	wanted  atomic.Int64 // records still to be offered
	dropped atomic.Uint64
	once    sync.Once
}

// Records yields the subscription's records as they pass, until n were
// yielded, ctx is done or the loop stops. It may be ranged over once.
func (s *Subscription) Records(ctx context.Context) iter.Seq[Record] {
	return func(yield func(Record) bool) {
		for got := 0; got < s.n; got++ {
			select {
			case <-ctx.Done():
				return
			case rec := <-s.ch:
				if !yield(rec) {
					return
				}
			}
		}
	}
}

// Dropped counts records that passed while the subscriber's buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close stops the copying. It is idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() {
		p := s.p
		p.mu.Lock()
		defer p.mu.Unlock()
		old := p.subs.Load()
		if old == nil {
			return
		}
		rest := slices.DeleteFunc(slices.Clone(*old), func(o *Subscription) bool { return o == s })
		if len(rest) == 0 {
			p.subs.Store(nil)
		} else {
			p.subs.Store(&rest)
		}
	})
}

// Record is a copy of an event.Record made as it passed a tap point. It
// shares no memory with the batch and encodes to JSON.
type Record struct {
	Point      string         `json:"point"`
	Source     string         `json:"source,omitempty"`
	File       string         `json:"file,omitempty"`
	Offset     int64          `json:"offset"`
	Time       string         `json:"time,omitempty"`
	Observed   string         `json:"observed,omitempty"`
	Severity   string         `json:"severity,omitempty"`
	Body       any            `json:"body"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Resource   map[string]any `json:"resource,omitempty"`
	TraceID    string         `json:"trace_id,omitempty"`
	SpanID     string         `json:"span_id,omitempty"`
	Flags      []string       `json:"flags,omitempty"`
}

// Render copies record r of b, as it passed the tap point named pointName,
// into a Record that shares no memory with b.
func Render(pointName string, b *event.Batch, r *event.Record) Record { return render(pointName, b, r) }

// render copies r, which lives in b's arena, into a Record.
func render(pointName string, b *event.Batch, r *event.Record) Record {
	out := Record{
		Point:    pointName,
		Source:   strings.Clone(b.Source),
		File:     strings.Clone(b.Path),
		Offset:   r.Offset,
		Time:     timestamp(r.Time),
		Observed: timestamp(r.Observed),
		Severity: strings.Clone(r.SeverityText),
		Body:     value(r.Body),
	}
	if out.Severity == "" {
		out.Severity = r.Severity.String()
	}
	if len(r.Attrs) > 0 {
		out.Attributes = attrs(r.Attrs)
	}
	res := b.Resource
	if r.Resource != nil {
		res = r.Resource
	}
	if res != nil && len(res.Attrs) > 0 {
		out.Resource = attrs(res.Attrs)
	}
	if r.TraceID != ([16]byte{}) {
		out.TraceID = hex.EncodeToString(r.TraceID[:])
	}
	if r.SpanID != ([8]byte{}) {
		out.SpanID = hex.EncodeToString(r.SpanID[:])
	}
	for _, f := range []struct {
		flag event.Flags
		name string
	}{{event.Truncated, "truncated"}, {event.InvalidUTF8, "invalid_utf8"}, {event.ParseError, "parse_error"}, {event.Unterminated, "unterminated"}} {
		if r.Flags&f.flag != 0 {
			out.Flags = append(out.Flags, f.name)
		}
	}
	return out
}

func timestamp(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

func attrs(kvs []event.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[strings.Clone(kv.Key)] = value(kv.Value)
	}
	return m
}

// value copies v into plain Go values that encoding/json understands.
func value(v event.Value) any {
	switch v.Kind {
	case event.KindString:
		return strings.Clone(v.Str)
	case event.KindInt:
		return v.AsInt()
	case event.KindDouble:
		f := v.AsDouble()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return v.Text() // JSON has no NaN or infinity
		}
		return f
	case event.KindBool:
		return v.AsBool()
	case event.KindBytes:
		return []byte(v.Str) // a copy; base64 in JSON
	case event.KindMap:
		return attrs(v.List)
	case event.KindArray:
		a := make([]any, len(v.List))
		for i, e := range v.List {
			a[i] = value(e.Value)
		}
		return a
	}
	return nil
}
