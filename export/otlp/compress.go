package otlp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
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
//
// A gzip request is compressed as a sequence of segments, each compressed
// on its own: a batch encoded ahead is compressed at once (see codec.part),
// and only its compressed bytes wait for its request; a run of batches that
// were not is compressed when its request is made. A segment is a run of
// deflate blocks that ends on a byte boundary (a sync flush) and refers to
// nothing before it, and one gzip member holds them one after the other
// (RFC 1951: a stream is any sequence of blocks): a receiver decompresses
// the request as any other. Deflate looks back 32 KiB only, so segments of
// a few tens of KiB cost little ratio (3.7 % more bytes for 1,000 plain
// records in four segments, 2.1 % for parsed JSON).
//
// A zstd request is compressed whole, as one frame, when it is made: zstd
// finds matches further back, and in four frames of 250 parsed JSON records
// the same request took 11 % more bytes and 22 % more time.
type codec struct {
	name string
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	// free holds one compressor for each segment that may be compressed at
	// once, and so bounds how many exist (zstd's encoder keeps as many
	// states): more of them than there are CPUs to run them buy nothing,
	// and each holds about 0.85 MiB of tables, deflate's or zstd's. A list
	// rather than a sync.Pool: a pool is emptied by the garbage collector,
	// which runs several times a second under load, and a writer was made
	// again each time (21 MB allocated for 8.9 M lines).
	free chan *compressor
	// gzip only: zparts recycles compressed parts with their buffers, as
	// bufferPool recycles encoders, and pending holds a token for each part
	// being compressed (codec.part).
	zparts  chan *zpart
	pending chan struct{}
}

// compressor is the state of one compression: a deflate writer and the
// buffer its output goes to, or zstd's input joined.
type compressor struct {
	fw  *flate.Writer
	out []byte // where fw writes, during appendSegment
	in  []byte // zstd: the parts of a request, joined
}

// Write appends p to c.out: the deflate writer's destination.
func (c *compressor) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

// zpart is a batch encoded ahead and compressed at once: one segment of a
// gzip request to come (see codec).
type zpart struct {
	z   []byte // the segment
	n   int    // bytes before compression
	crc uint32 // CRC-32 (IEEE) of those bytes
	// records in the segment, set before the part is handed over
	records int
	// ready receives once, when the fields above are written (codec.part).
	ready chan struct{}
}

