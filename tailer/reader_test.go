package tailer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
)

// line is what a test expects of one record.
type line struct {
	Body   string
	Offset int64
	Flags  event.Flags
}

// readerAts wraps data in ReaderAts that behave like the odd readers of
// testing/iotest: all at once, one byte per call, data returned together
// with io.EOF.
var readerAts = map[string]func([]byte) io.ReaderAt{
	"whole":   func(p []byte) io.ReaderAt { return bytes.NewReader(p) },
	"onebyte": func(p []byte) io.ReaderAt { return oneByteReaderAt(p) },
	"dataeof": func(p []byte) io.ReaderAt { return dataEOFReaderAt(p) },
}

type oneByteReaderAt []byte

func (r oneByteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r[off]
	return 1, nil
}

type dataEOFReaderAt []byte

func (r dataEOFReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		return 0, io.EOF
	}
	n := copy(p, r[off:])
	if off+int64(n) == int64(len(r)) {
		return n, io.EOF
	}
	return n, nil
}

// readAll reads every line of r in batches of at most max records, the
// way a tailer's turns do, and returns them with the final cursor.
func readAll(t *testing.T, lr *lineReader, r io.ReaderAt, flush bool, max int) ([]line, cursor, readResult) {
	t.Helper()
	var c cursor
	var got []line
	var pool event.Pool
	for range 10000 {
		b := pool.Get()
		start := c.offset
		res, err := lr.read(r, &c, b, limits{records: max, bytes: 1 << 20}, flush, 1, nil)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		for _, rec := range b.Records {
			if rec.Offset < start || rec.Offset >= c.offset {
				t.Errorf("record offset %d outside batch range [%d,%d)", rec.Offset, start, c.offset)
			}
			got = append(got, line{strings.Clone(rec.Body.Str), rec.Offset, rec.Flags})
		}
		b.Done()
		if res.eof {
			return got, c, res
		}
	}
	t.Fatal("reader did not reach the end")
	return nil, c, readResult{}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("a", 40)
	tests := []struct {
		name    string
		enc     string
		in      string
		maxLine int
		flush   bool
		want    []line
		partial int
		offset  int64
	}{
		{name: "plain", in: "one\ntwo\n", want: []line{{"one", 0, 0}, {"two", 4, 0}}, offset: 8},
		{name: "crlf", in: "one\r\ntwo\r\n", want: []line{{"one", 0, 0}, {"two", 5, 0}}, offset: 10},
		{name: "empty lines", in: "\n\nx\n", want: []line{{"", 0, 0}, {"", 1, 0}, {"x", 2, 0}}, offset: 4},
		{name: "partial kept", in: "one\ntw", want: []line{{"one", 0, 0}}, partial: 2, offset: 4},
		{name: "partial flushed", in: "one\ntw", flush: true,
			want: []line{{"one", 0, 0}, {"tw", 4, event.Unterminated}}, offset: 6},
		{name: "long line truncated", in: long + "\nok\n", maxLine: 16,
			want: []line{{long[:16], 0, event.Truncated}, {"ok", 41, 0}}, offset: 44},
		{name: "long partial skipped to its end", in: long + long + "\nok\n", maxLine: 16,
			want: []line{{long[:16], 0, event.Truncated}, {"ok", 81, 0}}, offset: 84},
		{name: "long line without end", in: long, maxLine: 16,
			want: []line{{long[:16], 0, event.Truncated}}, offset: 40},
		{name: "exactly max", in: long[:16] + "\n", maxLine: 16, want: []line{{long[:16], 0, 0}}, offset: 17},
		{name: "truncation keeps runes whole", in: "aaaaaaaaaaaaaaa\u00e9tail\n", maxLine: 16,
			want: []line{{"aaaaaaaaaaaaaaa", 0, event.Truncated}}, offset: 22},
		{name: "invalid utf-8 passes through", in: "a\xffb\nok\n",
			want: []line{{"a\xffb", 0, event.InvalidUTF8}, {"ok", 4, 0}}, offset: 7},
		{name: "nul region skipped", in: "one\n\x00\x00\x00\x00two\n\x00\x00",
			want: []line{{"one", 0, 0}, {"two", 8, 0}}, offset: 14},
		{name: "bom dropped", in: "\xef\xbb\xbfone\n", want: []line{{"one", 0, 0}}, offset: 7},
		{name: "latin-1", enc: "latin-1", in: "caf\xe9\n", want: []line{{"café", 0, 0}}, offset: 5},
		{name: "utf-16le", enc: "utf-16le", in: "\xff\xfeh\x00i\x00\r\x00\n\x00\x0a\x01\n\x00",
			want: []line{{"hi", 0, 0}, {"Ċ", 10, 0}}, offset: 14},
		{name: "utf-16be", enc: "utf-16be", in: "\x00h\x00i\x00\n\x01\x0a\x00\n",
			want: []line{{"hi", 0, 0}, {"Ċ", 6, 0}}, offset: 10},
		{name: "utf-16le partial unit", enc: "utf-16le", in: "h\x00\n\x00i",
			want: []line{{"h", 0, 0}}, partial: 1, offset: 4},
	}
	for _, tt := range tests {
		for rname, mk := range readerAts {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				enc, maxLine := tt.enc, tt.maxLine
				if enc == "" {
					enc = "utf-8"
				}
				if maxLine == 0 {
					maxLine = 1 << 20
				}
				for _, batch := range []int{1, 2, 1000} {
					lr := newLineReader(enc, maxLine)
					got, c, res := readAll(t, lr, mk([]byte(tt.in)), tt.flush, batch)
					if diff := cmp.Diff(tt.want, got); diff != "" {
						t.Errorf("batch %d: records (-want +got):\n%s", batch, diff)
					}
					if c.offset != tt.offset || res.partial != tt.partial {
						t.Errorf("batch %d: offset %d partial %d, want %d %d", batch, c.offset, res.partial, tt.offset, tt.partial)
					}
				}
			})
		}
	}
}

