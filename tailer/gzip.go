package tailer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Compression settings (Options.Compression).
const (
	CompressionNone = "none" // compressed files are skipped (default)
	CompressionGzip = "gzip" // files named *.gz that are compressed are read decompressed
	CompressionAuto = "auto" // any compressed file (gzip, zstd, xz, bzip2 by its magic bytes) is read decompressed
)

// readsGzip reports whether a compressed file at path is read decompressed.
// The name is from when gzip was the only format.
func (o *Options) readsGzip(path string) bool {
	switch o.Compression {
	case CompressionAuto:
		return true
	case CompressionGzip:
		return strings.HasSuffix(path, ".gz")
	}
	return false
}

// gzReader reads the decompressed content of a compressed file (gzip, zstd,
// xz or bzip2: its format, known by its first bytes), a complete file read
// once (a rotated log compressed by logrotate, an archive): offsets are in
// decompressed bytes. It serves reads at increasing offsets by
// decompressing on; a read before the position decompresses again from the
// start. A stream cut short (the file still being written) reads as the end
// of the file for now; the next read starts over and skips what was read.
// The file's lines go through its own lineReader (lr), which keeps what is
// left of each read for the next, so that reads only move forward.
//
// The name is from when gzip was the only format.
type gzReader struct {
	f        *os.File
	format   format // known at the first restart
	src      source
	dec      decoder
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
	g.src.reset(g.f)
	if g.format == formatNone {
		var head [magicLen]byte
		n, _ := g.f.ReadAt(head[:], 0)
		g.format = formatOf(head[:n])
	}
	return g.dec.reset(g.format, &g.src)
}

// ReadAt reads decompressed bytes at off. io.EOF with the bytes read means
// the end of what can be decompressed now; complete says whether that is the
// end of the stream.
func (g *gzReader) ReadAt(p []byte, off int64) (int, error) {
	if g.dec.r == nil || g.broken || off < g.pos {
		if err := g.restart(); err != nil {
			g.broken = true // no complete header yet, or corrupt
			if g.format == formatNone || g.src.eof && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("decompress %s: %w", g.format, err)
		}
	}
	if off > g.pos {
		n, err := io.CopyN(io.Discard, g.dec.r, off-g.pos)
		g.pos += n
		if err != nil {
			return 0, g.fail(err)
		}
	}
	total := 0
	for total < len(p) {
		n, err := g.dec.r.Read(p[total:])
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
// short: the decompressor wanted more than the file holds); an error for
// corrupt data.
func (g *gzReader) fail(err error) error {
	g.broken = true
	switch {
	case errors.Is(err, io.EOF):
		if g.format == formatXz && !xzEnded(g.f, g.src.pos()) {
			return io.EOF // cut short where the xz decoder takes it for the end
		}
		g.broken, g.complete = false, true
		return io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF) && g.src.eof:
		return io.EOF
	}
	return fmt.Errorf("decompress %s at %d: %w", g.format, g.pos, err)
}

// size returns the decompressed size of the file: from its trailer or
// headers when its format records it (gzipSize for gzip, decompressedSize),
// else by decompressing it to its end. It returns false for a stream cut
// short or corrupt. It moves the reader's position: for a file about to be
// closed.
func (g *gzReader) size() (int64, bool) {
	if n, ok := decompressedSize(g.f); ok {
		return n, true
	}
	if isize, ok := gzipSize(g.f); ok {
		return int64(isize), true
	}
	if g.dec.r == nil || g.broken {
		if err := g.restart(); err != nil {
			g.broken = true
			return 0, false
		}
	}
	n, err := io.Copy(io.Discard, g.dec.r)
	g.pos += n
	if err != nil {
		g.fail(err)
		return 0, false
	}
	g.broken, g.complete = false, true // io.Copy's nil is the decoder's io.EOF
	if g.format == formatXz && !xzEnded(g.f, g.src.pos()) {
		g.broken, g.complete = true, false
		return 0, false
	}
	return g.pos, true
}

// readTo reports whether off, a checkpoint of the compressed file fd, is
// at its end, when its format tells that without decompressing (gzip's
// trailer, modulo 2^32; zstd frame headers); false when it is not or
// cannot tell (the file is then decompressed up to off, and read on).
func readTo(fd *os.File, off int64) bool {
	if n, ok := decompressedSize(fd); ok {
		return off == n
	}
	isize, ok := gzipSize(fd)
	return ok && uint32(off) == isize
}

// gzipSize returns the decompressed size a gzip file's trailer records
// (modulo 2^32, of its last member); false for a file of another format.
func gzipSize(f *os.File) (uint32, bool) {
	st, err := f.Stat()
	if err != nil || st.Size() < 18 {
		return 0, false
	}
	var b [len(gzipMagic)]byte
	if n, _ := f.ReadAt(b[:], 0); n < len(b) || string(b[:]) != gzipMagic {
		return 0, false
	}
	var t [4]byte
	if n, _ := f.ReadAt(t[:], st.Size()-4); n < 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(t[:]), true
}
