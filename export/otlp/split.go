package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logpump/logpump/export"
)

// tooLargeError: the endpoint refused a request for its size (HTTP 413, a
// gRPC message larger than the server's maximum). The request is sent again
// in halves (see pieces); it never reaches the queue.
type tooLargeError struct{ err error }

func (e *tooLargeError) Error() string { return e.err.Error() }
func (e *tooLargeError) Unwrap() error { return e.err }

// resourceLogs and scopeLogs are a request taken apart down to its log
// records, which are kept encoded: head holds every other field of the
// message, encoded, in its order.
type resourceLogs struct {
	head   []byte
	scopes []scopeLogs
}

type scopeLogs struct {
	head    []byte
	records [][]byte
}

// parseRequest takes an encoded ExportLogsServiceRequest apart.
func parseRequest(b []byte) ([]resourceLogs, int, error) {
	var out []resourceLogs
	n := 0
	for len(b) > 0 {
		num, typ, val, rest, err := nextField(b)
		if err != nil {
			return nil, 0, err
		}
		b = rest
		if num != fRequestResourceLogs || typ != protowire.BytesType {
			continue
		}
		rl, err := parseResourceLogs(fieldBytes(val))
		if err != nil {
			return nil, 0, err
		}
		for _, s := range rl.scopes {
			n += len(s.records)
		}
		out = append(out, rl)
	}
	return out, n, nil
}

func parseResourceLogs(b []byte) (resourceLogs, error) {
	var rl resourceLogs
	for len(b) > 0 {
		start := b
		num, typ, val, rest, err := nextField(b)
		if err != nil {
			return rl, err
		}
		b = rest
		if num != fResourceLogsScopeLogs || typ != protowire.BytesType {
			rl.head = append(rl.head, start[:len(start)-len(rest)]...)
			continue
		}
		sl, err := parseScopeLogs(fieldBytes(val))
		if err != nil {
			return rl, err
		}
		rl.scopes = append(rl.scopes, sl)
	}
	return rl, nil
}

func parseScopeLogs(b []byte) (scopeLogs, error) {
	var sl scopeLogs
	for len(b) > 0 {
		start := b
		num, typ, val, rest, err := nextField(b)
		if err != nil {
			return sl, err
		}
		b = rest
		if num != fScopeLogsRecords || typ != protowire.BytesType {
			sl.head = append(sl.head, start[:len(start)-len(rest)]...)
			continue
		}
		sl.records = append(sl.records, fieldBytes(val))
	}
	return sl, nil
}

// fieldBytes returns the content of a length-delimited field's value, as
// nextField returned it (checked whole).
func fieldBytes(val []byte) []byte {
	v, _ := protowire.ConsumeBytes(val)
	return v
}

// appendRecords appends a request holding the records [lo, hi) of rls, in
// their order and with their resources and scopes, to dst.
func appendRecords(dst []byte, rls []resourceLogs, lo, hi int) []byte {
	i := 0 // index of the next record
	for _, rl := range rls {
		var body []byte
		for _, sl := range rl.scopes {
			a, b := max(lo-i, 0), min(hi-i, len(sl.records))
			i += len(sl.records)
			if a >= b {
				continue
			}
			var sb []byte
			sb = append(sb, sl.head...)
			for _, r := range sl.records[a:b] {
				sb = protowire.AppendTag(sb, fScopeLogsRecords, protowire.BytesType)
				sb = protowire.AppendBytes(sb, r)
			}
			body = protowire.AppendTag(body, fResourceLogsScopeLogs, protowire.BytesType)
			body = protowire.AppendBytes(body, sb)
		}
		if body == nil {
			continue
		}
		dst = protowire.AppendTag(dst, fRequestResourceLogs, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(len(rl.head)+len(body)))
		dst = append(dst, rl.head...)
		dst = append(dst, body...)
	}
	return dst
}

// splitRequest splits an encoded request into two holding half of its
// records each, in order. ok is false when it holds fewer than two records
// (it cannot be split); n is how many it holds.
func splitRequest(req []byte) (a, b []byte, n int, ok bool, err error) {
	rls, n, err := parseRequest(req)
	if err != nil || n < 2 {
		return nil, nil, n, false, err
	}
	return appendRecords(nil, rls, 0, n/2), appendRecords(nil, rls, n/2, n), n, true, nil
}

// decompressRequest returns the encoded request a codec compressed.
func (c *codec) decompressRequest(z []byte) ([]byte, error) {
	if c.zenc != nil {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.DecodeAll(z, nil)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}

// compressBytes compresses one encoded request.
func (c *codec) compressBytes(req []byte) []byte {
	s := c.begin(nil)
	s.compress(req)
	return s.end()
}

// pieces sends a request that the endpoint refused for its size in
// smaller requests: halves, and halves of those, as long as they are still
// refused. A request that is one record and still too large is dropped and
// counted as rejected: no attempt could ever deliver it. Pieces accepted stay
// accepted when a later one fails with a retryable error: the next attempt
// of the request goes on with the pieces not yet sent, so none is sent twice.
type pieces struct {
	todo     [][]byte // encoded, uncompressed; todo[0] goes next
	rejected int64    // records rejected by the endpoint or too large alone
	tooLarge int64    // of which records too large alone
	message  string
}

// newPieces splits req (uncompressed), refused with err, into two pieces.
// When it cannot be split (a single record), every piece is settled already
// and the record is counted as too large.
func newPieces(req []byte, err error) (*pieces, error) {
	p := &pieces{}
	if e := p.split(req, err); e != nil {
		return nil, e
	}
	return p, nil
}

func (p *pieces) split(req []byte, cause error) error {
	a, b, n, ok, err := splitRequest(req)
	if err != nil {
		return export.Permanent(fmt.Errorf("split a request refused for its size (%v): %w", cause, err))
	}
	if !ok {
		p.rejected += int64(n)
		p.tooLarge += int64(n)
		p.message = fmt.Sprintf("a single record larger than the endpoint accepts: %v", cause)
		return nil
	}
	p.todo = append([][]byte{a, b}, p.todo...)
	return nil
}

// send sends the pieces not yet sent, in order, through one, which makes
// one attempt of one encoded request. It returns nil when every piece is
// accepted, a *export.PartialError when records were rejected or dropped
// as too large, and the first other error as it came (the next call goes on
// from that piece).
func (p *pieces) send(ctx context.Context, log *slog.Logger, one func(ctx context.Context, req []byte) error) error {
	for len(p.todo) > 0 {
		req := p.todo[0]
		err := one(ctx, req)
		var partial *export.PartialError
		var tl *tooLargeError
		switch {
		case err == nil:
		case errors.As(err, &partial):
			p.rejected += partial.Rejected
			p.message = partial.Message
		case errors.As(err, &tl):
			p.todo = p.todo[1:]
			if e := p.split(req, err); e != nil {
				return e
			}
			log.Debug("request refused for its size, sending it in halves", "bytes", len(req), "err", err)
			continue
		default:
			return err
		}
		p.todo = p.todo[1:]
	}
	if p.rejected > 0 {
		return &export.PartialError{Rejected: p.rejected, Message: p.message}
	}
	return nil
}
