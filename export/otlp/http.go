package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// HTTPClient sends requests to an OTLP/HTTP endpoint as binary protobuf. It
// implements export.Client; Send is safe for concurrent use.
type HTTPClient struct {
	url       string
	client    *http.Client
	transport *http.Transport
	headers   map[string]string
	timeout   time.Duration
	codec     *codec
	log       *slog.Logger
	bufs      bufferPool // request encoders
	parts     bufferPool // encoders of batches encoded ahead (EncodePart)
	invalid   atomic.Int64
	reqBytes  atomic.Int64
}

// NewHTTP returns a client for the resolved options o (see [Resolve]). It
// reads the TLS files but does not connect.
func NewHTTP(o Options, log *slog.Logger) (*HTTPClient, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("create otlp http client: want an http:// or https:// endpoint, got %q", o.Endpoint)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(o.Queue.InFlight, 2)
	if u.Scheme == "https" {
		cfg, err := o.TLS.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("create otlp http client for %s: %w", o.Endpoint, err)
		}
		tr.TLSClientConfig = cfg
	}
	cd, err := newCodec(o.Compression, o.Queue)
	if err != nil {
		return nil, fmt.Errorf("create otlp http client for %s: %w", o.Endpoint, err)
	}
	return &HTTPClient{
		url:       o.Endpoint,
		client:    &http.Client{Transport: tr},
		transport: tr,
		headers:   o.Headers,
		timeout:   o.Timeout,
		codec:     cd,
		bufs:      newBufferPool(o.Queue.InFlight),
		parts:     newBufferPool(partsPooled(o.Queue)),
		log:       log,
	}, nil
}

// Send encodes batches into one request and POSTs it. It returns nil, a
// *export.PartialError, an export.Permanent error, or a retryable error
// (429, 502, 503, 504 and connection errors; carrying the Retry-After delay
// when the server sent one), as the OTLP specification says. It does not keep
// batches.
func (c *HTTPClient) Send(ctx context.Context, batches []*event.Batch) error {
	r, err := c.encode(batches, nil)
	if err != nil {
		return err
	}
	err = r.Send(ctx)
	r.Release()
	return err
}

// Encode encodes (and compresses) batches into one request whose attempts
// send the same bytes (see export.Encoder).
func (c *HTTPClient) Encode(batches []*event.Batch) (export.Encoded, error) {
	return c.EncodeParts(batches, nil)
}

// EncodePart encodes b on its own, as part of a request to come (see
// export.PartEncoder).
func (c *HTTPClient) EncodePart(b *event.Batch) export.Part {
	return partOf(c.codec, &c.parts, b, &c.invalid)
}

// EncodeParts encodes (and compresses) a request of batches, some of them
// encoded ahead by EncodePart (see export.PartEncoder).
func (c *HTTPClient) EncodeParts(batches []*event.Batch, parts []export.Part) (export.Encoded, error) {
	r, err := c.encode(batches, parts)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// encode encodes (and compresses) a request; the parts are released once
// it is made, and kept on an error.
func (c *HTTPClient) encode(batches []*event.Batch, parts []export.Part) (*httpRequest, error) {
	var r *httpRequest
	var invalid int
	if c.codec != nil {
		zp, n, inv := c.codec.compressRequest(&c.bufs, &c.parts, batches, parts)
		r, invalid = &httpRequest{c: c, zp: zp, payload: *zp, encoded: n}, inv
	} else {
		e := c.bufs.encode(batches, parts)
		c.parts.releaseParts(parts)
		payload := e.request()
		r, invalid = &httpRequest{c: c, e: e, payload: payload, encoded: len(payload)}, e.invalid
	}
	if invalid > 0 {
		c.invalid.Add(int64(invalid))
	}
	return r, nil
}

// httpRequest is an encoded request of an HTTPClient: the payload is the
// encoder's buffer, or the compressed copy in zp.
type httpRequest struct {
	c       *HTTPClient
	e       *encoder
	zp      *[]byte
	payload []byte
	encoded int // bytes before compression
	// busy is set once the transport returned without closing an
	// attempt's body: it may still read the payload, which is then left to
	// the garbage collector rather than reused.
	busy bool
}

// Send makes one attempt; its errors are those of HTTPClient.Send.
func (r *httpRequest) Send(ctx context.Context) error {
	c := r.c
	c.reqBytes.Add(int64(r.encoded))
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	body := &requestBody{Reader: bytes.NewReader(r.payload), closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, body)
	if err != nil {
		return export.Permanent(fmt.Errorf("create request for %s: %w", c.url, err))
	}
	req.ContentLength = int64(len(r.payload))
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "logpump")
	if c.codec != nil {
		req.Header.Set("Content-Encoding", c.codec.name)
	}
	resp, err := c.client.Do(req)
	if err == nil {
		err = c.response(resp)
	}
	// The transport may read the body after Do returns.
	select {
	case <-body.closed:
	default:
		r.busy = true
	}
	if err != nil {
		return fmt.Errorf("export logs to %s: %w", c.url, err)
	}
	return nil
}

// Release returns the payload's buffer for reuse unless an attempt may
// still read it.
func (r *httpRequest) Release() {
	switch {
	case r.busy:
	case r.zp != nil:
		r.c.bufs.put(r.zp)
	case r.e != nil:
		r.c.bufs.release(r.e)
	}
	r.e, r.zp, r.payload = nil, nil, nil
}

// response classifies resp and drains its body.
func (c *HTTPClient) response(resp *http.Response) error {
	defer resp.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	isProto := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf")
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if readErr != nil || len(data) == 0 || !isProto {
			return nil
		}
		var r exportResponse
		if err := r.unmarshal(data); err != nil {
			c.log.Warn("otlp endpoint accepted the request with an unreadable response", "err", err)
			return nil
		}
		return r.outcome(c.log)
	}
	err := fmt.Errorf("%s%s", resp.Status, statusMessage(data, isProto))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return export.RetryAfter(err, d)
		}
		return err
	}
	return export.Permanent(err)
}

// statusMessage returns ": message" from an error response body: a
// google.rpc.Status in protobuf, or the start of a text body.
func statusMessage(data []byte, isProto bool) string {
	if len(data) == 0 {
		return ""
	}
	if isProto {
		var st spb.Status
		if proto.Unmarshal(data, &st) == nil && st.GetMessage() != "" {
			return ": " + st.GetMessage()
		}
		return ""
	}
	msg := strings.TrimSpace(strings.ToValidUTF8(string(data[:min(len(data), 256)]), "\uFFFD"))
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Stats returns the client's counters.
func (c *HTTPClient) Stats() ClientStats {
	return ClientStats{InvalidUTF8: c.invalid.Load(), RequestBytes: c.reqBytes.Load()}
}

// Close closes idle connections.
func (c *HTTPClient) Close() error {
	c.transport.CloseIdleConnections()
	c.codec.close()
	return nil
}

// requestBody reports when the transport is done with the request body.
type requestBody struct {
	*bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *requestBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}
