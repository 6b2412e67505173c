package otlpsink

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tally counts how often each sequence number arrived, for loss and
// duplicate accounting over streams of millions of records without keeping
// the records. Sequence numbers are 0-based. Its methods are safe for
// concurrent use.
type Tally struct {
	mu      sync.Mutex
	counts  []uint16
	total   int
	unknown int      // records without a sequence number
	samples []string // a few bodies without one
	start   time.Time
	buckets []int // arrivals per bucket since start
}

// bucket is the resolution of [Tally.MaxIn].
const bucket = 100 * time.Millisecond

// NewTally returns an empty tally; arrival times are measured from now.
func NewTally() *Tally { return &Tally{start: time.Now()} }

// AddBody counts the sequence number found in body by [ParseSeq], or an
// unknown record when there is none.
func (t *Tally) AddBody(body string) {
	seq, ok := ParseSeq(body)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.arrive()
	if !ok {
		t.unknown++
		if len(t.samples) < 5 {
			t.samples = append(t.samples, body)
		}
		return
	}
	for seq >= len(t.counts) {
		t.counts = append(t.counts, make([]uint16, max(1024, len(t.counts)))...)
	}
	if t.counts[seq] < 1<<16-1 {
		t.counts[seq]++
	}
	t.total++
}

func (t *Tally) arrive() {
	i := int(time.Since(t.start) / bucket)
	for i >= len(t.buckets) {
		t.buckets = append(t.buckets, 0)
	}
	t.buckets[i]++
}

// Count is how many times seq arrived.
func (t *Tally) Count(seq int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < 0 || seq >= len(t.counts) {
		return 0
	}
	return int(t.counts[seq])
}

// Distinct is how many of the sequence numbers 0..n-1 arrived at least once.
func (t *Tally) Distinct(n int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := 0
	for _, c := range t.counts[:min(n, len(t.counts))] {
		if c > 0 {
			d++
		}
	}
	return d
}

// Total is how many records with a sequence number arrived, copies included.
func (t *Tally) Total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// MaxIn is the largest number of records that arrived within any window of
// length d (rounded up to 100 ms), copies and unknown records included.
func (t *Tally) MaxIn(d time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := int((d + bucket - 1) / bucket)
	best, sum := 0, 0
	for i, n := range t.buckets {
		sum += n
		if i >= w {
			sum -= t.buckets[i-w]
		}
		best = max(best, sum)
	}
	return best
}

// Report is the outcome of a stream of sequence numbers 0..Written-1.
type Report struct {
	Written    int
	Delivered  int   // records that arrived, copies included
	Distinct   int   // sequence numbers that arrived at least once
	Missing    int   // sequence numbers below Written that never arrived
	Duplicates int   // extra copies: Delivered - Distinct
	MaxCopies  int   // most copies of one sequence number
	Unexpected int   // sequence numbers at or above Written, and records without one
	FirstGaps  []int // up to 10 missing sequence numbers, lowest first
	Samples    []string
}

// Report checks the tally against written sequence numbers 0..written-1.
func (t *Tally) Report(written int) Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := Report{Written: written, Unexpected: t.unknown, Samples: t.samples}
	for seq := range written {
		c := 0
		if seq < len(t.counts) {
			c = int(t.counts[seq])
		}
		switch {
		case c == 0:
			r.Missing++
			if len(r.FirstGaps) < 10 {
				r.FirstGaps = append(r.FirstGaps, seq)
			}
		default:
			r.Distinct++
			r.Delivered += c
			r.MaxCopies = max(r.MaxCopies, c)
		}
	}
	for _, c := range t.counts[min(written, len(t.counts)):] {
		r.Unexpected += int(c)
	}
	r.Duplicates = r.Delivered - r.Distinct
	return r
}

// String formats the report as key=value pairs.
func (r Report) String() string {
	s := fmt.Sprintf("written=%d delivered=%d missing=%d duplicates=%d max_copies=%d",
		r.Written, r.Delivered, r.Missing, r.Duplicates, r.MaxCopies)
	if r.Unexpected > 0 {
		s += fmt.Sprintf(" unexpected=%d", r.Unexpected)
	}
	if len(r.FirstGaps) > 0 {
		s += fmt.Sprintf(" first_missing=%v", r.FirstGaps)
	}
	if len(r.Samples) > 0 {
		s += fmt.Sprintf(" unknown_samples=%q", r.Samples)
	}
	return s
}

// SeqPrefix starts the sequence number in a line written by [Line].
const SeqPrefix = "seq="

// seqDigits is the fixed width of a sequence number in a line.
const seqDigits = 10

// Line appends to dst a line of exactly size bytes, newline included,
// carrying seq: "<tag> seq=0000000042 xxxx…\n". size must leave room for the
// tag and the number.
func Line(dst []byte, tag string, seq, size int) []byte {
	start := len(dst)
	dst = append(dst, tag...)
	dst = append(dst, ' ')
	dst = append(dst, SeqPrefix...)
	n := strconv.AppendInt(nil, int64(seq), 10)
	for range seqDigits - len(n) {
		dst = append(dst, '0')
	}
	dst = append(dst, n...)
	dst = append(dst, ' ')
	for len(dst)-start < size-1 {
		dst = append(dst, byte('a'+(seq+len(dst)-start)%26))
	}
	return append(dst, '\n')
}

// ParseSeq finds "seq=NNNNNNNNNN" in body and returns the number.
func ParseSeq(body string) (int, bool) {
	i := strings.Index(body, SeqPrefix)
	if i < 0 || len(body) < i+len(SeqPrefix)+seqDigits {
		return 0, false
	}
	n, err := strconv.Atoi(body[i+len(SeqPrefix) : i+len(SeqPrefix)+seqDigits])
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
