// Package sink is the OTLP logs receiver logpump's benchmarks deliver to:
// OTLP/gRPC and OTLP/HTTP (protobuf) on 127.0.0.1, gzip and zstd accepted.
// It does not decode requests into objects; it walks the protobuf wire
// format just far enough to find each record's sequence number and marks
// it in a bitmap, so it can tell how many distinct lines of 0..N-1 arrived,
// how many arrived twice and how many carried no number, at a cost small
// next to the agent under test.
package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
)

// Counts is a snapshot of what a Sink received.
type Counts struct {
	Records     uint64 // log records in all requests
	Unique      uint64 // distinct sequence numbers in [0, N)
	Duplicates  uint64 // records whose number had already arrived
	NoSeq       uint64 // records without a recognisable sequence number
	OutOfRange  uint64 // records numbered N or more
	Requests    uint64 // export requests, both transports
	Malformed   uint64 // requests that failed to parse
	WireBytes   uint64 // request payload bytes as sent (compressed if so)
	RawBytes    uint64 // request payload bytes after decompression
	LastArrival time.Time
	// MaxGap is the longest time between two requests that carried
	// records, and GapAt when the longer one of them arrived: a stall in
	// the middle of a run shows here.
	MaxGap time.Duration
	GapAt  time.Time
}

// Sink counts sequence-numbered log records. Create it with New, serve
// with Start, stop with Close.
type Sink struct {
	n    uint64
	bits []atomic.Uint64

	records, unique, dups, noSeq, outOfRange atomic.Uint64
	requests, malformed, wire, raw           atomic.Uint64
	last                                     atomic.Int64 // unix nanos of the last record
	maxGap, gapAt                            atomic.Int64 // nanos; unix nanos

	mu      sync.Mutex
	samples []string // a few records without a number, for diagnosis
	first   []byte   // the first record received, encoded
	born    time.Time
	buckets []uint64 // records per 100 ms since born

	grpcLis, httpLis net.Listener
	grpcSrv          *grpc.Server
	httpSrv          *http.Server
}

// New returns a sink expecting sequence numbers 0 .. n-1. It does no I/O.
func New(n uint64) *Sink {
	return &Sink{n: n, bits: make([]atomic.Uint64, (n+63)/64), born: time.Now()}
}

// Start listens on 127.0.0.1 with kernel-chosen ports for OTLP/gRPC and
// OTLP/HTTP and serves until Close.
func (s *Sink) Start() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("listen for OTLP/gRPC: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listen for OTLP/HTTP: %w", err)
	}
	s.grpcSrv = grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(256<<20),
		// Reads of 256 KiB rather than 32: fewer syscalls for the sink.
		// Flow control stays at gRPC's defaults, as a Collector's receiver
		// has them.
		grpc.ReadBufferSize(256<<10),
		grpc.StatsHandler(wireCounter{&s.wire}),
	)
	s.grpcSrv.RegisterService(&logsService, s)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", s.serveHTTP)
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.grpcSrv.Serve(s.grpcLis)
	go s.httpSrv.Serve(s.httpLis)
	return nil
}

// Listen opens n more OTLP/gRPC and n more OTLP/HTTP ports, served like the
// first ones until Close: one sink seen as several endpoints. It returns
// their host:port.
func (s *Sink) Listen(n int) (grpcAddrs, httpAddrs []string, err error) {
	for range n {
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen for OTLP/gRPC: %w", err)
		}
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			gl.Close()
			return nil, nil, fmt.Errorf("listen for OTLP/HTTP: %w", err)
		}
		go s.grpcSrv.Serve(gl)
		go s.httpSrv.Serve(hl)
		grpcAddrs, httpAddrs = append(grpcAddrs, gl.Addr().String()), append(httpAddrs, hl.Addr().String())
	}
	return grpcAddrs, httpAddrs, nil
}

// GRPCAddr is the OTLP/gRPC endpoint, host:port.
func (s *Sink) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the OTLP/HTTP endpoint, host:port (path /v1/logs).
func (s *Sink) HTTPAddr() string { return s.httpLis.Addr().String() }

// Close stops both servers at once, dropping open connections.
func (s *Sink) Close() {
	if s.grpcSrv != nil {
		s.grpcSrv.Stop()
	}
	if s.httpSrv != nil {
		s.httpSrv.Close()
	}
}

