package otlp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/export"
)

// backend is an OTLP receiver on a fixed loopback address that can be
// stopped and started again there: gRPC (a logsServer) or HTTP.
type backend struct {
	t        *testing.T
	protocol string
	addr     string
	requests atomic.Int64

	mu   sync.Mutex
	stop func()
}

func newBackend(t *testing.T, protocol, addr string) *backend {
	t.Helper()
	b := &backend{t: t, protocol: protocol, addr: addr}
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.kill)
	return b
}

func (b *backend) start() error {
	lis, err := net.Listen("tcp", b.addr)
	if err != nil {
		return err
	}
	b.addr = lis.Addr().String()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.protocol == ProtocolGRPC {
		srv := grpc.NewServer()
		collogspb.RegisterLogsServiceServer(srv, &logsServer{reply: func(*collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
			b.requests.Add(1)
			return &collogspb.ExportLogsServiceResponse{}, nil
		}})
		go srv.Serve(lis)
		b.stop = srv.Stop
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		b.requests.Add(1)
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(lis)
	b.stop = func() { srv.Close() }
	return nil
}

// kill stops the receiver: connections are closed, the port refuses.
func (b *backend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop != nil {
		b.stop()
		b.stop = nil
	}
}

// endpoint is the backend as an entry of Options.Endpoints.
func (b *backend) endpoint() string {
	if b.protocol == ProtocolGRPC {
		return "http://" + b.addr
	}
	return "http://" + b.addr + "/v1/logs"
}

type sender interface {
	export.Client
	Endpoints() []EndpointStats
}

func newBalanced(t *testing.T, protocol string, endpoints []string, lookup lookupFunc, interval time.Duration) sender {
	t.Helper()
	o := DefaultOptions()
	o.Endpoints = endpoints
	o.ResolveInterval = interval
	o.Compression = "none"
	o.Timeout = 2 * time.Second
	o.Retry.InitialInterval = 100 * time.Millisecond
	o.Retry.MaxInterval = 200 * time.Millisecond
	return clientFor(t, protocol, o, lookup)
}

// clientFor resolves o for protocol and returns its client, closed at the
// end of the test.
func clientFor(t *testing.T, protocol string, o Options, lookup lookupFunc) sender {
	t.Helper()
	o, err := Resolve(protocol, o, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var c sender
	if protocol == ProtocolGRPC {
		c, err = newGRPC(o, nil, lookup)
	} else {
		c, err = newHTTP(o, nil, lookup)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// backends starts n receivers on 127.0.0.1 and returns them with a client
// listing them all as endpoints.
func backends(t *testing.T, protocol string, n int) ([]*backend, sender) {
	t.Helper()
	var bs []*backend
	var eps []string
	for range n {
		b := newBackend(t, protocol, "127.0.0.1:0")
		bs, eps = append(bs, b), append(eps, b.endpoint())
	}
	return bs, newBalanced(t, protocol, eps, nil, 0)
}

func sendN(t *testing.T, c export.Client, n int) {
	t.Helper()
	for i := range n {
		if err := c.Send(context.Background(), sampleBatches()); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

func counts(bs []*backend) []int64 {
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = b.requests.Load()
	}
	return out
}

// TestBalancerFailover: requests spread evenly over three endpoints; one
// killed costs no request (each is sent at once to another), it is marked
// down, and once it is back it is probed and takes its share again.
func TestBalancerFailover(t *testing.T) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			bs, c := backends(t, protocol, 3)

			sendN(t, c, 300)
			for i, got := range counts(bs) {
				if got != 100 {
					t.Errorf("endpoint %d got %d of 300 requests, want 100 (round robin)", i, got)
				}
			}

			bs[1].kill()
			before := counts(bs)
			sendN(t, c, 300) // not one fails: those meeting the dead endpoint go to the next
			after := counts(bs)
			if d := after[0] - before[0] + after[2] - before[2]; d != 300 {
				t.Errorf("the two live endpoints took %d of 300 requests, want all", d)
			}
			st := c.Endpoints()
			if st[1].State != EndpointDown || st[1].Errors == 0 || st[1].Reason == "" {
				t.Errorf("killed endpoint: %+v, want down with errors and a reason", st[1])
			}
			if st[0].State != EndpointUp || st[2].State != EndpointUp {
				t.Errorf("live endpoints: %+v, %+v, want up", st[0], st[2])
			}
			// Taken out: far fewer attempts than its share (100) while down,
			// one probe per backoff (100 to 200 ms).
			if st[1].Requests-100 > 50 {
				t.Errorf("down endpoint got %d attempts of 300, want few (probes only)", st[1].Requests-100)
			}

			if err := bs[1].start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for c.Endpoints()[1].State != EndpointUp {
				if time.Now().After(deadline) {
					t.Fatalf("restarted endpoint not probed back: %+v", c.Endpoints()[1])
				}
				sendN(t, c, 1)
				time.Sleep(10 * time.Millisecond)
			}
			before = counts(bs)
			sendN(t, c, 300)
			after = counts(bs)
			for i := range bs {
				if d := after[i] - before[i]; d < 90 || d > 110 {
					t.Errorf("after the restart endpoint %d got %d of 300 requests, want about 100", i, d)
				}
			}
		})
	}
}

// TestBalancerAllDown: with every endpoint down an attempt fails (the
// queue retries it) after trying each; the first one back takes requests.
func TestBalancerAllDown(t *testing.T) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			bs, c := backends(t, protocol, 2)
			sendN(t, c, 2)
			bs[0].kill()
			bs[1].kill()
			for range 3 {
				err := c.Send(context.Background(), sampleBatches())
				if err == nil || export.IsPermanent(err) {
					t.Fatalf("send with every endpoint down: %v, want a retryable error", err)
				}
			}
			for _, st := range c.Endpoints() {
				if st.State != EndpointDown {
					t.Errorf("%s: %s, want down", st.Name, st.State)
				}
			}
			if err := bs[1].start(); err != nil {
				t.Fatal(err)
			}
			// Not waiting for its backoff: with none up every endpoint is tried.
			deadline := time.Now().Add(10 * time.Second)
			for c.Send(context.Background(), sampleBatches()) != nil {
				if time.Now().After(deadline) {
					t.Fatal("no request accepted after an endpoint came back")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestBalancerPayloadErrorsStayUp: an answer about the request (here a
// bad request) is the request's: it is not tried elsewhere and leaves the
// endpoint up.
func TestBalancerPayloadErrorsStayUp(t *testing.T) {
	var hits [2]atomic.Int64
	var eps []string
	for i := range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			hits[i].Add(1)
			http.Error(w, "malformed", http.StatusBadRequest)
		})}
		go srv.Serve(lis)
		t.Cleanup(func() { srv.Close() })
		eps = append(eps, "http://"+lis.Addr().String())
	}
	c := newBalanced(t, ProtocolHTTP, eps, nil, 0)
	for range 4 {
		if err := c.Send(context.Background(), sampleBatches()); !export.IsPermanent(err) {
			t.Fatalf("send: %v, want a permanent error", err)
		}
	}
	if a, b := hits[0].Load(), hits[1].Load(); a != 2 || b != 2 {
		t.Errorf("requests per endpoint %d, %d; want 2, 2 (each sent once)", a, b)
	}
	for _, st := range c.Endpoints() {
		if st.State != EndpointUp {
			t.Errorf("%s: %s after bad-request answers, want up", st.Name, st.State)
		}
	}
}

