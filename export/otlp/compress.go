package otlp

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// zstdWindow is the zstd encoder's window: how far back a match may be.
const zstdWindow = 256 << 10

// maxResponseBytes bounds a decompressed response body; an OTLP response is
// a few hundred bytes.
const maxResponseBytes = 4 << 20

// codec compresses requests and decompresses responses with one algorithm.
// It is safe for concurrent use.
type codec struct {
	name string
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	// free holds one compressor for each request that may be compressed at
	// once, and so bounds how many exist (zstd's encoder keeps as many
	// states): more of them than there are CPUs to run them buy nothing,
	// and each holds about 0.85 MiB of tables, gzip's or zstd's. A list
	// rather than a sync.Pool: a pool is emptied by the garbage collector,
	// which runs several times a second under load, and a gzip writer was
	// made again each time (21 MB allocated for 8.9 M lines).
	free chan *compressor
}

// compressor is the state of one compression: a gzip writer and the
// buffer its output goes to, or zstd's input joined.
type compressor struct {
	gz  *gzip.Writer
	out []byte // where gz writes, during appendCompressed
	in  []byte // zstd: the pieces of a request, joined
}

// Write appends p to c.out: the gzip writer's destination.
func (c *compressor) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

// newCodec returns the codec called name ("gzip", "zstd"), or nil for
// "none", compressing up to concurrency requests at once, and no more than
// GOMAXPROCS.
func newCodec(name string, concurrency int) (*codec, error) {
	if name == "none" || name == "" {
		return nil, nil
	}
	n := min(max(concurrency, 1), runtime.GOMAXPROCS(0))
	c := &codec{name: name, free: make(chan *compressor, n)}
	switch name {
	case "gzip":
	case "zstd":
		var err error
		// No frame checksum: the transport has its own, and it costs about
		// 5 % of the compression time. Lower memory: the same ratio on
		// requests of 1,000 records, smaller tables per encoder. A window of
		// 256 KiB rather than 8 MiB: an encoder's history is sized by it
		// (4.7 MiB of heap per encoder after one request of 1,000 plain
		// records, 0.8 MiB with 256 KiB), and the fastest level finds
		// next to nothing further back (the same 29,930 bytes out of
		// 163,042 either way).
		c.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(n), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true),
			zstd.WithWindowSize(zstdWindow))
		if err != nil {
			return nil, fmt.Errorf("create zstd encoder: %w", err)
		}
		c.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxResponseBytes))
		if err != nil {
			c.zenc.Close()
			return nil, fmt.Errorf("create zstd decoder: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown compression %q", name)
	}
	for range n {
		c.free <- new(compressor)
	}
	return c, nil
}

// compressRequest encodes the request of batches, some of them encoded
// ahead as parts (see export.PartEncoder), and compresses it into a buffer
// of bufs. When every batch has its part, the parts are compressed one
// after the other rather than copied into one buffer first. It returns the
// compressed request, its size before compression and how many strings
// had their invalid UTF-8 replaced (parts counted theirs when made). The
// parts are released to partBufs on success and kept on an error.
func (c *codec) compressRequest(bufs, partBufs *bufferPool, batches []*event.Batch, parts []export.Part) (zp *[]byte, encoded, invalid int, err error) {
	var buf [8][]byte
	pieces := buf[:0]
	var e *encoder
	if len(parts) > 0 && !slices.Contains(parts, nil) {
		for _, p := range parts {
			pieces = append(pieces, p.(*encoder).request())
		}
	} else {
		e = bufs.encode(batches, parts)
		invalid = e.invalid
		pieces = append(pieces, e.request())
	}
	for _, p := range pieces {
		encoded += len(p)
	}
	zp = bufs.get()
	*zp, err = c.appendCompressed(*zp, pieces...)
	if e != nil {
		bufs.release(e)
	}
	if err != nil {
		bufs.put(zp)
		return nil, 0, 0, err
	}
	partBufs.releaseParts(parts)
	return zp, encoded, invalid, nil
}

// appendCompressed appends the concatenation of pieces, compressed, to
// dst.
func (c *codec) appendCompressed(dst []byte, pieces ...[]byte) ([]byte, error) {
	z := <-c.free
	defer func() { c.free <- z }()
	if c.zenc != nil {
		p := pieces[0]
		if len(pieces) > 1 {
			// EncodeAll reads one buffer.
			z.in = z.in[:0]
			for _, p := range pieces {
				z.in = append(z.in, p...)
			}
			p = z.in
			if cap(z.in) > maxPooledBuffer {
				z.in = nil
			}
		}
		return c.zenc.EncodeAll(p, dst), nil
	}
	z.out = dst
	if z.gz == nil {
		// Level 1: about twice as fast as level 6 for a ratio a little lower
		// (research/libraries.md, 3.4).
		z.gz, _ = gzip.NewWriterLevel(z, gzip.BestSpeed)
	} else {
		z.gz.Reset(z)
	}
	var err error
	for _, p := range pieces {
		if _, err = z.gz.Write(p); err != nil {
			break
		}
	}
	if cerr := z.gz.Close(); err == nil {
		err = cerr
	}
	dst, z.out = z.out, nil
	return dst, err
}

