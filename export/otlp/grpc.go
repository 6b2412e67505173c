package otlp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

const exportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

// ClientStats are counters of an OTLP client, safe to read from any goroutine.
type ClientStats struct {
	// InvalidUTF8 counts strings whose invalid UTF-8 was replaced.
	InvalidUTF8 int64
	// RequestBytes counts encoded bytes sent, before compression.
	RequestBytes int64
}

// GRPCClient sends requests to one or several OTLP/gRPC endpoints (see
// balancer). It implements export.Client; Send is safe for concurrent use.
type GRPCClient struct {
	lb       *balancer[*grpc.ClientConn]
	md       metadata.MD
	timeout  time.Duration
	codec    *codec
	log      *slog.Logger
	bufs     bufferPool // request encoders
	parts    bufferPool // encoders of batches encoded ahead (EncodePart)
	invalid  atomic.Int64
	reqBytes atomic.Int64
}

// NewGRPC returns a client for the resolved options o (see [Resolve]). It
// reads the TLS files but does not connect: the connection is made by the
// first Send and re-made as needed. Names in o.Endpoints are resolved by a
// goroutine that Close stops.
func NewGRPC(o Options, log *slog.Logger) (*GRPCClient, error) {
	return newGRPC(o, log, nil)
}

// newGRPC is NewGRPC with lookup, when not nil, resolving the names in
// o.Endpoints instead of the system's resolver.
func newGRPC(o Options, log *slog.Logger, lookup lookupFunc) (*GRPCClient, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := o.Endpoint
	if len(o.Endpoints) > 0 {
		name = strings.Join(o.Endpoints, ",")
	}
	var tlsCfg *tls.Config
	for _, ep := range append([]string{o.Endpoint}, o.Endpoints...) {
		if ep == "" && len(o.Endpoints) > 0 {
			continue
		}
		_, plaintext, err := grpcTarget(o, ep)
		if err != nil {
			return nil, fmt.Errorf("create otlp grpc client: %w", err)
		}
		if !plaintext && tlsCfg == nil {
			if tlsCfg, err = o.TLS.tlsConfig(); err != nil {
				return nil, fmt.Errorf("create otlp grpc client for %s: %w", name, err)
			}
		}
	}
	cd, err := newCodec(o.Compression, o.Queue)
	if err != nil {
		return nil, fmt.Errorf("create otlp grpc client for %s: %w", name, err)
	}
	dialOpts := []grpc.DialOption{
		grpc.WithUserAgent("logpump"),
		grpc.WithWriteBufferSize(writeBufferSize),
		grpc.WithSharedWriteBuffer(true),
		// gRPC's own reconnect backoff grows to 120s: after an outage the
		// queue's retries would meet a connection still waiting to redial.
		// Cap it at the queue's retry interval so delivery resumes as soon
		// as the destination is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  min(100*time.Millisecond, o.Retry.MaxInterval),
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   max(o.Retry.MaxInterval, 100*time.Millisecond),
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if cd != nil {
		//lint:ignore SA1019 per-connection compressors avoid gRPC's process-wide registry; supported throughout grpc 1.x.
		dialOpts = append(dialOpts, grpc.WithCompressor(grpcCompressor{cd}), grpc.WithDecompressor(grpcDecompressor{cd}))
	}
	dial := func(e entry, addr string) (*grpc.ClientConn, error) {
		target, plaintext, err := grpcTarget(o, e.raw)
		if err != nil {
			return nil, err
		}
		creds := insecure.NewCredentials()
		if !plaintext {
			creds = credentials.NewTLS(tlsCfg)
		}
		opts := append(slices.Clip(dialOpts), grpc.WithTransportCredentials(creds))
		if addr != "" {
			// One connection per address of a resolved name; the
			// name stays the authority (and the TLS server name).
			opts = append(opts, grpc.WithAuthority(target))
			target = "passthrough:///" + addr
		}
		conn, err := grpc.NewClient(target, opts...)
		if err != nil {
			return nil, fmt.Errorf("create otlp grpc client for %s: %w", target, err)
		}
		return conn, nil
	}
	entries, err := o.entries(func(raw string) (string, string, error) {
		target, _, err := grpcTarget(o, raw)
		if err != nil {
			return "", "", err
		}
		return net.SplitHostPort(target)
	})
	if err != nil {
		cd.close()
		return nil, fmt.Errorf("create otlp grpc client: %w", err)
	}
	lb, err := newBalancer(balancerOptions[*grpc.ClientConn]{
		entries: entries, dial: dial, closer: func(c *grpc.ClientConn) { c.Close() },
		lookup: lookup, interval: o.ResolveInterval, drain: o.Timeout,
		retry: o.Retry, log: log,
	})
	if err != nil {
		cd.close()
		return nil, err
	}
	c := &GRPCClient{
		lb:      lb,
		timeout: o.Timeout,
		codec:   cd,
		bufs:    newBufferPool(o.Queue.InFlight),
		parts:   newBufferPool(partsPooled(o.Queue)),
		log:     log,
	}
	if len(o.Headers) > 0 {
		c.md = metadata.New(o.Headers)
	}
	return c, nil
}

// Send encodes batches into one request and sends it. It returns nil, a
// *export.PartialError, an export.Permanent error or a retryable error
// (carrying the server's RetryInfo delay when given), as the OTLP
// specification classifies gRPC status codes. It does not keep batches.
func (c *GRPCClient) Send(ctx context.Context, batches []*event.Batch) error {
	r, err := c.encode(batches, nil)
	if err != nil {
		return err
	}
	err = r.Send(ctx)
	r.Release()
	return err
}

// Encode encodes batches into one request whose attempts send the same
// bytes (see export.Encoder).
func (c *GRPCClient) Encode(batches []*event.Batch) (export.Encoded, error) {
	return c.encode(batches, nil)
}

// EncodePart encodes b on its own, as part of a request to come (see
// export.PartEncoder).
func (c *GRPCClient) EncodePart(b *event.Batch) export.Part {
	return partOf(c.codec, &c.parts, b, &c.invalid)
}

// EncodeParts encodes a request of batches, some of them encoded ahead by
// EncodePart (see export.PartEncoder). An uncompressed request made of
// parts only is sent from the parts' buffers, one after the other, with no
// copy: the concatenation of requests is one request, and gRPC writes a
// message given in several buffers as one. With gzip the parts were
// compressed when encoded and the request joins them; with zstd it is
// compressed whole here (see codec). Either way only the compressed bytes
// wait for the answer.
func (c *GRPCClient) EncodeParts(batches []*event.Batch, parts []export.Part) (export.Encoded, error) {
	if c.codec == nil && !slices.Contains(parts, nil) {
		r := &grpcRequest{c: c, parts: make([]*encoder, len(parts)), records: requestRecords(batches, parts)}
		for i, p := range parts {
			r.parts[i] = p.(*encoder)
		}
		return r, nil
	}
	return c.encode(batches, parts)
}

// encode encodes (and compresses) a request; the parts are released once
// it is made, and kept on an error.
func (c *GRPCClient) encode(batches []*event.Batch, parts []export.Part) (*grpcRequest, error) {
	records := requestRecords(batches, parts)
	if c.codec != nil {
		// Compressed once here rather than by gRPC at every attempt (see
		// grpcCompressor): a request waiting for its answer holds the
		// compressed bytes only.
		zp, n, invalid := c.codec.compressRequest(&c.bufs, &c.parts, batches, parts)
		if invalid > 0 {
			c.invalid.Add(int64(invalid))
		}
		return &grpcRequest{c: c, zp: zp, encoded: n, records: records}, nil
	}
	e := c.bufs.encode(batches, parts)
	c.parts.releaseParts(parts)
	if e.invalid > 0 {
		c.invalid.Add(int64(e.invalid))
	}
	return &grpcRequest{c: c, e: e, records: records}, nil
}

// grpcRequest is an encoded request of a GRPCClient: in e's buffer, in
// those of its parts, in order, or compressed in zp.
type grpcRequest struct {
	c       *GRPCClient
	e       *encoder
	parts   []*encoder
	zp      *[]byte
	encoded int // bytes before compression, with zp
	records int
	// busy is set once an attempt failed: one that ended before the server
	// answered (deadline, cancellation, a broken connection) may leave
	// gRPC's writer still reading the buffer, which is then left to the
	// garbage collector rather than reused. Retries only read it too.
	busy bool
	// pieces: the server refused the request for its size; it is sent in
	// these smaller ones.
	pieces *pieces
}

// Send makes one attempt; its errors are those of GRPCClient.Send. A
// request the server refuses for its size is sent again at once in halves
// (see pieces), and its later attempts send the pieces not yet accepted.
func (r *grpcRequest) Send(ctx context.Context) error {
	c := r.c
	if r.pieces != nil {
		return r.pieces.send(ctx, c.log, r.sendPiece)
	}
	var msg any
	switch {
	case r.zp != nil:
		c.reqBytes.Add(int64(r.encoded))
		msg = encodedRequest(*r.zp)
	case r.parts != nil:
		n := 0
		for _, p := range r.parts {
			n += p.written()
		}
		c.reqBytes.Add(int64(n))
		msg = encodedParts(r.parts)
	default:
		req := r.e.request()
		c.reqBytes.Add(int64(len(req)))
		msg = encodedRequest(req)
	}
	err := c.invoke(ctx, msg, r.records)
	if err == nil {
		return nil
	}
	var pe *export.PartialError
	if !errors.As(err, &pe) {
		r.busy = true
	}
	var tl *tooLargeError
	if !errors.As(err, &tl) {
		return err
	}
	req, derr := r.plain()
	if derr != nil {
		return export.Permanent(fmt.Errorf("%w; reading the request back to split it: %w", err, derr))
	}
	if r.pieces, err = newPieces(req, err); err != nil {
		return err
	}
	return r.pieces.send(ctx, c.log, r.sendPiece)
}

// plain returns the request's encoded bytes, uncompressed, in a slice of
// their own.
func (r *grpcRequest) plain() ([]byte, error) {
	switch {
	case r.zp != nil:
		return r.c.codec.decompressRequest(*r.zp)
	case r.parts != nil:
		var b []byte
		for _, p := range r.parts {
			b = append(b, p.request()...)
		}
		return b, nil
	}
	return bytes.Clone(r.e.request()), nil
}

// sendPiece sends one piece of a request split for its size.
func (r *grpcRequest) sendPiece(ctx context.Context, req []byte) error {
	r.c.reqBytes.Add(int64(len(req)))
	_, n, _ := parseRequest(req)
	if r.c.codec != nil {
		req = r.c.codec.compressBytes(req)
	}
	return r.c.invoke(ctx, encodedRequest(req), n)
}

// invoke makes one attempt of msg, an encoded request: an Export call on
// an endpoint, and at once on the next one while they fail (see balancer).
func (c *GRPCClient) invoke(ctx context.Context, msg any, records int) error {
	a := attempt[*grpc.ClientConn]{records: records}
	ep, err := c.lb.first(ctx, &a)
	for ep != nil {
		err = c.invokeOn(ctx, ep, msg)
		ep = c.lb.done(ctx, &a, ep, err)
	}
	return err
}

// invokeOn makes one Export call of msg on ep.
func (c *GRPCClient) invokeOn(ctx context.Context, ep *endpoint[*grpc.ClientConn], msg any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if c.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, c.md)
	}
	var resp exportResponse
	err := ep.conn.Invoke(ctx, exportMethod, msg, &resp, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return classifyStatus(fmt.Errorf("export logs to %s: %w", ep.name, err))
	}
	return resp.outcome(c.log)
}

