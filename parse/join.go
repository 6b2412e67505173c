package parse

import (
	"iter"
	"slices"
	"time"

	"github.com/logpump/logpump/event"
)

// Joining lines into events across batches
//
// The stages that join lines (multiline, and the partial lines of cri and
// docker) share a joiner. Its acknowledgement rule: a batch's range is
// acknowledged only after every record that started in it has been emitted
// and acknowledged downstream. The checkpoint tracker advances a file's
// offset only over a contiguous run of acknowledged batches, so holding the
// batch an event started in is enough; later batches that only hold
// continuation lines may be acknowledged early, their offsets cannot pass the
// held one.
//
// For each batch b of a file:
//   - events that start and end in b are written back into b in place (a
//     one-line event is moved, not copied; a joined body is copied into b's
//     arena);
//   - an event still open at the end of b is copied out of b (record fields
//     and attribute slice; the body bytes into the joiner's own buffer; its
//     strings keep aliasing b's arena) and b gets one extra reference
//     ([event.Batch.Retain]) that the open event holds;
//   - when an event that started in an earlier batch ends (or is flushed by
//     the flush timeout on a later batch or tick, or at the end of input) it
//     is emitted in a new batch whose acknowledgement releases the held
//     batches. That batch is yielded just before the batch that ended it.
//
// State is kept per file (device and inode: the fingerprint of a short file
// grows with it) and per stream (stdout and stderr partial lines of one
// container interleave). If the consumer stops early, held batches are not
// released: their lines are not acknowledged and are read again after a
// restart, never lost.

// decision says what a line does to the event open on its stream.
type decision uint8

const (
	// joinAdd continues the open event, or begins one if none is open.
	joinAdd decision = iota
	// joinBegin ends the open event and begins a new one.
	joinBegin
	// joinSingle passes the record on alone; the open event is untouched.
	joinSingle
	// joinDrop removes the record (the decider counted it).
	joinDrop
)

// decider classifies a record and may rewrite it (the cri parser strips the
// runtime's prefix). last reports that the event ends with this record.
type decider func(b *event.Batch, r *event.Record) (d decision, last bool, stream uint8)

type joinKey struct {
	dev, ino uint64
	stream   uint8
}

type joinState struct {
	key   joinKey
	idx   int  // index of the first record in the current batch while lazy
	lazy  bool // the event is one record, still in place at idx
	rec   event.Record
	attrs []event.KeyValue
	body  []byte
	lines int
	hold  *event.Batch // the batch the event started in, once retained
	last  int64        // Unix nanoseconds of the latest line
}

type joiner struct {
	decide   decider
	sep      string
	maxLines int
	maxBytes int
	timeout  time.Duration
	now      func() time.Time

	pool  event.Pool
	open  map[joinKey]*joinState
	free  []*joinState
	fresh []*joinState   // states begun in the current batch
	extra *event.Batch   // events of earlier batches ended by the current one
	holds []*event.Batch // references extra takes over
}

func (j *joiner) run(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
	return func(yield func(*event.Batch) bool) {
		if j.open == nil {
			j.open = make(map[joinKey]*joinState)
		}
		for b := range in {
			if !j.push(b, yield) {
				return
			}
		}
		j.flush(0, true, yield)
	}
}

// push joins the lines of b, yields the events b ended, b, and the events
// idle for the timeout.
func (j *joiner) push(b *event.Batch, yield func(*event.Batch) bool) bool {
	now := j.now().UnixNano()
	if len(b.Records) > 0 {
		j.batch(b, now)
		if e := j.takeExtra(); e != nil && !yield(e) {
			return false
		}
	}
	if !yield(b) {
		return false
	}
	return j.flush(now, false, yield)
}

// flush emits open events idle for the flush timeout, or all with force.
func (j *joiner) flush(now int64, force bool, yield func(*event.Batch) bool) bool {
	for _, s := range j.open {
		if !force && now-s.last < int64(j.timeout) {
			continue
		}
		e := j.pool.Get()
		j.appendTo(e, s)
		h := s.hold
		e.SetAck(h.Done)
		j.release(s)
		if !yield(e) {
			return false
		}
	}
	return true
}

