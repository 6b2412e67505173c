package otlp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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

// HTTPClient sends requests to one or several OTLP/HTTP endpoints as
// binary protobuf (see balancer). It implements export.Client; Send is
// safe for concurrent use.
type HTTPClient struct {
	lb       *balancer[*httpEndpoint]
	headers  map[string]string
	timeout  time.Duration
	codec    *codec
	log      *slog.Logger
	bufs     bufferPool // request encoders
	parts    bufferPool // encoders of batches encoded ahead (EncodePart)
	invalid  atomic.Int64
	reqBytes atomic.Int64
}

// httpEndpoint is the URL of one endpoint and the client that reaches it.
type httpEndpoint struct {
	url       string
	client    *http.Client
	transport *http.Transport
}

// NewHTTP returns a client for the resolved options o (see [Resolve]). It
// reads the TLS files but does not connect. Names in o.Endpoints are
// resolved by a goroutine that Close stops.
func NewHTTP(o Options, log *slog.Logger) (*HTTPClient, error) {
	return newHTTP(o, log, nil)
}

// newHTTP is NewHTTP with lookup, when not nil, resolving the names in
// o.Endpoints instead of the system's resolver.
func newHTTP(o Options, log *slog.Logger, lookup lookupFunc) (*HTTPClient, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	urls := o.Endpoints
	if len(urls) == 0 {
		urls = []string{o.Endpoint}
	}
	var tlsCfg *tls.Config
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("create otlp http client: want an http:// or https:// endpoint, got %q", raw)
		}
		if u.Scheme == "https" && tlsCfg == nil {
			if tlsCfg, err = o.TLS.tlsConfig(); err != nil {
				return nil, fmt.Errorf("create otlp http client for %s: %w", raw, err)
			}
		}
	}
	cd, err := newCodec(o.Compression, o.Queue)
	if err != nil {
		return nil, fmt.Errorf("create otlp http client for %s: %w", strings.Join(urls, ","), err)
	}
	dial := func(e entry, addr string) (*httpEndpoint, error) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(o.Queue.InFlight, 2)
		if strings.HasPrefix(e.raw, "https:") {
			tr.TLSClientConfig = tlsCfg.Clone()
		}
		if addr != "" {
			// One transport per address of a resolved name; the URL
			// keeps the name (Host header, TLS server name).
			d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			}
		}
		return &httpEndpoint{url: e.raw, client: &http.Client{Transport: tr, CheckRedirect: noRedirects}, transport: tr}, nil
	}
	entries, err := o.entries(func(raw string) (string, string, error) {
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", err
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		return u.Hostname(), port, nil
	})
	if err != nil {
		cd.close()
		return nil, fmt.Errorf("create otlp http client: %w", err)
	}
	for i := range entries {
		entries[i].name = redactURL(entries[i].raw)
	}
	lb, err := newBalancer(balancerOptions[*httpEndpoint]{
		entries: entries, dial: dial, closer: func(e *httpEndpoint) { e.transport.CloseIdleConnections() },
		lookup: lookup, interval: o.ResolveInterval, drain: o.Timeout,
		retry: o.Retry, log: log,
	})
	if err != nil {
		cd.close()
		return nil, err
	}
	return &HTTPClient{
		lb:      lb,
		headers: o.Headers,
		timeout: o.Timeout,
		codec:   cd,
		bufs:    newBufferPool(o.Queue.InFlight),
		parts:   newBufferPool(partsPooled(o.Queue)),
		log:     log,
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
	records := requestRecords(batches, parts)
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
	r.records = records
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
	records int
	// busy is set once the transport returned without closing an
	// attempt's body: it may still read the payload, which is then left to
	// the garbage collector rather than reused.
	busy bool
	// pieces: the server refused the request for its size; it is sent in
	// these smaller ones.
	pieces *pieces
}

// Send makes one attempt; its errors are those of HTTPClient.Send. A
// request the server refuses for its size (413) is sent again at once in
// halves (see pieces), and its later attempts send the pieces not yet
// accepted.
func (r *httpRequest) Send(ctx context.Context) error {
	c := r.c
	if r.pieces != nil {
		return r.pieces.send(ctx, c.log, r.sendPiece)
	}
	c.reqBytes.Add(int64(r.encoded))
	inUse, err := c.post(ctx, r.payload, r.records)
	r.busy = r.busy || inUse
	var tl *tooLargeError
	if !errors.As(err, &tl) {
		return err
	}
	req := r.payload
	if c.codec != nil {
		var derr error
		if req, derr = c.codec.decompressRequest(r.payload); derr != nil {
			return export.Permanent(fmt.Errorf("%w; reading the request back to split it: %w", err, derr))
		}
	} else {
		req = bytes.Clone(req)
	}
	if r.pieces, err = newPieces(req, err); err != nil {
		return err
	}
	return r.pieces.send(ctx, c.log, r.sendPiece)
}

// sendPiece sends one piece of a request split for its size.
func (r *httpRequest) sendPiece(ctx context.Context, req []byte) error {
	r.c.reqBytes.Add(int64(len(req)))
	_, n, _ := parseRequest(req)
	if r.c.codec != nil {
		req = r.c.codec.compressBytes(req)
	}
	_, err := r.c.post(ctx, req, n) // a piece's buffer is never reused
	return err
}