// Release returns the buffers for reuse unless an attempt may still read
// them.
func (r *grpcRequest) Release() {
	if !r.busy {
		if r.e != nil {
			r.c.bufs.release(r.e)
		}
		if r.zp != nil {
			r.c.bufs.put(r.zp)
		}
		for _, p := range r.parts {
			r.c.parts.release(p)
		}
	}
	r.e, r.parts, r.zp = nil, nil, nil
}

// withAffinity returns a client that sends through c's endpoints, split
// by the keys of o.Affinity.
func (c *GRPCClient) withAffinity(o Options) export.Client {
	return &affinityClient[*grpc.ClientConn]{
		lb: c.lb, attrs: o.Affinity.ResourceAttributes, codec: c.codec, log: c.log,
		bufs: newBufferPool(o.Queue.InFlight), parts: newBufferPool(partsPooled(o.Queue)),
		client: c, invalid: &c.invalid, reqBytes: &c.reqBytes,
		sendTo: func(ctx context.Context, ep *endpoint[*grpc.ClientConn], pieces [][]byte) (bool, error) {
			// An attempt that failed may leave gRPC's writer reading the pieces.
			err := c.invokeOn(ctx, ep, encodedPieces(pieces))
			return err != nil && !isPartial(err), err
		},
	}
}

