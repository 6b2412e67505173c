// Package tailertest helps test file sources: it writes sequence-numbered
// lines and counts what a source delivered, reporting lines missing and
// duplicated.
package tailertest

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/logpump/logpump/event"
)

// Writer appends sequence-numbered lines "w=<stream> seq=<n> <padding>" to a
// file, like an application writing its log. Not safe for concurrent use.
type Writer struct {
	Stream string
	path   string
	f      *os.File
	next   int
	pad    string
	buf    []byte
}

// NewWriter opens (creating) path for appending. pad is appended to every
// line to give it a size.
func NewWriter(path, stream string, pad int) (*Writer, error) {
	w := &Writer{Stream: stream, path: path, pad: strings.Repeat("x", pad)}
	return w, w.Reopen()
}

// Reopen closes the current descriptor and opens the path again, as an
// application does after a rotation signal.
func (w *Writer) Reopen() error {
	if w.f != nil {
		w.f.Close()
	}
	f, err := openAppend(w.path)
	if err != nil {
		return fmt.Errorf("open log %s: %w", w.path, err)
	}
	w.f = f
	return nil
}

// Write appends n lines in one write call.
func (w *Writer) Write(n int) error {
	w.buf = w.buf[:0]
	for range n {
		w.buf = w.AppendLine(w.buf)
	}
	if _, err := w.f.Write(w.buf); err != nil {
		return fmt.Errorf("write log %s: %w", w.path, err)
	}
	return nil
}

// AppendLine appends the next line, with its newline, to dst.
func (w *Writer) AppendLine(dst []byte) []byte {
	dst = append(dst, "w="...)
	dst = append(dst, w.Stream...)
	dst = append(dst, " seq="...)
	dst = strconv.AppendInt(dst, int64(w.next), 10)
	dst = append(dst, ' ')
	dst = append(dst, w.pad...)
	w.next++
	return append(dst, '\n')
}

// Skip advances the sequence number by n, for a writer continuing a file
// whose first n lines another writer wrote.
func (w *Writer) Skip(n int) { w.next += n }

// Written returns how many lines were written.
func (w *Writer) Written() int { return w.next }

// Close closes the descriptor.
func (w *Writer) Close() error { return w.f.Close() }

// Counter counts delivered lines by stream and sequence number. It is safe
// for concurrent use.
type Counter struct {
	mu    sync.Mutex
	seen  map[string]map[int]int
	total int
	other []string // bodies that are not sequence-numbered lines
	flags event.Flags
	ticks int
}

// NewCounter returns an empty counter.
func NewCounter() *Counter { return &Counter{seen: map[string]map[int]int{}} }

// Add counts the records of b. It does not release b.
func (c *Counter) Add(b *event.Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(b.Records) == 0 && b.File == (event.FileID{}) {
		c.ticks++
		return
	}
	for i := range b.Records {
		r := &b.Records[i]
		c.flags |= r.Flags
		stream, seq, ok := Parse(r.Body.Str)
		if !ok {
			if len(c.other) < 100 {
				c.other = append(c.other, strings.Clone(r.Body.Str))
			}
			continue
		}
		m := c.seen[stream]
		if m == nil {
			m = map[int]int{}
			c.seen[strings.Clone(stream)] = m // the body's bytes belong to the batch
		}
		m[seq]++
		c.total++
	}
}

// Parse returns the stream and sequence number of a line written by a Writer.
func Parse(line string) (stream string, seq int, ok bool) {
	rest, found := strings.CutPrefix(line, "w=")
	if !found {
		return "", 0, false
	}
	stream, rest, found = strings.Cut(rest, " seq=")
	if !found {
		return "", 0, false
	}
	num, _, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(num)
	if err != nil {
		return "", 0, false
	}
	return stream, n, true
}

// Result compares deliveries with what was written.
type Result struct {
	Written, Delivered, Missing, Duplicated int
	// FirstMissing lists up to 10 missing lines as stream/seq.
	FirstMissing []string
}

func (r Result) String() string {
	return fmt.Sprintf("written %d, delivered %d, missing %d, duplicated %d", r.Written, r.Delivered, r.Missing, r.Duplicated)
}

// Result compares the lines counted with written, the number of lines
// written per stream.
func (c *Counter) Result(written map[string]int) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	var res Result
	res.Delivered = c.total
	streams := make([]string, 0, len(written))
	for s := range written {
		streams = append(streams, s)
	}
	slices.Sort(streams)
	for _, s := range streams {
		n := written[s]
		res.Written += n
		m := c.seen[s]
		for seq := range n {
			switch k := m[seq]; {
			case k == 0:
				res.Missing++
				if len(res.FirstMissing) < 10 {
					res.FirstMissing = append(res.FirstMissing, fmt.Sprintf("%s/%d", s, seq))
				}
			case k > 1:
				res.Duplicated += k - 1
			}
		}
	}
	return res
}

// Count returns how many sequence-numbered lines were counted.
func (c *Counter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Ticks returns how many tick batches were counted.
func (c *Counter) Ticks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ticks
}

// Flags returns the union of every counted record's flags.
func (c *Counter) Flags() event.Flags {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flags
}

// Other returns up to 100 bodies that were not sequence-numbered lines.
func (c *Counter) Other() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.other)
}
