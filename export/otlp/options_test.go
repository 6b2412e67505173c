package otlp

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/export"
)

func TestResolve(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name     string
		protocol string
		edit     func(*Options) // explicit options, as from YAML
		env      map[string]string
		want     func(*Options) // changes from the resolved defaults
	}{
		{
			name: "grpc defaults", protocol: ProtocolGRPC,
			want: func(o *Options) {},
		},
		{
			name: "http defaults", protocol: ProtocolHTTP,
			want: func(o *Options) { o.Endpoint = DefaultHTTPEndpoint },
		},
		{
			name: "generic endpoint, grpc verbatim", protocol: ProtocolGRPC,
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"},
			want: func(o *Options) { o.Endpoint = "https://collector:4317" },
		},
		{
			name: "generic endpoint, http gets the logs path", protocol: ProtocolHTTP,
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318"},
			want: func(o *Options) { o.Endpoint = "https://collector:4318/v1/logs" },
		},
		{
			name: "generic endpoint with a path and slash", protocol: ProtocolHTTP,
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw.example/otlp/"},
			want: func(o *Options) { o.Endpoint = "https://gw.example/otlp/v1/logs" },
		},
		{
			name: "logs endpoint wins and is verbatim", protocol: ProtocolHTTP,
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT":      "https://generic:4318",
				"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs:4318/custom",
			},
			want: func(o *Options) { o.Endpoint = "https://logs:4318/custom" },
		},
		{
			name: "yaml endpoint wins over env", protocol: ProtocolGRPC,
			edit: func(o *Options) { o.Endpoint = "collector:4317" },
			env:  map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://other:4317"},
			want: func(o *Options) { o.Endpoint = "collector:4317" },
		},
		{
			name: "yaml http endpoint without path gets the logs path", protocol: ProtocolHTTP,
			edit: func(o *Options) { o.Endpoint = "http://collector:4318" },
			want: func(o *Options) { o.Endpoint = "http://collector:4318/v1/logs" },
		},
		{
			name: "yaml http endpoint with path is verbatim", protocol: ProtocolHTTP,
			edit: func(o *Options) { o.Endpoint = "http://collector:4318/ingest" },
			want: func(o *Options) { o.Endpoint = "http://collector:4318/ingest" },
		},
		{
			name: "headers: logs replaces generic, yaml overrides per key", protocol: ProtocolGRPC,
			edit: func(o *Options) { o.Headers = map[string]string{"x-tenant": "yaml"} },
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_HEADERS":      "generic=1",
				"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "Authorization=Bearer%20abc, x-tenant=env ,empty=",
			},
			want: func(o *Options) {
				o.Headers = map[string]string{"Authorization": "Bearer abc", "x-tenant": "yaml", "empty": ""}
			},
		},
		{
			name: "timeout in milliseconds", protocol: ProtocolGRPC,
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"},
			want: func(o *Options) { o.Timeout = 2500 * time.Millisecond },
		},
		{
			name: "yaml timeout wins", protocol: ProtocolGRPC,
			edit: func(o *Options) { o.Timeout = time.Second },
			env:  map[string]string{"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "2500"},
			want: func(o *Options) { o.Timeout = time.Second },
		},
		{
			name: "compression", protocol: ProtocolHTTP,
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_COMPRESSION":      "gzip",
				"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none",
			},
			want: func(o *Options) { o.Endpoint = DefaultHTTPEndpoint; o.Compression = "none" },
		},
		{
			name: "insecure and certificates", protocol: ProtocolGRPC,
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_INSECURE":                "true",
				"OTEL_EXPORTER_OTLP_LOGS_INSECURE":           "false",
				"OTEL_EXPORTER_OTLP_CERTIFICATE":             "/etc/ca.pem",
				"OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE": "/etc/client.pem",
				"OTEL_EXPORTER_OTLP_CLIENT_KEY":              "/etc/client-key.pem",
			},
			want: func(o *Options) {
				o.TLS = TLSOptions{Insecure: &no, CAFile: "/etc/ca.pem", CertFile: "/etc/client.pem", KeyFile: "/etc/client-key.pem"}
			},
		},
		{
			name: "yaml insecure wins", protocol: ProtocolGRPC,
			edit: func(o *Options) { o.TLS.Insecure = &yes },
			env:  map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "false"},
			want: func(o *Options) { o.TLS.Insecure = &yes },
		},
		{
			name: "protocol from env", protocol: "",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc"},
			want: func(o *Options) {},
		},
		{
			name: "protocol defaults to http/protobuf", protocol: "",
			want: func(o *Options) { o.Protocol = ProtocolHTTP; o.Endpoint = DefaultHTTPEndpoint },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := DefaultOptions()
			if tt.edit != nil {
				tt.edit(&in)
			}
			got, err := Resolve(tt.protocol, in, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			want := DefaultOptions()
			want.Protocol = tt.protocol
			if want.Protocol == "" {
				want.Protocol = ProtocolGRPC // as the env says; a case without env overrides it
			}
			want.Endpoint = DefaultGRPCEndpoint
			want.Timeout = 10 * time.Second
			want.Compression = "gzip"
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("resolved options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		edit     func(*Options)
		env      map[string]string
		want     []string // FieldError keys, or substrings of other errors
	}{
		{"bad compression", ProtocolGRPC, func(o *Options) { o.Compression = "lz4" }, nil, []string{"compression"}},
		{"bad env timeout", ProtocolGRPC, nil, map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, []string{"OTEL_EXPORTER_OTLP_TIMEOUT"}},
		{"bad env insecure", ProtocolGRPC, nil, map[string]string{"OTEL_EXPORTER_OTLP_LOGS_INSECURE": "maybe"}, []string{"OTEL_EXPORTER_OTLP_LOGS_INSECURE"}},
		{"bad env headers", ProtocolGRPC, nil, map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, []string{"OTEL_EXPORTER_OTLP_HEADERS"}},
		{"unsupported env protocol", "", nil, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, []string{"http/json"}},
		{"http endpoint without scheme", ProtocolHTTP, func(o *Options) { o.Endpoint = "collector:4318" }, nil, []string{"endpoint"}},
		{"grpc endpoint with odd scheme", ProtocolGRPC, func(o *Options) { o.Endpoint = "unix:///tmp/sock" }, nil, []string{"endpoint"}},
		{"cert without key", ProtocolGRPC, func(o *Options) { o.TLS.CertFile = "c.pem" }, nil, []string{"tls"}},
		{"queue options", ProtocolGRPC, func(o *Options) { o.Queue.InFlight = 0 }, nil, []string{"queue.in_flight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := DefaultOptions()
			if tt.edit != nil {
				tt.edit(&in)
			}
			_, err := Resolve(tt.protocol, in, func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			for _, want := range tt.want {
				if !hasFieldKey(err, want) && !strings.Contains(err.Error(), want) {
					t.Errorf("Resolve error %q does not name %q", err, want)
				}
			}
		})
	}
}

func hasFieldKey(err error, key string) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if hasFieldKey(e, key) {
				return true
			}
		}
		return false
	}
	var fe *config.FieldError
	return errors.As(err, &fe) && fe.Key == key
}