// SetEndpointObserver sets who is told how long each attempt on an
// endpoint took. Call it before the first Send.
func (c *GRPCClient) SetEndpointObserver(f func(endpoint string, d time.Duration)) {
	c.lb.observe = f
}

// Stats returns the client's counters.
func (c *GRPCClient) Stats() ClientStats {
	return ClientStats{InvalidUTF8: c.invalid.Load(), RequestBytes: c.reqBytes.Load()}
}

// Endpoints returns the state and counters of each endpoint.
func (c *GRPCClient) Endpoints() []EndpointStats { return c.lb.stats() }

// Close closes the connections. Sends in progress fail.
func (c *GRPCClient) Close() error {
	c.lb.close()
	c.codec.close()
	return nil
}

// classifyStatus marks err, from a gRPC call. logpump's buffer is the file
// it reads, so it can wait where an SDK holding records in memory could not:
// only InvalidArgument, an error about the request itself, is permanent. A
// ResourceExhausted about the message's size ("larger than max") is a
// tooLargeError: the request is split. Every other code (authentication,
// an unknown service, server errors, rate limits, unknown codes) and errors
// without a status are retryable, with the server's RetryInfo delay when it
// sent one. Each carries its reason (see export.Reason).
func classifyStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return export.WithReason(err, export.ReasonConnection)
	}
	var delay time.Duration
	hasDelay := false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.RetryDelay != nil {
			delay, hasDelay = ri.RetryDelay.AsDuration(), true
		}
	}
	reason := export.ReasonOther
	switch st.Code() {
	case codes.InvalidArgument:
		return export.Permanent(export.WithReason(err, export.ReasonBadRequest))
	case codes.ResourceExhausted:
		reason = export.ReasonRateLimited
		if !hasDelay && strings.Contains(st.Message(), "larger than max") {
			return &tooLargeError{export.WithReason(err, export.ReasonTooLarge)}
		}
	case codes.Unavailable:
		reason = export.ReasonUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		reason = export.ReasonTimeout
	case codes.Unauthenticated, codes.PermissionDenied:
		reason = export.ReasonAuth
	case codes.Unimplemented, codes.NotFound:
		reason = export.ReasonNotFound
	case codes.Internal, codes.Unknown, codes.DataLoss:
		reason = export.ReasonServerError
	}
	err = export.WithReason(err, reason)
	if hasDelay {
		return export.RetryAfter(err, delay)
	}
	return err
}

