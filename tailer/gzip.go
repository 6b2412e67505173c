package tailer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Compression settings (Options.Compression).
const (
	CompressionNone = "none" // gzip files are skipped (default)
	CompressionGzip = "gzip" // files named *.gz that are gzip are read decompressed
	CompressionAuto = "auto" // any gzip file (by its magic bytes) is read decompressed
)

// readsGzip reports whether a gzip file at path is read decompressed.
func (o *Options) readsGzip(path string) bool {
	switch o.Compression {
	case CompressionAuto:
		return true
	case CompressionGzip:
		return strings.HasSuffix(path, ".gz")
	}
	return false
}

// gzReader reads the decompressed content of a gzip file, a complete file
// read once (a rotated log compressed by logrotate, an archive): offsets are
// in decompressed bytes. It serves reads at increasing offsets by
// decompressing on; a read before the position decompresses again from the
// start. A stream cut short (the file still being written) reads as the end
// of the file for now; the next read starts over and skips what was read.
// The file's lines go through its own lineReader (lr), which keeps what is
// left of each read for the next, so that reads only move forward.
type gzReader struct {
	f        *os.File
	zr       *gzip.Reader
	pos      int64
	broken   bool // the decompressor must start over
	complete bool // the stream ended cleanly at pos
	lr       *lineReader
}

func newGzReader(f *os.File, o *Options, id devIno) *gzReader {
	lr := newLineReader(o.Encoding, int(o.MaxLineBytes))
	lr.use(id)
	return &gzReader{f: f, lr: lr}
}

func (g *gzReader) restart() error {
	g.pos, g.broken, g.complete = 0, false, false
	src := io.NewSectionReader(g.f, 0, 1<<62)
	if g.zr == nil {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return err
		}
		g.zr = zr
		return nil
	}
	return g.zr.Reset(src)
}

// ReadAt reads decompressed bytes at off. io.EOF with the bytes read means
// the end of what can be decompressed now; complete says whether that is the
// end of the stream.
func (g *gzReader) ReadAt(p []byte, off int64) (int, error) {
	if g.zr == nil || g.broken || off < g.pos {
		if err := g.restart(); err != nil {
			g.broken = true // no complete header yet, or not gzip
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("decompress: %w", err)
		}
	}
	if off > g.pos {
		n, err := io.CopyN(io.Discard, g.zr, off-g.pos)
		g.pos += n
		if err != nil {
			return 0, g.fail(err)
		}
	}
	total := 0
	for total < len(p) {
		n, err := g.zr.Read(p[total:])
		total += n
		g.pos += int64(n)
		if err != nil {
			return total, g.fail(err)
		}
	}
	return total, nil
}

// fail turns a decompression error into what ReadAt returns: io.EOF for
// the end of the stream (complete) or of the bytes there are so far (cut
// short); an error for corrupt data.
func (g *gzReader) fail(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		g.complete = true
		return io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		g.broken = true
		return io.EOF
	}
	g.broken = true
	return fmt.Errorf("decompress: %w", err)
}

// gzipSize returns the decompressed size a gzip file's trailer records
// (modulo 2^32, of its last member).
func gzipSize(f *os.File) (uint32, bool) {
	st, err := f.Stat()
	if err != nil || st.Size() < 18 {
		return 0, false
	}
	var b [4]byte
	if n, _ := f.ReadAt(b[:], st.Size()-4); n < 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[:]), true
}