func TestGRPCTarget(t *testing.T) {
	yes := true
	tests := []struct {
		endpoint  string
		insecure  *bool
		target    string
		plaintext bool
	}{
		{"collector:4317", nil, "collector:4317", false},
		{"collector:4317", &yes, "collector:4317", true},
		{"http://collector:4317", nil, "collector:4317", true},
		{"https://collector:4317/", &yes, "collector:4317", false},
		{"collector", nil, "collector:4317", false},
		{"[::1]", nil, "[::1]:4317", false},
		{"[::1]:9000", nil, "[::1]:9000", false},
	}
	for _, tt := range tests {
		o := Options{Endpoint: tt.endpoint, TLS: TLSOptions{Insecure: tt.insecure}}
		target, plaintext, err := grpcTarget(o, o.Endpoint)
		if err != nil || target != tt.target || plaintext != tt.plaintext {
			t.Errorf("grpcTarget(%q, insecure %v) = %q, %v, %v; want %q, %v", tt.endpoint, tt.insecure, target, plaintext, err, tt.target, tt.plaintext)
		}
	}
}

func TestDecodeYAML(t *testing.T) {
	const doc = `
endpoint: collector.example:4317
headers:
  authorization: Bearer abc
timeout: 3s
compression: zstd
tls:
  insecure: false
  ca_file: /etc/ca.pem
  server_name: collector
batch:
  max_records: 500
  max_bytes: 2MiB
  timeout: 1s
queue:
  size: 16
  in_flight: 4
retry:
  initial_interval: 500ms
  max_interval: 1m
  multiplier: 2
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	got := DefaultOptions()
	if err := config.Decode(&n, "exporters.otlp", &got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	no := false
	want := DefaultOptions()
	want.Endpoint = "collector.example:4317"
	want.Headers = map[string]string{"authorization": "Bearer abc"}
	want.Timeout = 3 * time.Second
	want.Compression = "zstd"
	want.TLS = TLSOptions{Insecure: &no, CAFile: "/etc/ca.pem", ServerName: "collector"}
	want.Batch = export.BatchOptions{MaxRecords: 500, MaxBytes: 2 << 20, Timeout: time.Second}
	want.Queue = export.BufferOptions{Size: 16, InFlight: 4}
	want.Retry = export.RetryOptions{InitialInterval: 500 * time.Millisecond, MaxInterval: time.Minute, Multiplier: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded options (-want +got):\n%s", diff)
	}

	var bad yaml.Node
	if err := yaml.Unmarshal([]byte("endpoint: x\nbatch:\n  max_record: 5\n"), &bad); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	err := config.Decode(&bad, "exporters.otlp", &o)
	if err == nil || !strings.Contains(err.Error(), "exporters.otlp.batch.max_record: unknown key") {
		t.Errorf("Decode of an unknown key = %v, want it named", err)
	}
}

func TestNewPicksTheProtocol(t *testing.T) {
	for _, p := range []string{ProtocolGRPC, ProtocolHTTP} {
		o, err := Resolve(p, DefaultOptions(), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch c.(type) {
		case *GRPCClient:
			if p != ProtocolGRPC {
				t.Errorf("New for %s returned a gRPC client", p)
			}
		case *HTTPClient:
			if p != ProtocolHTTP {
				t.Errorf("New for %s returned an HTTP client", p)
			}
		}
		c.Close()
	}
	if _, err := New(DefaultOptions(), nil); err == nil {
		t.Error("New with unresolved options succeeded")
	}
}
