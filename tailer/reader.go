package tailer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/ascii"
)

// codec finds line ends in one file encoding and turns lines into UTF-8.
type codec struct {
	unit      int    // bytes per code unit: 1, or 2 for UTF-16
	nl, cr    []byte // newline and carriage return as encoded
	bom       []byte // byte order mark dropped from the start of a file
	dec       transform.Transformer
	checkUTF8 bool
}

func newCodec(name string) codec {
	switch name {
	case "utf-16le":
		return codec{unit: 2, nl: []byte{'\n', 0}, cr: []byte{'\r', 0}, bom: []byte{0xff, 0xfe},
			dec: unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewDecoder()}
	case "utf-16be":
		return codec{unit: 2, nl: []byte{0, '\n'}, cr: []byte{0, '\r'}, bom: []byte{0xfe, 0xff},
			dec: unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewDecoder()}
	case "latin-1":
		return codec{unit: 1, nl: []byte{'\n'}, cr: []byte{'\r'}, dec: charmap.ISO8859_1.NewDecoder()}
	}
	return codec{unit: 1, nl: []byte{'\n'}, cr: []byte{'\r'}, bom: []byte{0xef, 0xbb, 0xbf}, checkUTF8: true}
}

// index returns the position of the first newline in p, aligned to a code
// unit, or -1.
func (c *codec) index(p []byte) int {
	if c.unit == 1 {
		return bytes.IndexByte(p, '\n')
	}
	off := 0
	for {
		i := bytes.Index(p[off:], c.nl)
		if i < 0 {
			return -1
		}
		if (off+i)%2 == 0 {
			return off + i
		}
		off += i + 1
	}
}

// zeros returns how many bytes of whole zero code units p starts with.
func (c *codec) zeros(p []byte) int {
	n := 0
	for n+c.unit <= len(p) && p[n] == 0 && p[n+c.unit-1] == 0 {
		n += c.unit
	}
	return n
}

// cursor is the reading position in one file.
type cursor struct {
	// offset is the first byte not yet accounted for by a batch: the start
	// of the next line, or a position inside a truncated line being skipped.
	offset int64
	// skipping is set inside the rest of a truncated line.
	skipping bool
}

// limits bound one batch.
type limits struct {
	records, bytes int
}

// readResult says how a read ended.
type readResult struct {
	// eof: everything up to the end of the file was consumed except a
	// partial last line of partial bytes.
	eof     bool
	partial int
	// sawEnd: a read of the file came back short, at endAt: the file's
	// size then (at most; a file only shrinks by truncation).
	sawEnd bool
	endAt  int64
	// counts for statistics
	lines, truncated, invalid int
	nulBytes                  int64
	bytes                     int64
}

// lineReader splits files into lines and appends them to batches. One
// lineReader serves every file of a tailer, one read at a time. What a read
// left unconsumed in the buffer (the rest of the last fill when the batch
// was full, or a partial line) is used by the next read if it is of the same
// file (see use) at the same offset; otherwise it is read again from the
// file. Not safe for concurrent use.
type lineReader struct {
	codec   codec
	maxLine int    // bytes kept of a long line, a multiple of the code unit
	buf     []byte // read buffer; grows up to maxLine+unit for a long line
	scratch []byte // decoding output

	// src is the file being read (zero: none, nothing is kept). held says
	// buf[heldStart:heldEnd] are the bytes of src from heldOff on.
	src                devIno
	held               bool
	heldStart, heldEnd int
	heldOff            int64
	// asciiEnd: buf[:asciiEnd] past the current line start is known ASCII.
	asciiEnd int
	// reg holds the file's bytes from regOff on, copied into the batch's
	// arena in one piece: bodies of the lines inside it are substrings.
	reg    string
	regOff int64
}

const readBufferSize = 64 << 10

func newLineReader(enc string, maxLine int) *lineReader {
	c := newCodec(enc)
	maxLine -= maxLine % c.unit
	return &lineReader{codec: c, maxLine: maxLine, buf: make([]byte, min(readBufferSize, maxLine+c.unit))}
}

// use says which file the following reads are of; bytes held from another
// file are dropped. The zero devIno keeps nothing between reads.
func (lr *lineReader) use(id devIno) {
	if id != lr.src {
		lr.src, lr.held = id, false
	}
}

// drop forgets the bytes held: the file's content changed (truncated).
func (lr *lineReader) drop() { lr.held = false }