// loopbackTrio listens on one port at 127.0.0.2, .3 and .4: three
// addresses a name can resolve to with the port of the configuration.
func loopbackTrio(t *testing.T, protocol string) (port string, bs []*backend) {
	t.Helper()
	for range 20 {
		lis, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2 here: %v", err)
		}
		_, port, _ = net.SplitHostPort(lis.Addr().String())
		lis.Close()
		bs = bs[:0]
		ok := true
		for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
			b := &backend{t: t, protocol: protocol, addr: net.JoinHostPort(ip, port)}
			if err := b.start(); err != nil {
				ok = false
				break
			}
			t.Cleanup(b.kill)
			bs = append(bs, b)
		}
		if ok {
			return port, bs
		}
		for _, b := range bs {
			b.kill()
		}
	}
	t.Fatal("no port free on 127.0.0.2-4")
	return "", nil
}

// TestBalancerResolvesNames: a name resolves to every address it has,
// each an endpoint; when the set changes, a new address takes requests and
// a removed one takes none.
func TestBalancerResolvesNames(t *testing.T) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			port, bs := loopbackTrio(t, protocol)
			var mu sync.Mutex
			addrs := []string{"127.0.0.2", "127.0.0.3"}
			var lookups atomic.Int64
			lookup := func(_ context.Context, host string) ([]string, error) {
				lookups.Add(1)
				if host != "gateway.test" {
					return nil, fmt.Errorf("no such host %q", host)
				}
				mu.Lock()
				defer mu.Unlock()
				return append([]string(nil), addrs...), nil
			}
			c := newBalanced(t, protocol, []string{"http://gateway.test:" + port}, lookup, 50*time.Millisecond)
			sendN(t, c, 100)
			if got := counts(bs); got[0] != 50 || got[1] != 50 || got[2] != 0 {
				t.Errorf("requests per address %v, want [50 50 0]", got)
			}
			st := c.Endpoints()
			if len(st) != 2 || !strings.Contains(st[0].Name, "127.0.0.2:"+port) {
				t.Errorf("endpoints %+v, want one per address", st)
			}

			mu.Lock()
			addrs = []string{"127.0.0.4", "127.0.0.3"}
			mu.Unlock()
			n := lookups.Load()
			for lookups.Load() < n+2 {
				time.Sleep(10 * time.Millisecond)
			}
			before := counts(bs)
			sendN(t, c, 100)
			after := counts(bs)
			if d := after[0] - before[0]; d != 0 {
				t.Errorf("removed address got %d requests, want 0", d)
			}
			if d := after[2] - before[2]; d != 50 {
				t.Errorf("new address got %d of 100 requests, want 50", d)
			}
		})
	}
}

