package jfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// maxPayload bounds a decompressed DATA payload (journald refuses entries
// beyond 768 MiB; a damaged or hostile size must not exhaust memory).
const maxPayload = 768 << 20

// decompressor decompresses DATA payloads into a buffer it reuses.
type decompressor struct {
	z   *zstd.Decoder
	out []byte
	n   [3]int // payloads decompressed: zstd, xz, lz4 (tests read it)
}

// keepBuffer bounds the buffer kept between payloads: one huge field
// (a core dump) does not hold its memory afterwards.
const keepBuffer = 4 << 20

func (d *decompressor) reuse() []byte {
	if cap(d.out) > keepBuffer {
		d.out = nil
	}
	return d.out[:0]
}

func (d *decompressor) zstd(p []byte) ([]byte, error) {
	if d.z == nil {
		z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxPayload), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		d.z = z
	}
	out, err := d.z.DecodeAll(p, d.reuse())
	if err != nil {
		return nil, fmt.Errorf("decompress zstd data: %w", err)
	}
	d.out = out
	d.n[0]++
	return out, nil
}

func (d *decompressor) xz(p []byte) ([]byte, error) {
	r, err := xz.NewReader(bytes.NewReader(p))
	if err != nil {
		return nil, fmt.Errorf("decompress xz data: %w", err)
	}
	var b bytes.Buffer
	b.Grow(4 * len(p))
	if _, err := io.Copy(&b, io.LimitReader(r, maxPayload+1)); err != nil {
		return nil, fmt.Errorf("decompress xz data: %w", err)
	}
	if b.Len() > maxPayload {
		return nil, errors.New("decompress xz data: longer than 768MiB")
	}
	d.out = append(d.reuse(), b.Bytes()...)
	d.n[1]++
	return d.out, nil
}

// lz4 decodes journald's LZ4 payload: the decompressed size (64-bit
// little endian), then one LZ4 block.
func (d *decompressor) lz4(p []byte) ([]byte, error) {
	if len(p) < 8 {
		return nil, errors.New("decompress lz4 data: shorter than its size")
	}
	size := binary.LittleEndian.Uint64(p)
	if size > maxPayload {
		return nil, fmt.Errorf("decompress lz4 data: size %d too large", size)
	}
	out := d.reuse()
	if uint64(cap(out)) < size {
		out = make([]byte, 0, size)
	}
	out, err := lz4Block(out, p[8:], int(size))
	if err != nil {
		return nil, fmt.Errorf("decompress lz4 data: %w", err)
	}
	d.out = out
	d.n[2]++
	return out, nil
}

var errLZ4 = errors.New("malformed block")

// lz4Block appends the decoding of one LZ4 block (the block format, no
// frame) to dst, which must decode to exactly size bytes.
func lz4Block(dst, src []byte, size int) ([]byte, error) {
	start := len(dst)
	i := 0
	length := func(n int) (int, bool) {
		if n != 15 {
			return n, true
		}
		for {
			if i >= len(src) {
				return 0, false
			}
			b := src[i]
			i++
			n += int(b)
			if n > size {
				return 0, false
			}
			if b != 255 {
				return n, true
			}
		}
	}
	for {
		if i >= len(src) {
			return nil, errLZ4
		}
		token := src[i]
		i++
		lit, ok := length(int(token >> 4))
		if !ok || i+lit > len(src) || len(dst)-start+lit > size {
			return nil, errLZ4
		}
		dst = append(dst, src[i:i+lit]...)
		i += lit
		if i == len(src) {
			break
		}
		if i+2 > len(src) {
			return nil, errLZ4
		}
		offset := int(src[i]) | int(src[i+1])<<8
		i += 2
		m, ok := length(int(token & 15))
		if !ok {
			return nil, errLZ4
		}
		m += 4
		if offset == 0 || offset > len(dst)-start || len(dst)-start+m > size {
			return nil, errLZ4
		}
		from := len(dst) - offset
		for k := range m {
			dst = append(dst, dst[from+k])
		}
	}
	if len(dst)-start != size {
		return nil, errLZ4
	}
	return dst, nil
}