// read appends to b the lines of r from c.offset on, advancing c, until the
// batch reaches lim or the end of the file. A last line without a newline is
// left unread (and reported in readResult.partial) unless flush is set, in
// which case it is appended flagged Unterminated. Every record gets
// Observed=now and attrs appended. Errors name the offset; the caller adds
// the file.
func (lr *lineReader) read(r io.ReaderAt, c *cursor, b *event.Batch, lim limits, flush bool, now int64, attrs []event.KeyValue) (readResult, error) {
	var res readResult
	unit := lr.codec.unit
	bufOff := c.offset // file offset of buf[0]
	n, i := 0, 0       // valid bytes in buf; next unconsumed byte
	size := 0          // body bytes appended to b
	eof := false       // a read reached the end of the file
	if lr.held && lr.heldOff == c.offset && lr.src != (devIno{}) {
		i, n = lr.heldStart, lr.heldEnd
		bufOff = c.offset - int64(i)
	}
	lr.held = false
	lr.asciiEnd = 0
	lr.reg = ""
	// Keep what is left for the next read of the same file.
	hold := func() {
		lr.held, lr.heldStart, lr.heldEnd, lr.heldOff = lr.src != (devIno{}), i, n, bufOff+int64(i)
	}
	full := func() bool { return len(b.Records) >= lim.records || size >= lim.bytes }
	consume := func(to int) {
		res.bytes += int64(to - i)
		i = to
		c.offset = bufOff + int64(i)
	}
	for {
		// Consume whatever complete units of work buf[i:n] holds.
		for i < n {
			if c.skipping {
				j := lr.codec.index(lr.buf[i:n])
				if j < 0 {
					consume(n - (n-i)%unit)
					break
				}
				consume(i + j + unit)
				c.skipping = false
				continue
			}
			if z := lr.codec.zeros(lr.buf[i:n]); z > 0 {
				res.nulBytes += int64(z)
				consume(i + z)
				continue
			}
			j := lr.codec.index(lr.buf[i:n])
			if j < 0 && n-i < lr.maxLine+unit {
				break // an incomplete line: read more
			}
			if full() {
				hold()
				return res, nil
			}
			start := c.offset
			if j >= 0 && j <= lr.maxLine {
				lr.region(b, i, j+unit, n, start, lim.bytes-size, lim.records-len(b.Records))
				size += lr.emit(b, lr.buf[i:i+j], start, 0, now, attrs, &res, lr.ascii(i, i+j, n))
				consume(i + j + unit)
				continue
			}
			cut := lr.maxLine
			if lr.codec.checkUTF8 {
				for k := 0; k < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(lr.buf[i+cut]); k++ {
					cut--
				}
			}
			size += lr.emit(b, lr.buf[i:i+cut], start, event.Truncated, now, attrs, &res, lr.ascii(i, i+cut, n))
			res.truncated++
			if j >= 0 {
				consume(i + j + unit)
			} else {
				consume(i + cut)
				c.skipping = true
			}
		}
		if i == n && full() {
			hold()
			return res, nil
		}
		// Keep the unconsumed tail and read after it.
		if i > 0 {
			copy(lr.buf, lr.buf[i:n])
			n -= i
			bufOff += int64(i)
			lr.asciiEnd = max(lr.asciiEnd-i, 0)
			i = 0
		}
		if !eof {
			if n == len(lr.buf) {
				grown := make([]byte, min(2*len(lr.buf), lr.maxLine+unit))
				copy(grown, lr.buf[:n])
				lr.buf = grown
			}
			m, err := r.ReadAt(lr.buf[n:], bufOff+int64(n))
			n += m
			if err != nil && !errors.Is(err, io.EOF) {
				return res, fmt.Errorf("read at offset %d: %w", bufOff+int64(n), err)
			}
			// A short read is the end of the file: no second read to be told.
			eof = err != nil
			if eof {
				res.sawEnd, res.endAt = true, bufOff+int64(n)
			}
			if m > 0 {
				continue
			}
		}
		// End of file: buf[:n] is an incomplete line (or part of a skipped one).
		if n > 0 && c.skipping {
			n -= n % unit
			consume(n)
		}
		if n > 0 && !c.skipping && flush && !full() {
			size += lr.emit(b, lr.buf[:n], c.offset, event.Unterminated, now, attrs, &res, false)
			consume(n)
		}
		res.partial = n - i
		// A flush that did not fit in a full batch is still owed: not at EOF.
		res.eof = res.partial == 0 || !flush
		hold()
		return res, nil
	}
}

