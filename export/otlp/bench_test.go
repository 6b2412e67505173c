package otlp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// discardCodec lets the benchmark server skip decoding, so that the numbers
// are the client's: encoding, compression and transport.
type discardCodec struct{}

func (discardCodec) Marshal(any) (mem.BufferSlice, error) { return nil, nil }
func (discardCodec) Unmarshal(mem.BufferSlice, any) error { return nil }
func (discardCodec) Name() string                         { return "proto" }

func startDiscardGRPC(b *testing.B, compression string) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(discardCodec{}),
		//lint:ignore SA1019 the benchmark server decompresses the client's requests.
		grpc.RPCDecompressor(&countingDecompressor{name: compression}))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.logs.v1.LogsService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var discard struct{}
				return &discard, dec(&discard)
			},
		}},
	}, struct{}{})
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func benchmarkSend(b *testing.B, c export.Client) {
	const n = 1000
	batches := []*event.Batch{benchBatch(n)}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(b.Context(), batches); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// BenchmarkSend measures one 1000-record request over loopback: encoding,
// compression and transport; the servers discard what they receive.
func BenchmarkSend(b *testing.B) {
	for _, compression := range []string{"none", "gzip", "zstd"} {
		b.Run("grpc/"+compression, func(b *testing.B) {
			addr := startDiscardGRPC(b, compression)
			o := DefaultOptions()
			o.Endpoint = "http://" + addr
			o.Compression = compression
			o, err := Resolve(ProtocolGRPC, o, func(string) string { return "" })
			if err != nil {
				b.Fatal(err)
			}
			c, err := NewGRPC(o, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			benchmarkSend(b, c)
		})
		b.Run("http/"+compression, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
			}))
			defer srv.Close()
			o := DefaultOptions()
			o.Endpoint = srv.URL
			o.Compression = compression
			o, err := Resolve(ProtocolHTTP, o, func(string) string { return "" })
			if err != nil {
				b.Fatal(err)
			}
			c, err := NewHTTP(o, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			benchmarkSend(b, c)
		})
	}
}

// BenchmarkCompress measures the compression of one request of 1,000
// records, as the clients compress it before sending: what gzip or zstd adds
// per record to encoding and transport, without the network and the
// receiver's decompression that BenchmarkSend includes. The records are
// parsed JSON lines, and plain lines as varied as the bench/ workload's
// (the end-to-end gzip and zstd scenarios send those).
func BenchmarkCompress(b *testing.B) {
	const n = 1000
	for _, data := range []struct {
		name string
		req  []byte
	}{
		{"json", AppendRequest(nil, []*event.Batch{parsedBatch(n)})},
		{"plain", AppendRequest(nil, []*event.Batch{plainBatch(n)})},
	} {
		for _, name := range []string{"gzip", "zstd"} {
			b.Run(data.name+"/"+name, func(b *testing.B) { benchmarkCompress(b, name, data.req, n) })
		}
	}
}

// plainBatch returns n unparsed records of plain lines like the bench/
// workload's: a timestamp, a level, a service, a sequence number and a
// request line whose numbers and names vary from line to line.
func plainBatch(n int) *event.Batch {
	levels := []string{"INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"}
	services := []string{"checkout", "payments", "catalog", "search", "auth"}
	methods := []string{"GET", "GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v1/items/", "/api/v1/orders/", "/api/v1/users/", "/static/img/"}
	b := event.NewBatch()
	x := uint64(1)
	for i := range n {
		x ^= x << 13 // xorshift: varied, repeatable
		x ^= x >> 7
		x ^= x << 17
		line := b.Copy(fmt.Appendf(nil, "2026-01-02T03:04:%02d.%06dZ %s %s seq=%d %s %s%d status=%d bytes=%d dur_ms=%d user=u%d",
			i/1000%60, i%1000000, levels[x%6], services[x>>8%5], i, methods[x>>16%5], paths[x>>24%4],
			x>>28%100000, []int{200, 200, 201, 404, 500}[x>>45%5], x>>32%20000, x>>48%900, x>>52%100000))
		r := b.Next()
		r.SetValidBody(line)
		r.Observed = 1_700_000_000_000_000_000 + int64(i)*1000
		r.Attrs = append(r.Attrs, event.KeyValue{Key: "log.file.name", Value: event.String("plain.log")})
	}
	return b
}

func benchmarkCompress(b *testing.B, name string, req []byte, n int) {
	c, err := newCodec(name, export.BufferOptions{Size: 1, InFlight: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	var out []byte
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		s := c.begin(out[:0]) // one request, compressed whole
		s.compress(req)
		out = s.end()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	b.ReportMetric(float64(len(out))/float64(len(req)), "ratio")
}

// BenchmarkSendEndpoints is BenchmarkSend without compression over one
// endpoint given as endpoints, and over three: what balancing costs per
// request (the receivers are the same discarding servers).
func BenchmarkSendEndpoints(b *testing.B) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		for _, n := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/%d", protocol, n), func(b *testing.B) {
				o := DefaultOptions()
				o.Compression = "none"
				for range n {
					if protocol == ProtocolGRPC {
						o.Endpoints = append(o.Endpoints, "http://"+startDiscardGRPC(b, "none"))
						continue
					}
					srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						io.Copy(io.Discard, r.Body)
					}))
					b.Cleanup(srv.Close)
					o.Endpoints = append(o.Endpoints, srv.URL)
				}
				benchmarkSend(b, newClient(b, protocol, o))
			})
		}
	}
}

// BenchmarkSendAffinity is BenchmarkSendEndpoints over three gRPC
// endpoints for a request of 1000 records in 8 batches of 8 pods, without
// and with affinity on k8s.pod.name: what the split by key costs per
// request (the pods' parts go to their owners, one call per owner: 3
// calls unless the ports drawn make one endpoint own none of them).
func BenchmarkSendAffinity(b *testing.B) {
	for _, affinity := range []bool{false, true} {
		b.Run(fmt.Sprintf("affinity=%v", affinity), func(b *testing.B) {
			o := DefaultOptions()
			o.Compression = "none"
			for range 3 {
				o.Endpoints = append(o.Endpoints, "http://"+startDiscardGRPC(b, "none"))
			}
			if affinity {
				o.Affinity = &AffinityOptions{ResourceAttributes: []string{"k8s.pod.name"}}
			}
			c := newClient(b, ProtocolGRPC, o)
			var batches []*event.Batch
			for i := range 8 {
				bt := benchBatch(125)
				res := *bt.Resource
				res.Attrs = append([]event.KeyValue{{Key: "k8s.pod.name", Value: event.String(fmt.Sprintf("checkout-%d", i))}}, res.Attrs[1:]...)
				bt.Resource = &res
				batches = append(batches, bt)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Send(b.Context(), batches); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
		})
	}
}

// newClient resolves o for protocol and returns its client (New), closed
// at the end of the test or benchmark.
func newClient(tb testing.TB, protocol string, o Options) export.Client {
	tb.Helper()
	o, err := Resolve(protocol, o, func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	c, err := New(o, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