func TestEndpointsOptions(t *testing.T) {
	noenv := func(string) string { return "" }
	o := DefaultOptions()
	o.Endpoints = []string{"http://a:4318", "http://b:4318/custom"}
	got, err := Resolve(ProtocolHTTP, o, noenv)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://a:4318/v1/logs", "http://b:4318/custom"}; fmt.Sprint(got.Endpoints) != fmt.Sprint(want) {
		t.Errorf("endpoints %v, want %v", got.Endpoints, want)
	}
	if got.ResolveInterval != 30*time.Second || got.Endpoint != "" {
		t.Errorf("resolve_interval %v, endpoint %q; want 30s and none", got.ResolveInterval, got.Endpoint)
	}

	o = DefaultOptions()
	o.Endpoint = "a:4317"
	o.Endpoints = []string{"b:4317", "ftp://c"}
	_, err = Resolve(ProtocolGRPC, o, noenv)
	var keys []string
	for _, e := range unjoin(err) {
		var fe *config.FieldError
		if errors.As(e, &fe) {
			keys = append(keys, fe.Key)
		}
	}
	if want := "[endpoints endpoints.1]"; fmt.Sprint(keys) != want {
		t.Errorf("errors on keys %v (%v), want %s", keys, err, want)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// TestBalancerTLSKeepsTheName: an address of a resolved name is dialled
// with the name as TLS server name (and gRPC authority), so that the
// gateway's certificate for the name verifies.
func TestBalancerTLSKeepsTheName(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]string, error) {
		if host != "gateway.test" {
			return nil, fmt.Errorf("no such host %q", host)
		}
		return []string{"127.0.0.1"}, nil
	}
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			p := newTestPKI(t, false)
			var sni atomic.Value
			srvTLS := p.server.Clone()
			srvTLS.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				sni.Store(h.ServerName)
				return nil, nil
			}
			var port string
			s := &logsServer{}
			if protocol == ProtocolGRPC {
				_, port, _ = net.SplitHostPort(startGRPC(t, s, grpc.Creds(credentials.NewTLS(srvTLS))))
			} else {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
				}))
				srv.TLS = srvTLS
				srv.StartTLS()
				t.Cleanup(srv.Close)
				_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
			}
			o := DefaultOptions()
			o.Endpoints = []string{"https://gateway.test:" + port}
			o.TLS = TLSOptions{CAFile: p.caFile}
			o.Timeout = 5 * time.Second
			c := clientFor(t, protocol, o, lookup)
			if err := c.Send(t.Context(), sampleBatches()); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := sni.Load(); got != "gateway.test" {
				t.Errorf("TLS server name %q, want gateway.test", got)
			}
			if protocol == ProtocolGRPC {
				if got := s.headers[0].Get(":authority"); len(got) != 1 || got[0] != "gateway.test:"+port {
					t.Errorf(":authority %q, want gateway.test:%s", got, port)
				}
			}
		})
	}
}

// TestBalancerAttemptAllocatesNothing: picking an endpoint and recording
// its success costs no allocation (it is on every request's path).
func TestBalancerAttemptAllocatesNothing(t *testing.T) {
	b, err := newBalancer(balancerOptions[int]{
		entries: []entry{{raw: "a"}, {raw: "b"}, {raw: "c"}},
		dial:    func(e entry, _ string) (int, error) { return len(e.raw), nil },
		closer:  func(int) {},
		retry:   export.DefaultQueueOptions().Retry,
		log:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		var a attempt[int]
		ep, err := b.first(ctx, &a)
		if err != nil {
			t.Fatal(err)
		}
		b.done(ctx, &a, ep, nil)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per attempt, want 0", allocs)
	}
}

// TestEndpointStatsCountRecordsAndLatency: each endpoint counts the records
// it accepted and remembers its attempts' latency, and the observer is told
// of every attempt, by endpoint.
func TestEndpointStatsCountRecordsAndLatency(t *testing.T) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			bs, c := backends(t, protocol, 2)
			var mu sync.Mutex
			observed := map[string]int{}
			c.(interface {
				SetEndpointObserver(func(string, time.Duration))
			}).SetEndpointObserver(func(ep string, d time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				if d > 0 {
					observed[ep]++
				}
			})
			sendN(t, c, 6) // 2 records each
			bs[1].kill()
			sendN(t, c, 2)
			var records, requests int64
			mu.Lock()
			defer mu.Unlock()
			for _, ep := range c.Endpoints() {
				records += ep.Records
				requests += ep.Requests
				if ep.LastLatency <= 0 || ep.MedianLatency <= 0 {
					t.Errorf("%s: last latency %v, median %v; want both set", ep.Name, ep.LastLatency, ep.MedianLatency)
				}
				if observed[ep.Name] != int(ep.Requests) {
					t.Errorf("%s: %d attempts observed, %d made", ep.Name, observed[ep.Name], ep.Requests)
				}
			}
			if records != 16 {
				t.Errorf("endpoints accepted %d records, want 16", records)
			}
			if requests < 9 {
				t.Errorf("%d attempts, want at least 9 (8 requests, at least one failed on the stopped endpoint)", requests)
			}
		})
	}
}
