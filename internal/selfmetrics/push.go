package selfmetrics

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// PushOptions configure [OTLPReader].
type PushOptions struct {
	// Endpoint is the host:port of an OTLP/gRPC receiver (a collector).
	Endpoint string
	// Insecure sends without TLS: for a collector on loopback only.
	Insecure bool
	// Headers are sent with every request (authentication).
	Headers map[string]string
	// Interval between pushes; one minute when zero.
	Interval time.Duration
}

// OTLPReader returns a reader that pushes the agent's metrics to an
// OTLP/gRPC receiver every Interval; pass it in [Options.Readers]. It
// connects on the first push; [Metrics.Shutdown] pushes once more. Unset
// options fall back to the standard OTEL_EXPORTER_OTLP_METRICS_* and
// OTEL_EXPORTER_OTLP_* variables.
func OTLPReader(ctx context.Context, o PushOptions) (sdkmetric.Reader, error) {
	var opts []otlpmetricgrpc.Option
	if o.Endpoint != "" {
		opts = append(opts, otlpmetricgrpc.WithEndpoint(o.Endpoint))
	}
	if o.Insecure {
		opts = append(opts, otlpmetricgrpc.WithInsecure())
	}
	if len(o.Headers) > 0 {
		opts = append(opts, otlpmetricgrpc.WithHeaders(o.Headers))
	}
	exp, err := otlpmetricgrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create OTLP metric exporter: %w", err)
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	return sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(o.Interval)), nil
}
