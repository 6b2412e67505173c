package otlp

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// maxResponseBytes bounds a decompressed response body; an OTLP response is
// a few hundred bytes.
const maxResponseBytes = 4 << 20

// codec compresses requests and decompresses responses with one algorithm.
// It is safe for concurrent use.
type codec struct {
	name string
	gz   sync.Pool // *gzip.Writer
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	bufs sync.Pool // *[]byte scratch for zstd output
	// slots bounds how many requests are compressed at once, and so how
	// many compressors exist: more of them than there are CPUs to run them
	// buy nothing, and each zstd encoder holds about 2.5 MiB (four requests
	// in flight on two CPUs: 27.8 MiB peak RSS unbounded, 22.8 bounded).
	slots chan struct{}
}

// newCodec returns the codec called name ("gzip", "zstd"), or nil for
// "none", compressing up to concurrency requests at once, and no more than
// GOMAXPROCS.
func newCodec(name string, concurrency int) (*codec, error) {
	if name == "none" || name == "" {
		return nil, nil
	}
	n := min(max(concurrency, 1), runtime.GOMAXPROCS(0))
	c := &codec{name: name, slots: make(chan struct{}, n)}
	switch name {
	case "gzip":
	case "zstd":
		var err error
		// No frame checksum: the transport has its own, and it costs about
		// 5 % of the compression time. Lower memory: the same ratio on
		// requests of 1,000 records, smaller tables per encoder.
		c.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(n), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
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
	return c, nil
}

// compressTo writes p compressed to w.
func (c *codec) compressTo(w io.Writer, p []byte) error {
	c.slots <- struct{}{}
	defer func() { <-c.slots }()
	if c.zenc != nil {
		bp, _ := c.bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		*bp = c.zenc.EncodeAll(p, (*bp)[:0])
		_, err := w.Write(*bp)
		if cap(*bp) <= maxPooledBuffer {
			c.bufs.Put(bp)
		}
		return err
	}
	zw, _ := c.gz.Get().(*gzip.Writer)
	if zw == nil {
		// Level 1: about twice as fast as level 6 for a ratio a little lower
		// (research/libraries.md, 3.4).
		zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
	} else {
		zw.Reset(w)
	}
	_, err := zw.Write(p)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	c.gz.Put(zw)
	return err
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

// grpcCompressor and grpcDecompressor adapt a codec to gRPC's per-connection
// compressor options, which need no process-wide registration.
type grpcCompressor struct{ c *codec }

func (g grpcCompressor) Do(w io.Writer, p []byte) error { return g.c.compressTo(w, p) }
func (g grpcCompressor) Type() string                   { return g.c.name }

type grpcDecompressor struct{ c *codec }

func (g grpcDecompressor) Do(r io.Reader) ([]byte, error) { return g.c.decompress(r) }
func (g grpcDecompressor) Type() string                   { return g.c.name }
