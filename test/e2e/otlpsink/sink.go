// Package otlpsink runs the OpenTelemetry Collector's OTLP receiver in the
// test process, on 127.0.0.1, and records every log record it accepts. It is
// the far end of logpump's end-to-end tests: the agent exports to a real
// receiver, not to a fake of one.
//
// A [Sink] listens for OTLP/gRPC and OTLP/HTTP on two free loopback ports
// chosen at [Start]. It can be stopped and started again on the same ports
// (an outage as the agent sees it), and a [RejectFunc] makes it answer
// requests with a permanent or a retryable error.
package otlpsink

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configauth"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Record is one accepted log record, copied out of the request.
type Record struct {
	Body string // the body as a string (pcommon.Value.AsString)
	// BodyType is the body's OTLP value type: "Str", "Map", "Bytes", ...
	BodyType string
	// Attributes of the record and of its resource, as plain Go values
	// (string, int64, float64, bool, []byte, []any, map[string]any).
	Attributes map[string]any
	Resource   map[string]any
	// Scope is the instrumentation scope name.
	Scope          string
	Timestamp      time.Time // zero when the record has none
	Observed       time.Time // zero when the record has none
	SeverityNumber int32
	SeverityText   string
}

// RejectFunc decides the answer to one export request before any of its
// records is recorded: nil accepts the request; an error rejects all of it.
// [Permanent] answers that the request itself is bad (gRPC InvalidArgument,
// HTTP 400), [ServerError] what the Collector answers for a permanent
// error of its pipeline (gRPC Internal, HTTP 500), [Status] any gRPC code
// (HTTP: the Collector's mapping of it); any other error is retryable
// (gRPC Unavailable, HTTP 503).
type RejectFunc func(plog.Logs) error

// Permanent answers that the request cannot be used: gRPC InvalidArgument, HTTP 400.
func Permanent(err error) error { return status.Error(codes.InvalidArgument, err.Error()) }

// ServerError answers as the Collector does for a permanent error of its
// own pipeline: gRPC Internal, HTTP 500.
func ServerError(err error) error { return consumererror.NewPermanent(err) }

// Status answers with gRPC code c, and over HTTP with the status the
// Collector maps it to.
func Status(c codes.Code, msg string) error { return status.Error(c, msg) }

// Options configure a [Sink].
type Options struct {
	// OnRecord, when set, receives every accepted record instead of the sink
	// keeping it (for streams too long to keep in memory). Calls are
	// serialised; the Record is the callee's to keep.
	OnRecord func(Record)
	// OnBody, when set, receives only the body of every accepted record,
	// before and instead of OnRecord: the cheapest way to count a long stream.
	OnBody func(string)
	// MaxRecvMsgSizeMiB of the gRPC server; the Collector's default (4) when zero.
	MaxRecvMsgSizeMiB int
	// MaxRequestBodyBytes of the HTTP server; the Collector's default (20 MiB) when zero.
	MaxRequestBodyBytes int64
	// BearerToken, when set, makes both servers authenticate every request
	// through the Collector's auth machinery: an authenticator extension
	// that wants "authorization: Bearer <token>".
	BearerToken string
}

// Stats counts the requests the receiver handed to the sink.
type Stats struct {
	Requests         int // accepted export requests
	Records          int // records in accepted requests
	RejectedRequests int // requests answered with an error
	RejectedRecords  int // records in rejected requests (counted once per attempt)
}

// Sink is a running OTLP receiver that records what it accepts. Its methods
// are safe for concurrent use.
type Sink struct {
	opts     Options
	grpcAddr string
	httpAddr string

	runMu sync.Mutex // serialises Stop and Restart
	rcv   receiver.Logs

	mu      sync.Mutex
	reject  RejectFunc
	records []Record
	stats   Stats
}