// Counts returns the current counters.
func (s *Sink) Counts() Counts {
	c := Counts{
		Records:    s.records.Load(),
		Unique:     s.unique.Load(),
		Duplicates: s.dups.Load(),
		NoSeq:      s.noSeq.Load(),
		OutOfRange: s.outOfRange.Load(),
		Requests:   s.requests.Load(),
		Malformed:  s.malformed.Load(),
		WireBytes:  s.wire.Load(),
		RawBytes:   s.raw.Load(),
	}
	if ns := s.last.Load(); ns != 0 {
		c.LastArrival = time.Unix(0, ns)
	}
	c.MaxGap = time.Duration(s.maxGap.Load())
	if ns := s.gapAt.Load(); ns != 0 {
		c.GapAt = time.Unix(0, ns)
	}
	return c
}

// Missing returns up to max sequence numbers below n that have not arrived.
func (s *Sink) Missing(max int) []uint64 {
	var out []uint64
	for i := range s.bits {
		w := s.bits[i].Load()
		if w == ^uint64(0) {
			continue
		}
		for b := range uint64(64) {
			seq := uint64(i)*64 + b
			if seq >= s.n || len(out) >= max {
				return out
			}
			if w&(1<<b) == 0 {
				out = append(out, seq)
			}
		}
	}
	return out
}

// Samples returns up to five records that carried no sequence number,
// as printable text.
func (s *Sink) Samples() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.samples...)
}

// Consume counts the records of one encoded ExportLogsServiceRequest.
func (s *Sink) Consume(req []byte) error {
	s.requests.Add(1)
	s.raw.Add(uint64(len(req)))
	var records, unique, dups, noSeq, outOfRange uint64
	err := eachRecord(req, func(rec []byte) {
		if records == 0 {
			s.keepFirst(rec)
		}
		records++
		seq, ok := RecordSeq(rec)
		switch {
		case !ok:
			noSeq++
			s.sample(rec)
		case seq >= s.n:
			outOfRange++
		default:
			bit := uint64(1) << (seq % 64)
			if s.bits[seq/64].Or(bit)&bit != 0 {
				dups++
			} else {
				unique++
			}
		}
	})
	s.records.Add(records)
	s.unique.Add(unique)
	s.dups.Add(dups)
	s.noSeq.Add(noSeq)
	s.outOfRange.Add(outOfRange)
	if records > 0 {
		s.arrive(records)
		now := time.Now().UnixNano()
		if prev := s.last.Swap(now); prev != 0 && now-prev > s.maxGap.Load() {
			s.mu.Lock()
			if now-prev > s.maxGap.Load() {
				s.maxGap.Store(now - prev)
				s.gapAt.Store(now)
			}
			s.mu.Unlock()
		}
	}
	if err != nil {
		s.malformed.Add(1)
	}
	return err
}

// Bucket is the resolution of [Sink.Arrivals].
const Bucket = 100 * time.Millisecond

func (s *Sink) arrive(records uint64) {
	i := int(time.Since(s.born) / Bucket)
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buckets) <= i {
		s.buckets = append(s.buckets, 0)
	}
	s.buckets[i] += records
}

// Arrivals returns how many records arrived in each [Bucket] since the sink
// was created.
func (s *Sink) Arrivals() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.buckets...)
}

// Idle returns the time between the first and the last arrival during
// which no record arrived, at the resolution of [Bucket].
func (s *Sink) Idle() time.Duration {
	b := s.Arrivals()
	first, last := -1, -1
	for i, n := range b {
		if n > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	var idle time.Duration
	for i := first + 1; i < last; i++ {
		if b[i] == 0 {
			idle += Bucket
		}
	}
	return idle
}

func (s *Sink) keepFirst(rec []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		s.first = bytes.Clone(rec)
	}
}

// First returns the first LogRecord received, encoded, or nil.
func (s *Sink) First() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

func (s *Sink) sample(rec []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) < 5 {
		s.samples = append(s.samples, fmt.Sprintf("%q", rec))
	}
}

