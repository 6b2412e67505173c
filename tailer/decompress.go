package tailer

import (
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// format is a compression format, known by a file's first bytes.
type format uint8

const (
	formatNone  format = iota // not compressed, or too short to tell
	formatGzip                // RFC 1952
	formatZstd                // RFC 8878
	formatXz                  // tukaani.org xz 1.0.4
	formatBzip2               // bzip2 (a stream of BZh blocks)
)

func (f format) String() string {
	switch f {
	case formatGzip:
		return "gzip"
	case formatZstd:
		return "zstd"
	case formatXz:
		return "xz"
	case formatBzip2:
		return "bzip2"
	}
	return "none"
}

// signatures of the formats: a file is in a format when its first bytes
// match the signature's first min bytes and any more of it that the file
// holds. bzip2's "BZh" and level digit are followed by the magic of its
// first block, or by that of the end of the stream when it is empty.
var signatures = [...]struct {
	format format
	sig    string
	min    int
}{
	{formatGzip, gzipMagic, len(gzipMagic)},
	{formatZstd, "\x28\xb5\x2f\xfd", 4},
	{formatXz, "\xfd7zXZ\x00", 6},
	{formatBzip2, "BZh?\x31\x41\x59\x26\x53\x59", 4},
	{formatBzip2, "BZh?\x17\x72\x45\x38\x50\x90", 4},
}

// magicLen is how many first bytes formatOf looks at, at most.
const magicLen = 10

// formatOf tells from a file's first bytes (head, at least magicLen of
// them when the file has that many) whether it is compressed, and in which
// format. A head too short to tell is not compressed (yet).
func formatOf(head []byte) format {
	for _, s := range signatures {
		n := min(len(head), len(s.sig))
		if n < s.min {
			continue
		}
		ok := true
		for i := range n {
			if s.sig[i] == '?' {
				ok = head[i] >= '1' && head[i] <= '9' // bzip2's block size level
			} else {
				ok = head[i] == s.sig[i]
			}
			if !ok {
				break
			}
		}
		if ok {
			return s.format
		}
	}
	return formatNone
}

// maxZstdWindow bounds the history a zstd frame may ask the decoder to
// keep: 128 MiB, what the zstd command decompresses without --memory (its
// levels up to --ultra -22 and --long stay within it). A frame asking for
// more is an error.
const maxZstdWindow = 1 << 27

// decoder decompresses one format from a source. The gzip and zstd
// decoders are kept and reset for each restart; xz and bzip2 have no reset
// and are made anew (a restart is rare: a read before the position, or a
// stream that was cut short and grew).
type decoder struct {
	zr *gzip.Reader
	zd *zstd.Decoder
	r  io.Reader // the current decompressor
}

// reset starts decompressing src, in format f, from its start. An error
// reading the header is returned as it is (io.ErrUnexpectedEOF for a header
// cut short).
func (d *decoder) reset(f format, src *source) error {
	d.r = nil
	var err error
	switch f {
	case formatGzip:
		if d.zr == nil {
			d.zr, err = gzip.NewReader(src)
		} else {
			err = d.zr.Reset(src)
		}
		if err == nil {
			d.r = d.zr
		}
	case formatZstd:
		if d.zd == nil {
			d.zd, err = zstd.NewReader(nil,
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderConcurrency(1), // decodes in the caller's goroutine
				zstd.WithDecoderMaxWindow(maxZstdWindow),
			)
			if err != nil {
				return err
			}
		}
		if err = d.zd.Reset(src); err == nil {
			d.r = d.zd
		}
	case formatXz:
		var xr *xz.Reader
		if xr, err = xz.NewReader(src); err == nil {
			d.r = xr
		}
	case formatBzip2:
		d.r = bzip2.NewReader(src)
	default:
		return io.ErrUnexpectedEOF // too short to tell the format
	}
	return err
}

// source reads a compressed file from its start for a decoder, through a
// buffer (the decoders read a byte at a time). It notes when a read ran
// into the end of the bytes the file holds: a decoder's "unexpected EOF"
// then means a stream cut short, and otherwise corrupt data.
type source struct {
	f    *os.File
	buf  []byte
	r, w int   // buf[r:w] is unread
	off  int64 // file offset of buf[w]
	eof  bool  // a read found no more bytes in the file
}

const sourceBuf = 32 << 10

func (s *source) reset(f *os.File) {
	if s.buf == nil {
		s.buf = make([]byte, sourceBuf)
	}
	s.f, s.r, s.w, s.off, s.eof = f, 0, 0, 0, false
}

// pos is the offset in the file of the next byte the decoder reads.
func (s *source) pos() int64 { return s.off - int64(s.w-s.r) }

func (s *source) fill() error {
	n, err := s.f.ReadAt(s.buf, s.off)
	s.r, s.w = 0, n
	s.off += int64(n)
	if n > 0 {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		s.eof = true
		return io.EOF
	}
	return err
}

func (s *source) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.r == s.w {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf[s.r:s.w])
	s.r += n
	return n, nil
}