// A line growing past the buffer size in several reads is still one line.
func TestReadLineLongerThanBuffer(t *testing.T) {
	body := strings.Repeat("z", 3*readBufferSize+17)
	lr := newLineReader("utf-8", 1<<20)
	got, _, _ := readAll(t, lr, bytes.NewReader([]byte(body+"\nnext\n")), false, 1000)
	if len(got) != 2 || got[0].Body != body || got[1].Body != "next" {
		t.Fatalf("got %d records, first %d bytes; want the long line and next", len(got), len(got[0].Body))
	}
}

// Memory stays bounded by max_line_bytes whatever the line length: a 64 MiB
// line without newline leaves a buffer of max_line_bytes.
func TestReadHugeLineBoundsMemory(t *testing.T) {
	const huge = 64 << 20
	r := zeroFreeReaderAt{size: huge}
	lr := newLineReader("utf-8", 64<<10)
	got, c, _ := readAll(t, lr, r, false, 1000)
	if len(got) != 1 || got[0].Flags != event.Truncated || len(got[0].Body) != 64<<10 {
		t.Fatalf("got %d records; want one truncated of 64KiB", len(got))
	}
	if c.offset != huge || !c.skipping {
		t.Errorf("offset %d skipping %v; want %d true", c.offset, c.skipping, huge)
	}
	if cap(lr.buf) > 64<<10+1 {
		t.Errorf("buffer grew to %d bytes; want at most max_line_bytes+1", cap(lr.buf))
	}
}

// zeroFreeReaderAt is a file of size bytes 'x' with no newline.
type zeroFreeReaderAt struct{ size int64 }

func (r zeroFreeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.size-off))
	for i := range p[:n] {
		p[i] = 'x'
	}
	return n, nil
}

// A read error is returned with its offset, and nothing past it is consumed.
func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	r := failingReaderAt{data: []byte("one\ntwo\nthree"), failAt: 8, err: boom}
	lr := newLineReader("utf-8", 1<<20)
	var c cursor
	var pool event.Pool
	b := pool.Get()
	defer b.Done()
	_, err := lr.read(r, &c, b, limits{records: 100, bytes: 1 << 20}, false, 0, nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "offset 8") {
		t.Fatalf("err = %v; want boom at offset 8", err)
	}
	if c.offset != 8 || len(b.Records) != 2 {
		t.Errorf("offset %d records %d; want 8 and 2", c.offset, len(b.Records))
	}
}

type failingReaderAt struct {
	data   []byte
	failAt int64
	err    error
}

func (r failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.failAt {
		return 0, r.err
	}
	n := copy(p, r.data[off:r.failAt])
	return n, nil
}

func TestFingerprint(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 300))
	buf := make([]byte, 1024)
	tests := []struct {
		name    string
		size    int
		wantLen int
	}{
		{"empty", 0, 0},
		{"short grows with the file", 100, 100},
		{"capped", 3000, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := fingerprint(bytes.NewReader(data[:tt.size]), 1024, buf)
			if err != nil || fp.Len != tt.wantLen {
				t.Fatalf("fingerprint = %+v, %v; want Len %d", fp, err, tt.wantLen)
			}
			// The same start in a longer file matches.
			if same, err := sameStart(bytes.NewReader(data), fp, buf); !same || err != nil {
				t.Errorf("sameStart(longer file) = %v, %v; want true", same, err)
			}
			if tt.size == 0 {
				return
			}
			changed := bytes.Clone(data)
			changed[tt.wantLen-1] ^= 1
			if same, _ := sameStart(bytes.NewReader(changed), fp, buf); same {
				t.Errorf("sameStart(changed last byte) = true; want false")
			}
			if same, _ := sameStart(bytes.NewReader(data[:tt.wantLen-1]), fp, buf); same {
				t.Errorf("sameStart(shorter file) = true; want false")
			}
		})
	}
}

// A pooled batch keeps its arena; the lines of the next batch read into it
// are copied into what it holds rather than into a block twice as large, so
// arenas stay near the margin-sized first copy instead of doubling each time
// a copy overruns them.
func TestReusedArenaStaysBounded(t *testing.T) {
	var data []byte
	for i := range 40000 {
		n := 90 + i*37%71 // 90..160 bytes
		data = append(data, bytes.Repeat([]byte{'a' + byte(i%26)}, n-1)...)
		data = append(data, '\n')
	}
	r := bytes.NewReader(data)
	lr := newLineReader("utf-8", 1<<20)
	lr.use(devIno{1, 1})
	lim := limits{records: 250, bytes: 256 << 10}
	var pool event.Pool
	var c cursor
	ring := make([]*event.Batch, 0, 16)
	most := 0
	for {
		b := pool.Get()
		most = max(most, b.Room()) // the arena kept from the batch's last use
		res, err := lr.read(r, &c, b, lim, false, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ring = append(ring, b); len(ring) == cap(ring) || res.eof {
			for _, b := range ring {
				b.Done()
			}
			ring = ring[:0]
		}
		if res.eof {
			break
		}
	}
	if limit := 2 * lim.records * 160; most > limit {
		t.Errorf("a reused batch held an arena of %d bytes; want at most %d (twice the batch's lines)", most, limit)
	}
}