// decompress reads all of r, compressed, up to maxResponseBytes.
func (c *codec) decompress(r io.Reader) ([]byte, error) {
	if c.zdec != nil {
		in, err := io.ReadAll(io.LimitReader(r, maxResponseBytes))
		if err != nil {
			return nil, err
		}
		return c.zdec.DecodeAll(in, nil)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, io.LimitReader(zr, maxResponseBytes)); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (c *codec) close() {
	if c == nil {
		return
	}
	if c.zenc != nil {
		c.zenc.Close()
		c.zdec.Close()
	}
}

// maxPooledBuffer keeps a buffer grown by one huge request out of the pools.
const maxPooledBuffer = 16 << 20

// bufferPool recycles encoders, each with the buffer its last request was
// written in, and buffers for compressed requests. Safe for concurrent use.
//
// Encoders go first to a free list of one per request that can be in
// flight, plus the one waiting for a sender: a sync.Pool alone keeps an
// encoder released on one P out of reach of a Get on another (its private
// slot), and a fourth 512 KiB encoder appeared under load. Those beyond
// the list go to the sync.Pool, which frees them when idle.
type bufferPool struct {
	free    chan *encoder
	p, encs sync.Pool
}

func newBufferPool(inFlight int) bufferPool {
	return bufferPool{free: make(chan *encoder, max(inFlight, 1)+1)}
}

// encode writes the request for batches with a pooled encoder and returns
// the encoder: the request is e.request() (not copied anywhere else), valid
// until release(e). parts, if not nil, are batches encoded ahead (see
// encoder.encodeParts), copied; the caller releases them (releaseParts).
func (p *bufferPool) encode(batches []*event.Batch, parts []export.Part) *encoder {
	e := p.take()
	if parts == nil {
		e.encode(batches)
	} else {
		e.encodeParts(batches, parts)
	}
	return e
}

// releaseParts returns parts made by p.part (nil ones skipped) to p.
func (p *bufferPool) releaseParts(parts []export.Part) {
	for _, part := range parts {
		if part != nil {
			p.release(part.(*encoder))
		}
	}
}

// partsPooled is how many encoders of parts a client keeps on its free
// list: enough for the queue's input and for the requests being grouped,
// waiting and in flight, each taken as four parts (the 250-record batches
// of the tailer in a request of 1,000 records).
func partsPooled(q export.BufferOptions) int {
	return q.Size + 4*(q.InFlight+2)
}

// partOf encodes b alone with an encoder of parts, counting the strings
// whose invalid UTF-8 it replaced in invalid (see export.PartEncoder).
func partOf(parts *bufferPool, b *event.Batch, invalid *atomic.Int64) export.Part {
	e := parts.part(b)
	if e.invalid > 0 {
		invalid.Add(int64(e.invalid))
	}
	return e
}

// part encodes b alone with a pooled encoder (see export.PartEncoder).
func (p *bufferPool) part(b *event.Batch) *encoder {
	e := p.take()
	one := [1]*event.Batch{b}
	e.encode(one[:])
	return e
}

func (p *bufferPool) take() *encoder {
	select {
	case e := <-p.free:
		return e
	default:
	}
	e, _ := p.encs.Get().(*encoder)
	if e == nil {
		e = new(encoder)
	}
	return e
}

func (p *bufferPool) release(e *encoder) {
	// A buffer grown by a burst is dropped once requests are much smaller,
	// so that a quiet agent does not keep it on the free list.
	if n := cap(e.buf); n > maxPooledBuffer || (n > 64<<10 && n > 4*e.written()) {
		e.buf = nil
	}
	select {
	case p.free <- e:
	default:
		p.encs.Put(e)
	}
}

func (p *bufferPool) get() *[]byte {
	bp, _ := p.p.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = (*bp)[:0]
	return bp
}

func (p *bufferPool) put(bp *[]byte) {
	if cap(*bp) <= maxPooledBuffer {
		p.p.Put(bp)
	}
}

// grpcCompressor and grpcDecompressor adapt a codec to gRPC's
// per-connection compressor options, which need no process-wide
// registration. Requests are compressed once, when they are encoded
// (GRPCClient.encode), so that every attempt sends the same bytes and only
// the compressed copy waits for the answer; grpcCompressor hands them on.
type grpcCompressor struct{ c *codec }

// Do writes p, a request already compressed, to w in writes of at most
// writeChunk bytes. w is gRPC's writer, which copies every write into a
// buffer of its own: one write of more than 32 KiB takes a 1 MiB buffer.
func (g grpcCompressor) Do(w io.Writer, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), writeChunk)
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (g grpcCompressor) Type() string { return g.c.name }

// writeChunk is the most grpcCompressor hands gRPC at once: the payload of
// one HTTP/2 frame as gRPC sends them, and a size its buffer pool keeps.
const writeChunk = 16 << 10

type grpcDecompressor struct{ c *codec }

func (g grpcDecompressor) Do(r io.Reader) ([]byte, error) { return g.c.decompress(r) }
func (g grpcDecompressor) Type() string                   { return g.c.name }