// asciiChunk is how far ahead of a line the ASCII check looks at once.
const asciiChunk = 4 << 10

// ascii reports whether buf[from:to] is all ASCII, checking buf ahead of to
// (up to n) in one pass so that the lines after it need no check of their
// own. Only for UTF-8 files.
func (lr *lineReader) ascii(from, to, n int) bool {
	if !lr.codec.checkUTF8 {
		return false
	}
	if to <= lr.asciiEnd {
		return true
	}
	j := max(from, lr.asciiEnd)
	end := min(n, max(to, j+asciiChunk))
	lr.asciiEnd = j + ascii.Prefix(lr.buf[j:end])
	return to <= lr.asciiEnd
}

// region copies to b's arena, unless the region already holds it, the
// line of ln bytes at buf[i:] (file offset off) and the complete lines after
// it in buf[:n], as far as the batch's remaining bytes and records are likely
// to take them: one copy for many lines. Only for UTF-8 files.
func (lr *lineReader) region(b *event.Batch, i, ln, n int, off int64, bytesLeft, recordsLeft int) {
	if !lr.codec.checkUTF8 {
		return
	}
	if off >= lr.regOff && off+int64(ln) <= lr.regOff+int64(len(lr.reg)) {
		return
	}
	end := i + ln
	if k := bytes.LastIndexByte(lr.buf[end:n], '\n'); k >= 0 {
		want := min(bytesLeft+recordsLeft*2, recordsLeft*ln*2) // line ends and a margin
		if room := b.Room(); room >= recordsLeft*ln {
			// The arena (kept from the batch's last use) likely holds the
			// rest of the batch: copy no more than fits, rather than
			// allocate a block twice its size for the margin.
			want = min(want, room)
		}
		end = max(end, min(end+k+1, i+want))
	}
	lr.reg, lr.regOff = b.Copy(lr.buf[i:end]), off
}

// emit appends one line (without its newline) and returns its body size.
// ascii says the line is known to be ASCII (no UTF-8 check needed).
func (lr *lineReader) emit(b *event.Batch, line []byte, off int64, flags event.Flags, now int64, attrs []event.KeyValue, res *readResult, ascii bool) int {
	full := line
	if off == 0 && len(lr.codec.bom) > 0 && bytes.HasPrefix(line, lr.codec.bom) {
		line = line[len(lr.codec.bom):]
	}
	// The '\r' of a "\r\n" line end goes; a line cut at the limit keeps a
	// '\r' it was cut after, which is a byte of the line, not of its end.
	switch {
	case flags&event.Truncated != 0:
	case lr.codec.unit == 1:
		if k := len(line) - 1; k >= 0 && line[k] == '\r' {
			line = line[:k]
		}
	case bytes.HasSuffix(line, lr.codec.cr):
		line = line[:len(line)-len(lr.codec.cr)]
	}
	var body string
	switch {
	case lr.codec.dec != nil:
		body = b.Copy(lr.decode(line))
	default:
		if !ascii && !utf8.Valid(line) {
			flags |= event.InvalidUTF8
			res.invalid++
		}
		// The body's file offset: off, or after a byte order mark.
		from := off + int64(cap(full)-cap(line))
		if k := from - lr.regOff; from >= lr.regOff && k+int64(len(line)) <= int64(len(lr.reg)) {
			body = lr.reg[k : k+int64(len(line))]
		} else {
			body = b.Copy(line)
		}
	}
	rec := b.Next()
	if lr.codec.dec == nil && flags&event.InvalidUTF8 == 0 {
		rec.SetValidBody(body) // checked above: ASCII or valid UTF-8
	} else {
		rec.Body = event.String(body)
	}
	rec.Observed = now
	rec.Offset = off
	rec.Flags = flags
	rec.Attrs = append(rec.Attrs, attrs...)
	res.lines++
	return len(body)
}

// decode converts line to UTF-8 in the scratch buffer. Undecodable input
// becomes U+FFFD.
func (lr *lineReader) decode(line []byte) []byte {
	if need := 2*len(line) + 8; cap(lr.scratch) < need {
		lr.scratch = make([]byte, need)
	}
	dst := lr.scratch[:cap(lr.scratch)]
	lr.codec.dec.Reset()
	nDst, _, err := lr.codec.dec.Transform(dst, line, true)
	if err != nil {
		// Cannot happen with 2x room for these encodings; keep the raw bytes.
		return line
	}
	return dst[:nDst]
}