func (s *Sink) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "only application/x-protobuf is accepted", http.StatusUnsupportedMediaType)
		return
	}
	buf, _ := httpBuffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer httpBuffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	wire := buf.Bytes()
	s.wire.Add(uint64(len(wire)))
	body := wire
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, "gunzip: "+err.Error(), http.StatusBadRequest)
			return
		}
	case "zstd":
		var err error
		body, err = zstdDecoder.DecodeAll(wire, nil)
		if err != nil {
			http.Error(w, "zstd: "+err.Error(), http.StatusBadRequest)
			return
		}
	default:
		http.Error(w, "unsupported Content-Encoding "+enc, http.StatusUnsupportedMediaType)
		return
	}
	if err := s.Consume(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportLogsServiceResponse
}

// httpBuffers recycles request bodies read over OTLP/HTTP.
var httpBuffers sync.Pool // *bytes.Buffer

// zstdDecoder decodes whole HTTP bodies; DecodeAll is safe for concurrent use.
var zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(2))

// logsService is opentelemetry.proto.collector.logs.v1.LogsService with the
// request handed over as bytes.
var logsService = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.logs.v1.LogsService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req, _ := requestBuffers.Get().(*[]byte)
			if req == nil {
				req = new([]byte)
			}
			defer requestBuffers.Put(req)
			if err := dec(req); err != nil {
				return nil, err
			}
			if err := srv.(*Sink).Consume(*req); err != nil {
				return nil, err
			}
			return emptyResponse{}, nil
		},
	}},
	Metadata: "opentelemetry/proto/collector/logs/v1/logs_service.proto",
}

type emptyResponse struct{}

// rawCodec hands request bytes to the handler and encodes every response
// as an empty message.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(any) (mem.BufferSlice, error) { return nil, nil }

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return errors.New("raw codec: want *[]byte")
	}
	n := data.Len()
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	*p = (*p)[:n]
	data.CopyTo(*p)
	return nil
}

// requestBuffers recycles the buffers requests are copied into, so that the
// sink's own garbage does not cost it a share of the machine.
var requestBuffers sync.Pool // *[]byte

// wireCounter adds the size of every received gRPC payload as it was on
// the wire (after compression, before decompression).
type wireCounter struct{ n *atomic.Uint64 }

func (wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (wireCounter) HandleConn(context.Context, stats.ConnStats) {}
func (c wireCounter) HandleRPC(_ context.Context, st stats.RPCStats) {
	if p, ok := st.(*stats.InPayload); ok {
		c.n.Add(uint64(p.CompressedLength))
	}
}

// gRPC decompressors for gzip and zstd (the Collector's receiver accepts
// both). They reuse decoders across requests, so that the sink's cost per
// request stays small next to the agent's.
type (
	gzipCompressor struct{ readers sync.Pool } // *gzip.Reader
	zstdCompressor struct{ readers sync.Pool } // *zstd.Decoder
)

func (*gzipCompressor) Name() string { return "gzip" }

func (*gzipCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	return gzip.NewWriterLevel(w, gzip.BestSpeed)
}

func (c *gzipCompressor) Decompress(r io.Reader) (io.Reader, error) {
	z, _ := c.readers.Get().(*gzip.Reader)
	var err error
	if z == nil {
		z, err = gzip.NewReader(r)
	} else {
		err = z.Reset(r)
	}
	if err != nil {
		return nil, err
	}
	return &pooled{r: z, put: func() { c.readers.Put(z) }}, nil
}

func (*zstdCompressor) Name() string { return "zstd" }

func (*zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
}

func (c *zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	d, _ := c.readers.Get().(*zstd.Decoder)
	var err error
	if d == nil {
		d, err = zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
	} else {
		err = d.Reset(r)
	}
	if err != nil {
		return nil, err
	}
	return &pooled{r: d, put: func() { c.readers.Put(d) }}, nil
}

// pooled returns its decoder to the pool when the message has been read.
type pooled struct {
	r   io.Reader
	put func()
}

func (p *pooled) Read(b []byte) (int, error) {
	if p.r == nil {
		return 0, io.EOF
	}
	n, err := p.r.Read(b)
	if err == io.EOF {
		p.r = nil
		p.put()
	}
	return n, err
}

// init registers the decompressors, replacing gRPC's own gzip (the
// standard library's, several times slower); gRPC wants this done at
// initialisation.
func init() {
	encoding.RegisterCompressor(&gzipCompressor{})
	encoding.RegisterCompressor(&zstdCompressor{})
}