func (s *source) ReadByte() (byte, error) {
	if s.r == s.w {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	c := s.buf[s.r]
	s.r++
	return c, nil
}

// xzEnded reports whether the bytes of f before end finish with an xz
// stream footer (after any stream padding). The xz decoder takes a stream
// cut short just after its header or inside a block header for the end of
// the input; the footer tells.
func xzEnded(f *os.File, end int64) bool {
	var b [12]byte
	for end >= 24 { // a stream header and footer at least
		if _, err := f.ReadAt(b[:4], end-4); err != nil {
			return false
		}
		if b[0]|b[1]|b[2]|b[3] == 0 { // stream padding
			end -= 4
			continue
		}
		if _, err := f.ReadAt(b[:], end-12); err != nil {
			return false
		}
		return b[10] == 'Y' && b[11] == 'Z' &&
			crc32.ChecksumIEEE(b[4:10]) == binary.LittleEndian.Uint32(b[:4])
	}
	return false
}

// decompressedSize returns the size of a compressed file's content when
// its format records it and tells it cheaply: zstd frames whose headers
// give their content size (the zstd command writes it when it knows the
// input's size; not when it compresses a pipe). It returns false otherwise:
// other formats (gzip's trailer has the size modulo 2^32 of its last member
// only, see gzipSize), a frame without its size, a file cut short or not
// compressed; the caller then decompresses to know.
func decompressedSize(fd *os.File) (int64, bool) {
	var head [magicLen]byte
	n, _ := fd.ReadAt(head[:], 0)
	if formatOf(head[:n]) != formatZstd {
		return 0, false
	}
	st, err := fd.Stat()
	if err != nil {
		return 0, false
	}
	return zstdSize(fd, st.Size())
}

// zstdSize adds up the content sizes the frame headers of a zstd file of
// size bytes record, walking the frames by their block headers (a read of
// 3 bytes per block of up to 128 KiB). It returns false when a frame does
// not record its size or the frames do not end exactly at size.
func zstdSize(fd *os.File, size int64) (int64, bool) {
	var total int64
	var buf [zstd.HeaderMaxSize]byte
	off := int64(0)
	for off < size {
		n, _ := fd.ReadAt(buf[:], off)
		var h zstd.Header
		if err := h.Decode(buf[:n]); err != nil {
			return 0, false
		}
		if h.Skippable {
			off += int64(h.HeaderSize) + int64(h.SkippableSize)
			continue
		}
		if !h.HasFCS {
			return 0, false
		}
		total += int64(h.FrameContentSize)
		off += int64(h.HeaderSize)
		for last := false; !last; {
			var bh [3]byte
			if n, _ := fd.ReadAt(bh[:], off); n < 3 {
				return 0, false
			}
			v := uint32(bh[0]) | uint32(bh[1])<<8 | uint32(bh[2])<<16
			last = v&1 == 1
			bsize := int64(v >> 3)
			switch (v >> 1) & 3 {
			case 1: // RLE: one byte repeated
				bsize = 1
			case 3:
				return 0, false // reserved: corrupt
			}
			off += 3 + bsize
		}
		if h.HasCheckSum {
			off += 4
		}
	}
	if off != size {
		return 0, false
	}
	return total, true
}