func (j *joiner) batch(b *event.Batch, now int64) {
	base := joinKey{dev: b.File.Dev, ino: b.File.Ino}
	j.fresh = j.fresh[:0]
	w := 0
	for i := range b.Records {
		r := &b.Records[i]
		d, last, stream := j.decide(b, r)
		if d == joinDrop {
			continue
		}
		if d == joinSingle || r.Body.Kind != event.KindString {
			j.place(b, &w, i)
			continue
		}
		key := base
		key.stream = stream
		s := j.open[key]
		if s != nil && d == joinBegin {
			j.emit(b, &w, s)
			s = nil
		}
		if s == nil {
			if last || j.maxLines <= 1 {
				j.place(b, &w, i)
				continue
			}
			s = j.begin(key, i, now)
			continue
		}
		j.add(b, s, r, now)
		if last || s.lines >= j.maxLines {
			j.emit(b, &w, s)
		}
	}
	for _, s := range j.fresh {
		if s.lines > 0 && s.hold == nil {
			if s.lazy {
				j.materialize(b, s)
			}
			b.Retain(1)
			s.hold = b
		}
	}
	b.Records = b.Records[:w]
}

// place moves record i to the output position w.
func (j *joiner) place(b *event.Batch, w *int, i int) {
	if *w != i {
		j.evict(b, *w)
		b.Records[*w], b.Records[i] = b.Records[i], b.Records[*w]
	}
	*w++
}

// evict copies out a one-record event still in place at slot w before the
// slot is overwritten.
func (j *joiner) evict(b *event.Batch, w int) {
	for _, s := range j.fresh {
		if s.lazy && s.idx == w && s.lines > 0 && s.hold == nil {
			j.materialize(b, s)
		}
	}
}

func (j *joiner) begin(key joinKey, i int, now int64) *joinState {
	var s *joinState
	if n := len(j.free); n > 0 {
		s, j.free = j.free[n-1], j.free[:n-1]
	} else {
		s = &joinState{}
	}
	s.key, s.idx, s.lazy, s.lines, s.hold, s.last = key, i, true, 1, nil, now
	j.open[key] = s
	j.fresh = append(j.fresh, s)
	return s
}

func (j *joiner) materialize(b *event.Batch, s *joinState) {
	r := &b.Records[s.idx]
	s.rec = *r
	s.rec.Attrs = nil
	s.attrs = append(s.attrs[:0], r.Attrs...)
	s.body = s.body[:0]
	j.appendBody(s, r.Body.Str)
	s.lazy = false
}

func (j *joiner) appendBody(s *joinState, p string) {
	if room := j.maxBytes - len(s.body); len(p) > room {
		p = p[:max(room, 0)]
		s.rec.Flags |= event.Truncated
	}
	s.body = append(s.body, p...)
}

func (j *joiner) add(b *event.Batch, s *joinState, r *event.Record, now int64) {
	if s.lazy {
		j.materialize(b, s)
	}
	if len(j.sep) > 0 {
		j.appendBody(s, j.sep)
	}
	j.appendBody(s, r.Body.Str)
	s.rec.Flags |= r.Flags
	s.lines++
	s.last = now
}

// emit writes the event of s to the output: in place when it started in b,
// else to the extra batch.
func (j *joiner) emit(b *event.Batch, w *int, s *joinState) {
	switch {
	case s.hold == nil && s.lazy:
		j.place(b, w, s.idx)
	case s.hold == nil:
		j.evict(b, *w)
		slot := &b.Records[*w]
		attrs := slot.Attrs[:0]
		*slot = s.rec
		slot.Attrs = append(attrs, s.attrs...)
		slot.Body = event.String(b.Copy(s.body))
		*w++
	default:
		if j.extra == nil {
			j.extra = j.pool.Get()
		}
		j.appendTo(j.extra, s)
		j.holds = append(j.holds, s.hold)
	}
	j.release(s)
}

// appendTo appends the materialized event of s to e, taking the file's
// identity from the batch s holds.
func (j *joiner) appendTo(e *event.Batch, s *joinState) {
	h := s.hold
	if len(e.Records) == 0 {
		e.Source, e.File, e.Path, e.Resource = h.Source, h.File, h.Path, h.Resource
		e.Start, e.End = h.Start, h.End
	}
	r := e.Next()
	attrs := r.Attrs[:0]
	*r = s.rec
	r.Attrs = append(attrs, s.attrs...)
	r.Body = event.String(e.Copy(s.body))
}

func (j *joiner) release(s *joinState) {
	delete(j.open, s.key)
	clear(s.attrs)
	s.attrs = s.attrs[:0]
	s.rec = event.Record{}
	s.lines, s.hold, s.lazy = 0, nil, false
	if cap(s.body) > 1<<20 {
		s.body = nil
	}
	j.free = append(j.free, s)
}

func (j *joiner) takeExtra() *event.Batch {
	e := j.extra
	if e == nil {
		return nil
	}
	j.extra = nil
	holds := slices.Clone(j.holds)
	clear(j.holds)
	j.holds = j.holds[:0]
	e.SetAck(func() {
		for _, h := range holds {
			h.Done()
		}
	})
	return e
}
