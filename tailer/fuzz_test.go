package tailer

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/logpump/logpump/event"
)

type fuzzRecord struct {
	body   string
	offset int64
	flags  event.Flags
}

func fuzzRead(t *testing.T, data []byte, maxLine, batch int, whole bool) ([]fuzzRecord, cursor, readResult) {
	var r = readerAts["onebyte"](data)
	if whole {
		r = bytes.NewReader(data)
	}
	lr := newLineReader("utf-8", maxLine)
	lr.use(devIno{1, 1}) // bytes left by one read are used by the next
	var c cursor
	var pool event.Pool
	var out []fuzzRecord
	for range len(data) + 2 {
		b := pool.Get()
		res, err := lr.read(r, &c, b, limits{records: batch, bytes: 1 << 20}, false, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range b.Records {
			out = append(out, fuzzRecord{strings.Clone(rec.Body.Str), rec.Offset, rec.Flags})
		}
		b.Done()
		if res.eof {
			return out, c, res
		}
	}
	t.Fatal("no end of file")
	return nil, c, readResult{}
}

// FuzzReadLines checks the line splitter against the bytes it was given:
// every record is a piece of the input at its offset, bounded by the line
// limit, in order; what is not consumed is only a last partial line; and
// how the bytes arrive (all at once or one per read, any batch size) does
// not change the result.
func FuzzReadLines(f *testing.F) {
	f.Add([]byte("one\ntwo\r\nthree"), uint8(16), uint8(2))
	f.Add([]byte("\x00\x00\x00x\n\xef\xbb\xbfbom\n"), uint8(16), uint8(1))
	f.Add([]byte(strings.Repeat("long", 20)+"\nshort\n"), uint8(16), uint8(3))
	f.Add([]byte("aaaaaaaaaaaaaa\u00e9\u00e9\n"), uint8(16), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, max, batch uint8) {
		maxLine := 16 + int(max)
		bs := 1 + int(batch)%8
		got, c, res := fuzzRead(t, data, maxLine, bs, true)
		again, c2, _ := fuzzRead(t, data, maxLine, 1000, false)
		if len(got) != len(again) || c != c2 {
			t.Fatalf("reading one byte at a time gave %d records to %+v, at once %d to %+v", len(again), c2, len(got), c)
		}
		for i := range got {
			if got[i] != again[i] {
				t.Fatalf("record %d differs: %+v vs %+v", i, got[i], again[i])
			}
		}
		if !c.skipping && c.offset+int64(res.partial) != int64(len(data)) {
			t.Fatalf("consumed %d + partial %d of %d bytes", c.offset, res.partial, len(data))
		}
		if res.partial > 0 && bytes.IndexByte(data[c.offset:], '\n') >= 0 {
			t.Fatalf("partial tail %q holds a newline", data[c.offset:])
		}
		prev := int64(-1)
		for _, r := range got {
			if r.offset <= prev || r.offset >= c.offset {
				t.Fatalf("offset %d after %d, consumed %d", r.offset, prev, c.offset)
			}
			prev = r.offset
			if len(r.body) > maxLine {
				t.Fatalf("body of %d bytes over the %d limit", len(r.body), maxLine)
			}
			src := data[r.offset:]
			if r.offset == 0 {
				src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
			}
			if !bytes.HasPrefix(src, []byte(r.body)) {
				t.Fatalf("body %q is not the input at %d", r.body, r.offset)
			}
			if invalid := r.flags&event.InvalidUTF8 != 0; invalid == utf8.ValidString(r.body) {
				t.Fatalf("body %q flagged invalid UTF-8: %v", r.body, invalid)
			}
			if r.flags&event.Truncated != 0 {
				if len(r.body) < maxLine-3 {
					t.Fatalf("truncated body of %d bytes, limit %d", len(r.body), maxLine)
				}
				continue
			}
			rest := src[len(r.body):]
			if !bytes.HasPrefix(rest, []byte("\n")) && !bytes.HasPrefix(rest, []byte("\r\n")) {
				t.Fatalf("body %q at %d not followed by a line end", r.body, r.offset)
			}
			if bytes.IndexByte([]byte(r.body), '\n') >= 0 {
				t.Fatalf("body %q holds a newline", r.body)
			}
		}
	})
}

// FuzzFingerprint checks file identity by content: a fingerprint matches its
// file and any longer file with the same start, and never a file whose first
// bytes differ or that is shorter.
func FuzzFingerprint(f *testing.F) {
	f.Add([]byte("2026-01-01 first line\n"), []byte("more\n"), uint16(1024), uint16(3))
	f.Add([]byte{}, []byte("x"), uint16(16), uint16(0))
	f.Fuzz(func(t *testing.T, data, more []byte, size, flip uint16) {
		n := 16 + int(size)%2048
		buf := make([]byte, n)
		fp, err := fingerprint(bytes.NewReader(data), n, buf)
		if err != nil {
			t.Fatal(err)
		}
		if fp.Len != min(n, len(data)) {
			t.Fatalf("fingerprint length %d, want %d", fp.Len, min(n, len(data)))
		}
		grown := append(bytes.Clone(data), more...)
		for _, file := range [][]byte{data, grown} {
			if same, err := sameStart(bytes.NewReader(file), fp, buf); err != nil || !same {
				t.Fatalf("sameStart of a file with the same start = %v, %v", same, err)
			}
		}
		if fp.Len == 0 {
			return
		}
		changed := bytes.Clone(grown)
		changed[int(flip)%fp.Len] ^= 0x01
		if same, _ := sameStart(bytes.NewReader(changed), fp, buf); same {
			t.Fatalf("a changed byte at %d was not noticed", int(flip)%fp.Len)
		}
		if same, _ := sameStart(bytes.NewReader(data[:fp.Len-1]), fp, buf); same {
			t.Fatal("a shorter file matched")
		}
	})
}