// newCodec returns the codec called name ("gzip", "zstd"), or nil for
// "none", for a queue of options q: it compresses up to q.InFlight segments
// at once, and no more than GOMAXPROCS.
func newCodec(name string, q export.BufferOptions) (*codec, error) {
	if name == "none" || name == "" {
		return nil, nil
	}
	n := min(max(q.InFlight, 1), runtime.GOMAXPROCS(0))
	c := &codec{name: name, free: make(chan *compressor, n)}
	switch name {
	case "gzip":
		c.zparts, c.pending = make(chan *zpart, partsPooled(q)), make(chan struct{}, n)
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

// part encodes b alone with an encoder of parts, counting the strings whose
// invalid UTF-8 it replaced in invalid, and compresses it with gzip on a
// goroutine of its own (see export.PartEncoder): a batch waiting for its
// request holds a fifth to a seventh of the bytes it would hold encoded,
// and the caller (the source's goroutine) reads on while the part is
// compressed on another CPU. No more than cap(c.pending) parts wait to be
// compressed at once; beyond that part blocks. The part is read once ready
// (stream.add).
func (c *codec) part(parts *bufferPool, b *event.Batch, invalid *atomic.Int64) export.Part {
	e := parts.part(b)
	if e.invalid > 0 {
		invalid.Add(int64(e.invalid))
	}
	var zp *zpart
	select {
	case zp = <-c.zparts:
	default:
		zp = &zpart{ready: make(chan struct{}, 1)}
	}
	zp.records = e.records
	c.pending <- struct{}{}
	go func() {
		req := e.request()
		zp.z, zp.n, zp.crc = c.appendSegment(zp.z[:0], req), len(req), crc32.ChecksumIEEE(req)
		parts.release(e)
		<-c.pending
		zp.ready <- struct{}{}
	}()
	return zp
}

// releaseParts returns parts made by c.part (nil ones skipped) for reuse.
func (c *codec) releaseParts(parts []export.Part) {
	for _, p := range parts {
		zp, _ := p.(*zpart)
		if zp == nil {
			continue
		}
		if n := cap(zp.z); n > maxPooledBuffer || (n > 64<<10 && n > 4*len(zp.z)) {
			zp.z = nil
		}
		select {
		case c.zparts <- zp:
		default:
		}
	}
}

// compressRequest encodes and compresses the request of batches into a
// buffer of bufs, where parts[i], when parts is not nil and parts[i] is
// not, is batches[i] encoded ahead by partOf: compressed by c.part (gzip),
// or an encoder of partBufs (zstd). For gzip each run of batches between
// parts is encoded with an encoder of bufs and compressed as one segment;
// for zstd the request is encoded whole, with its parts, and compressed
// once. It returns the compressed request, its size before compression and
// how many strings had their invalid UTF-8 replaced (parts counted theirs
// when made). The parts are released for reuse.
func (c *codec) compressRequest(bufs, partBufs *bufferPool, batches []*event.Batch, parts []export.Part) (zp *[]byte, encoded, invalid int) {
	zp = bufs.get()
	s := c.begin(*zp)
	if c.zenc != nil {
		var buf [8][]byte
		pieces := buf[:0]
		var e *encoder
		if parts != nil && !slices.Contains(parts, nil) {
			for _, p := range parts {
				pieces = append(pieces, p.(*encoder).request())
			}
		} else {
			e = bufs.encode(batches, parts)
			invalid = e.invalid
			pieces = append(pieces, e.request())
		}
		s.compress(pieces...)
		if e != nil {
			bufs.release(e)
		}
		partBufs.releaseParts(parts)
		*zp = s.end()
		return zp, s.n, invalid
	}
	for i := 0; i < len(batches); {
		if parts != nil && parts[i] != nil {
			s.add(parts[i].(*zpart))
			i++
			continue
		}
		j := i + 1
		for j < len(batches) && (parts == nil || parts[j] == nil) {
			j++
		}
		e := bufs.encode(batches[i:j], nil)
		invalid += e.invalid
		s.compress(e.request())
		bufs.release(e)
		i = j
	}
	*zp = s.end()
	c.releaseParts(parts)
	return zp, s.n, invalid
}

// gzipHeader starts every gzip request: no name, no time, compressed for
// speed (XFL 4), from an unknown system (255) (RFC 1952, 2.3).
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255}

// finalBlock ends a deflate stream: an empty final block of fixed Huffman
// codes (BFINAL 1, BTYPE 01, end of block), on a byte boundary.
var finalBlock = []byte{0x03, 0x00}

// stream is a compressed request being written, segment by segment.
type stream struct {
	c   *codec
	out []byte
	n   int    // bytes before compression so far
	crc uint32 // gzip: of those bytes
}

// begin starts a compressed request at the end of dst.
func (c *codec) begin(dst []byte) stream {
	if c.zenc == nil {
		dst = append(dst, gzipHeader...)
	}
	return stream{c: c, out: dst}
}

// compress compresses the concatenation of pieces as the next segment.
func (s *stream) compress(pieces ...[]byte) {
	s.out = s.c.appendSegment(s.out, pieces...)
	for _, p := range pieces {
		if s.c.zenc == nil {
			s.crc = crc32.Update(s.crc, crc32.IEEETable, p)
		}
		s.n += len(p)
	}
}

// add appends a gzip segment compressed ahead, once it is ready.
func (s *stream) add(p *zpart) {
	<-p.ready
	s.out = append(s.out, p.z...)
	s.crc = crc32Combine(s.crc, p.crc, p.n)
	s.n += p.n
}

// end finishes the request and returns it.
func (s *stream) end() []byte {
	if s.c.zenc == nil {
		s.out = append(s.out, finalBlock...)
		s.out = binary.LittleEndian.AppendUint32(s.out, s.crc)
		s.out = binary.LittleEndian.AppendUint32(s.out, uint32(s.n)) // ISIZE: the size modulo 2^32
	}
	return s.out
}

// appendSegment appends the concatenation of pieces, compressed on its
// own, to dst: deflate blocks ended by a sync flush, or a zstd frame (a
// whole request).
func (c *codec) appendSegment(dst []byte, pieces ...[]byte) []byte {
	z := <-c.free
	defer func() { c.free <- z }()
	if c.zenc != nil {
		p := pieces[0]
		if len(pieces) > 1 {
			// EncodeAll reads one buffer: the parts are joined in the
			// compressor's, one per request compressed at once.
			z.in = z.in[:0]
			for _, p := range pieces {
				z.in = append(z.in, p...)
			}
			p = z.in
			if cap(z.in) > maxPooledBuffer {
				z.in = nil
			}
		}
		return c.zenc.EncodeAll(p, dst)
	}
	z.out = dst
	if z.fw == nil {
		// Level 1: about twice as fast as level 6 (the default) for a
		// ratio a little lower.
		z.fw, _ = flate.NewWriter(z, flate.BestSpeed)
	} else {
		z.fw.Reset(z)
	}
	// Writes to memory do not fail.
	for _, p := range pieces {
		_, _ = z.fw.Write(p)
	}
	_ = z.fw.Flush()
	dst, z.out = z.out, nil
	return dst
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
	// Parts still being compressed (their queue was abandoned) finish first.
	for range cap(c.pending) {
		c.pending <- struct{}{}
	}
	for range cap(c.pending) {
		<-c.pending
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

// partOf encodes b alone with an encoder of parts, and compresses it if cd
// compresses with gzip (see codec), counting the strings whose invalid
// UTF-8 it replaced in invalid (see export.PartEncoder).
func partOf(cd *codec, parts *bufferPool, b *event.Batch, invalid *atomic.Int64) export.Part {
	if cd != nil && cd.zenc == nil {
		return cd.part(parts, b, invalid)
	}
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
	e.records = len(b.Records)
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

// requestRecords counts the records of a request of batches, where
// parts[i], when parts is not nil and parts[i] is not, is batches[i]
// encoded ahead (and detached).
func requestRecords(batches []*event.Batch, parts []export.Part) int {
	n := 0
	for i, b := range batches {
		switch p := partAt(parts, i).(type) {
		case *encoder:
			n += p.records
		case *zpart:
			n += p.records
		default:
			n += len(b.Records)
		}
	}
	return n
}

func partAt(parts []export.Part, i int) export.Part {
	if parts == nil {
		return nil
	}
	return parts[i]
}