// Start picks two free ports on 127.0.0.1 and starts the receiver on them.
func Start(ctx context.Context, opts Options) (*Sink, error) {
	s := &Sink{opts: opts}
	addrs, err := freeAddrs(2)
	if err != nil {
		return nil, err
	}
	s.grpcAddr, s.httpAddr = addrs[0], addrs[1]
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// GRPCEndpoint is host:port of the OTLP/gRPC server.
func (s *Sink) GRPCEndpoint() string { return s.grpcAddr }

// HTTPEndpoint is the base URL of the OTLP/HTTP server (logs go to /v1/logs).
func (s *Sink) HTTPEndpoint() string { return "http://" + s.httpAddr }

// Restart starts the receiver on the sink's ports; it is a no-op when the
// receiver runs. A port still held by another process fails it.
func (s *Sink) Restart(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.rcv != nil {
		return nil
	}
	factory := otlpreceiver.NewFactory()
	cfg := factory.CreateDefaultConfig().(*otlpreceiver.Config)
	grpcCfg := cfg.Protocols.GRPC.GetOrInsertDefault()
	grpcCfg.NetAddr.Endpoint = s.grpcAddr
	if s.opts.MaxRecvMsgSizeMiB > 0 {
		grpcCfg.MaxRecvMsgSizeMiB = s.opts.MaxRecvMsgSizeMiB
	}
	httpCfg := cfg.Protocols.HTTP.GetOrInsertDefault()
	httpCfg.ServerConfig.NetAddr.Endpoint = s.httpAddr
	if s.opts.MaxRequestBodyBytes > 0 {
		httpCfg.ServerConfig.MaxRequestBodySize = s.opts.MaxRequestBodyBytes
	}
	host := component.Host(componenttest.NewNopHost())
	if s.opts.BearerToken != "" {
		grpcCfg.Auth = configoptional.Some(configauth.Config{AuthenticatorID: tokenAuthID})
		httpCfg.ServerConfig.Auth = configoptional.Some(confighttp.AuthConfig{Config: configauth.Config{AuthenticatorID: tokenAuthID}})
		host = authHost{tokenAuth{token: s.opts.BearerToken}}
	}

	next, err := consumer.NewLogs(s.consume)
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	set := receivertest.NewNopSettings(factory.Type())
	rcv, err := factory.CreateLogs(ctx, set, cfg, next)
	if err != nil {
		return fmt.Errorf("create otlp receiver: %w", err)
	}
	// A port just released may be briefly unavailable; retry for a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = rcv.Start(ctx, host)
		if err == nil {
			break
		}
		_ = rcv.Shutdown(ctx)
		if time.Now().After(deadline) {
			return fmt.Errorf("start otlp receiver on %s and %s: %w", s.grpcAddr, s.httpAddr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if rcv, err = factory.CreateLogs(ctx, set, cfg, next); err != nil {
			return fmt.Errorf("create otlp receiver: %w", err)
		}
	}
	s.rcv = rcv
	return nil
}

// Stop shuts the receiver down: its listeners close and requests in
// progress finish. Recorded data stays. Stop is idempotent.
func (s *Sink) Stop(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.rcv == nil {
		return nil
	}
	err := s.rcv.Shutdown(ctx)
	s.rcv = nil
	if err != nil {
		return fmt.Errorf("stop otlp receiver: %w", err)
	}
	return nil
}

// SetReject installs f as the answer to the following requests; nil accepts all.
func (s *Sink) SetReject(f RejectFunc) {
	s.mu.Lock()
	s.reject = f
	s.mu.Unlock()
}

// Records returns a copy of the records kept so far (none when
// Options.OnRecord or Options.OnBody is set).
func (s *Sink) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

// Stats returns the request counters so far.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// WaitFor polls cond every 20 ms until it returns true or ctx ends; it
// returns ctx.Err() in that case.
func (s *Sink) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(s.Stats()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// consume is the receiver's next consumer. Records are copied out of ld,
// which the receiver reuses after the call returns.
func (s *Sink) consume(_ context.Context, ld plog.Logs) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reject != nil {
		if err := s.reject(ld); err != nil {
			s.stats.RejectedRequests++
			s.stats.RejectedRecords += ld.LogRecordCount()
			return err
		}
	}
	s.stats.Requests++
	s.stats.Records += ld.LogRecordCount()
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		var res map[string]any
		if s.opts.OnBody == nil {
			res = rl.Resource().Attributes().AsRaw()
		}
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			sl := sls.At(j)
			scope := sl.Scope().Name()
			lrs := sl.LogRecords()
			for k := range lrs.Len() {
				lr := lrs.At(k)
				if s.opts.OnBody != nil {
					s.opts.OnBody(lr.Body().AsString())
					continue
				}
				r := Record{
					Body:           lr.Body().AsString(),
					BodyType:       lr.Body().Type().String(),
					Attributes:     lr.Attributes().AsRaw(),
					Resource:       res,
					Scope:          scope,
					SeverityNumber: int32(lr.SeverityNumber()),
					SeverityText:   lr.SeverityText(),
				}
				if ts := lr.Timestamp(); ts != 0 {
					r.Timestamp = ts.AsTime()
				}
				if ts := lr.ObservedTimestamp(); ts != 0 {
					r.Observed = ts.AsTime()
				}
				if s.opts.OnRecord != nil {
					s.opts.OnRecord(r)
				} else {
					s.records = append(s.records, r)
				}
			}
		}
	}
	return nil
}

// freeAddrs returns n distinct free ports on 127.0.0.1. Their listeners
// are all open before any is closed: a port just closed is the kernel's
// next pick, and two ports taken one after the other were once the same.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)))
	}
	return addrs, nil
}