// post makes one attempt of payload, an encoded (and compressed) request:
// a POST to an endpoint, and at once to the next one while they fail (see
// balancer). inUse reports that a transport may still read payload.
func (c *HTTPClient) post(ctx context.Context, payload []byte, records int) (inUse bool, err error) {
	a := attempt[*httpEndpoint]{records: records}
	ep, err := c.lb.first(ctx, &a)
	for ep != nil {
		var busy bool
		busy, err = c.postTo(ctx, ep.conn, payload)
		inUse = inUse || busy
		ep = c.lb.done(ctx, &a, ep, err)
	}
	return inUse, err
}

// postTo makes one POST of payload to ep and classifies the answer.
func (c *HTTPClient) postTo(ctx context.Context, ep *httpEndpoint, payload []byte) (inUse bool, err error) {
	return c.postPieces(ctx, ep, [][]byte{payload})
}

// postPieces makes one POST to ep of the payload that is the
// concatenation of pieces, and classifies the answer.
func (c *HTTPClient) postPieces(ctx context.Context, ep *httpEndpoint, pieces [][]byte) (inUse bool, err error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var r io.Reader
	n := 0
	if len(pieces) == 1 {
		r, n = bytes.NewReader(pieces[0]), len(pieces[0])
	} else {
		rs := make([]io.Reader, len(pieces))
		for i, p := range pieces {
			rs[i] = bytes.NewReader(p)
			n += len(p)
		}
		r = io.MultiReader(rs...)
	}
	body := &requestBody{Reader: r, closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, body)
	if err != nil {
		return false, export.Permanent(fmt.Errorf("create request for %s: %w", ep.url, err))
	}
	req.ContentLength = int64(n)
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "logpump")
	if c.codec != nil {
		req.Header.Set("Content-Encoding", c.codec.name)
	}
	resp, err := ep.client.Do(req)
	if err == nil {
		err = c.response(resp)
	} else {
		reason := export.ReasonConnection
		if errors.Is(err, context.DeadlineExceeded) {
			reason = export.ReasonTimeout
		}
		err = export.WithReason(err, reason)
	}
	// The transport may read the body after Do returns.
	select {
	case <-body.closed:
	default:
		inUse = true
	}
	if err != nil {
		return inUse, fmt.Errorf("export logs to %s: %w", ep.url, err)
	}
	return inUse, nil
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
	var reason string
	switch code := resp.StatusCode; {
	case code == http.StatusBadRequest && strings.Contains(err.Error(), "request body too large"):
		// The Collector's answer to a body above its
		// max_request_body_size: a size limit, not a bad request.
		return &tooLargeError{export.WithReason(err, export.ReasonTooLarge)}
	case code == http.StatusBadRequest:
		return export.Permanent(export.WithReason(err, export.ReasonBadRequest))
	case code == http.StatusRequestEntityTooLarge:
		return &tooLargeError{export.WithReason(err, export.ReasonTooLarge)}
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusProxyAuthRequired:
		reason = export.ReasonAuth
	case code == http.StatusNotFound, code == http.StatusMethodNotAllowed:
		reason = export.ReasonNotFound
	case code == http.StatusRequestTimeout, code == http.StatusGatewayTimeout:
		reason = export.ReasonTimeout
	case code == http.StatusTooManyRequests:
		reason = export.ReasonRateLimited
	case code == http.StatusBadGateway, code == http.StatusServiceUnavailable:
		reason = export.ReasonUnavailable
	case code >= 300 && code < 400:
		reason = export.ReasonRedirect
		if loc := resp.Header.Get("Location"); loc != "" {
			err = fmt.Errorf("%w (to %s; redirects are not followed: set the endpoint to where the request belongs)", err, redactURL(loc))
		}
	case code >= 500:
		reason = export.ReasonServerError
	default:
		reason = export.ReasonOther
	}
	// Anything but a refusal of the request itself is waited out: the
	// file holds the records, and an expired token, a wrong path or a
	// failing gateway is fixed by a reload or by the other side.
	err = export.WithReason(err, reason)
	if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return export.RetryAfter(err, d)
	}
	return err
}

// noRedirects makes the client return a redirect as the answer: following
// one would turn the POST into a GET without the request (301, 302, 303),
// and an endpoint that moved is a configuration to fix, not an answer.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// redactURL returns u without its user information and query, which may
// hold credentials.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
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

// withAffinity returns a client that sends through c's endpoints, split
// by the keys of o.Affinity.
func (c *HTTPClient) withAffinity(o Options) export.Client {
	return &affinityClient[*httpEndpoint]{
		lb: c.lb, attrs: o.Affinity.ResourceAttributes, codec: c.codec, log: c.log,
		bufs: newBufferPool(o.Queue.InFlight), parts: newBufferPool(partsPooled(o.Queue)),
		client: c, invalid: &c.invalid, reqBytes: &c.reqBytes,
		sendTo: func(ctx context.Context, ep *endpoint[*httpEndpoint], pieces [][]byte) (bool, error) {
			return c.postPieces(ctx, ep.conn, pieces)
		},
	}
}

// SetEndpointObserver sets who is told how long each attempt on an
// endpoint took. Call it before the first Send.
func (c *HTTPClient) SetEndpointObserver(f func(endpoint string, d time.Duration)) {
	c.lb.observe = f
}

// Endpoints returns the state and counters of each endpoint.
func (c *HTTPClient) Endpoints() []EndpointStats { return c.lb.stats() }

// Close stops resolving names and closes idle connections.
func (c *HTTPClient) Close() error {
	c.lb.close()
	c.codec.close()
	return nil
}

// requestBody reports when the transport is done with the request body.
type requestBody struct {
	io.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *requestBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}