// encodedRequest is an ExportLogsServiceRequest already encoded.
type encodedRequest []byte

// encodedParts is an ExportLogsServiceRequest already encoded, in parts
// whose concatenation it is.
type encodedParts []*encoder

// encodedPieces is an ExportLogsServiceRequest already encoded, in pieces
// whose concatenation it is.
type encodedPieces [][]byte

// rawCodec sends encodedRequest bytes as they are and decodes responses
// into an exportResponse.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case encodedRequest:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	case encodedParts:
		bs := make(mem.BufferSlice, len(m))
		for i, p := range m {
			bs[i] = mem.SliceBuffer(p.request())
		}
		return bs, nil
	case encodedPieces:
		bs := make(mem.BufferSlice, len(m))
		for i, p := range m {
			bs[i] = mem.SliceBuffer(p)
		}
		return bs, nil
	}
	return nil, fmt.Errorf("marshal %T: want an encoded request", v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*exportResponse)
	if !ok {
		return fmt.Errorf("unmarshal into %T: want an export response", v)
	}
	if len(data) == 1 {
		return r.unmarshal(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return r.unmarshal(buf.ReadOnlyData())
}

func (rawCodec) Name() string { return "proto" }

// writeBufferSize is gRPC's write buffer: a request goes to the socket in
// writes of this size. gRPC's default, 32 KiB, cuts a 1,000-record request
// (about 170 KiB of plain lines, 465 KiB of parsed JSON) into 6 or 15
// writes; 256 KiB made it one or two (about −15 % CPU per plain line), and
// 128 KiB costs no CPU measurable here for two or four writes and 0.3 to 0.8
// MiB less peak RSS (gRPC keeps two of these buffers under load).
const writeBufferSize = 128 << 10
