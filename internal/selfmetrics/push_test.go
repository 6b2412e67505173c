package selfmetrics

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

// receiver is an OTLP/gRPC metrics receiver on loopback that keeps the
// names of the metrics it is sent.
type receiver struct {
	collectormetrics.UnimplementedMetricsServiceServer
	mu    sync.Mutex
	names []string
}

func (r *receiver) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				r.names = append(r.names, m.Name)
			}
		}
	}
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

func TestOTLPPushOnShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	recv := &receiver{}
	collectormetrics.RegisterMetricsServiceServer(srv, recv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		<-served
	}()

	ctx := context.Background()
	// A long interval: only the final push on Shutdown can deliver.
	r, err := OTLPReader(ctx, PushOptions{Endpoint: ln.Addr().String(), Insecure: true, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Version: "1.2.3", Readers: []sdkmetric.Reader{r}})
	if err != nil {
		t.Fatal(err)
	}
	m.Source("system").Read(10, 100)
	m.Exporter("gateway").Sent(10)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, want := range []string{ReadLines, ReadBytes, SentRecords, BuildInfo, LastReloadSuccessful} {
		if !slices.Contains(recv.names, want) {
			t.Errorf("pushed metrics: %s missing from %v", want, recv.names)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
