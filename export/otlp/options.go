// Package otlp sends logs to an OpenTelemetry Protocol endpoint over gRPC or
// HTTP. Requests are encoded straight from the batches ([AppendRequest]);
// responses are decoded with the generated OTLP types for partial success.
// Errors are classified for the export queue as the OpenTelemetry SDKs do:
// retryable (with a server-given delay when there is one), permanent, or
// partial.
package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/export"
)

// Protocols accepted by [Resolve].
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Default endpoints, as the OpenTelemetry specification gives them.
const (
	DefaultGRPCEndpoint = "http://localhost:4317"
	DefaultHTTPEndpoint = "http://localhost:4318/v1/logs"
	httpLogsPath        = "/v1/logs"
	defaultTimeout      = 10 * time.Second
	defaultCompression  = "gzip"
	defaultResolve      = 30 * time.Second
)

// Options configure an OTLP exporter (types otlp_grpc and otlp_http). Fields
// left empty in YAML are filled by [Resolve] from the OTEL_EXPORTER_OTLP_*
// environment variables, then from defaults.
type Options struct {
	// Endpoint is host:port for gRPC (an http:// or https:// scheme selects
	// plaintext or TLS), or a URL for HTTP: a URL without a path gets
	// /v1/logs appended, one with a path is used as it is.
	Endpoint string `yaml:"endpoint"`
	// Endpoints, instead of Endpoint, are several destinations of the same
	// kind, each written as Endpoint is: requests are spread over those
	// that are up, and one that fails is taken out and probed back (see
	// balancer). A name in them is resolved to all its addresses every
	// ResolveInterval, each address an endpoint of its own.
	Endpoints []string `yaml:"endpoints"`
	// ResolveInterval is how often the names in Endpoints are resolved
	// again; 0 means the default (30s).
	ResolveInterval time.Duration `yaml:"resolve_interval"`
	// Headers are sent with every request (gRPC metadata or HTTP headers).
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one attempt of one request.
	Timeout time.Duration `yaml:"timeout"`
	// Compression of requests: none, gzip (the default) or zstd.
	Compression string `yaml:"compression"`
	// TLS secures the connection.
	TLS TLSOptions `yaml:"tls"`
	// Affinity, when set, sends the records of one key (values of
	// resource attributes) to one of Endpoints (see [AffinityOptions]).
	Affinity *AffinityOptions `yaml:"affinity"`
	// Protocol is set by Resolve: ProtocolGRPC or ProtocolHTTP.
	Protocol string `yaml:"-"`

	export.QueueOptions `yaml:",inline"`
}

// TLSOptions configure transport security. Without any, gRPC uses TLS with
// the system roots unless the endpoint says http://, and HTTP follows the
// URL's scheme.
type TLSOptions struct {
	// Insecure sends in plaintext (gRPC endpoints without a scheme).
	// Nil means not set, so that the environment may set it.
	Insecure *bool `yaml:"insecure"`
	// CAFile holds PEM certificates to verify the server with instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile hold a PEM client certificate and key (mutual TLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ServerName overrides the name verified in the server's certificate.
	ServerName string `yaml:"server_name"`
}

// DefaultOptions returns the queue defaults and leaves every field that the
// environment may set empty; [Resolve] fills them.
func DefaultOptions() Options {
	return Options{QueueOptions: export.DefaultQueueOptions()}
}

// Resolve returns o with the fields left empty filled, as the OpenTelemetry
// SDKs do, from the variables OTEL_EXPORTER_OTLP_LOGS_X (first) and
// OTEL_EXPORTER_OTLP_X for X in ENDPOINT, HEADERS, TIMEOUT (milliseconds),
// COMPRESSION, PROTOCOL, INSECURE, CERTIFICATE, CLIENT_CERTIFICATE and
// CLIENT_KEY, then from defaults. Explicit options win over the environment.
// For HTTP the generic endpoint gets /v1/logs appended to its path and the
// logs endpoint is used verbatim. Headers from the environment are
// key=value pairs separated by commas, values percent-decoded; headers in o
// override them key by key.
//
// protocol is ProtocolGRPC or ProtocolHTTP; empty takes it from the
// environment (default ProtocolHTTP, per the specification). Resolve then
// validates the result; problems are config.FieldErrors naming the yaml key
// (or the variable).
func Resolve(protocol string, o Options, getenv func(string) string) (Options, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	env := func(name string) (value, from string) {
		for _, v := range []string{"OTEL_EXPORTER_OTLP_LOGS_" + name, "OTEL_EXPORTER_OTLP_" + name} {
			if s := strings.TrimSpace(getenv(v)); s != "" {
				return s, v
			}
		}
		return "", ""
	}

	if protocol == "" {
		protocol = ProtocolHTTP
		if p, from := env("PROTOCOL"); p != "" {
			protocol = p
			if p != ProtocolGRPC && p != ProtocolHTTP {
				errs = append(errs, fmt.Errorf("%s: unsupported protocol %q (want %s or %s)", from, p, ProtocolGRPC, ProtocolHTTP))
			}
		}
	}
	if protocol != ProtocolGRPC && protocol != ProtocolHTTP {
		return o, fmt.Errorf("resolve otlp options: unknown protocol %q", protocol)
	}
	o.Protocol = protocol

	if len(o.Endpoints) > 0 {
		if o.Endpoint != "" {
			errs = append(errs, config.Fieldf("endpoints", "give endpoint or endpoints, not both"))
		}
		o.Endpoints = slices.Clone(o.Endpoints)
		for i, ep := range o.Endpoints {
			if u, err := url.Parse(ep); protocol == ProtocolHTTP && err == nil && (u.Path == "" || u.Path == "/") {
				o.Endpoints[i] = appendLogsPath(ep)
			}
		}
		if o.ResolveInterval == 0 {
			o.ResolveInterval = defaultResolve
		}
	} else if o.Endpoint == "" {
		if s := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")); s != "" {
			o.Endpoint = s
		} else if s := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); s != "" {
			o.Endpoint = s
			if protocol == ProtocolHTTP {
				o.Endpoint = appendLogsPath(s)
			}
		} else if protocol == ProtocolHTTP {
			o.Endpoint = DefaultHTTPEndpoint
		} else {
			o.Endpoint = DefaultGRPCEndpoint
		}
	} else if protocol == ProtocolHTTP {
		if u, err := url.Parse(o.Endpoint); err == nil && (u.Path == "" || u.Path == "/") {
			o.Endpoint = appendLogsPath(o.Endpoint)
		}
	}

	if s, from := env("HEADERS"); s != "" {
		h, err := parseHeaders(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
		}
		for k, v := range o.Headers {
			h[k] = v
		}
		o.Headers = h
	}

	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
		if s, from := env("TIMEOUT"); s != "" {
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil || ms <= 0 {
				errs = append(errs, fmt.Errorf("%s: want a positive number of milliseconds, got %q", from, s))
			} else {
				o.Timeout = time.Duration(ms) * time.Millisecond
			}
		}
	}

	if o.Compression == "" {
		o.Compression = defaultCompression
		if s, _ := env("COMPRESSION"); s != "" {
			o.Compression = s
		}
	}

	if o.TLS.Insecure == nil {
		if s, from := env("INSECURE"); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: want true or false, got %q", from, s))
			} else {
				o.TLS.Insecure = &b
			}
		}
	}
	fill := func(field *string, name string) {
		if *field == "" {
			*field, _ = env(name)
		}
	}
	fill(&o.TLS.CAFile, "CERTIFICATE")
	fill(&o.TLS.CertFile, "CLIENT_CERTIFICATE")
	fill(&o.TLS.KeyFile, "CLIENT_KEY")

	if err := o.Validate(); err != nil {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, j.Unwrap()...) // one list: each error keeps its key and line
		} else {
			errs = append(errs, err)
		}
	}
	return o, errors.Join(errs...)
}

// appendLogsPath appends /v1/logs to the path of the URL base.
func appendLogsPath(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return strings.TrimSuffix(base, "/") + httpLogsPath
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + httpLogsPath
	return u.String()
}

// parseHeaders parses "k1=v1,k2=v2" with percent-encoded values, the format
// of OTEL_EXPORTER_OTLP_HEADERS.
func parseHeaders(s string) (map[string]string, error) {
	h := map[string]string{}
	var errs []error
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("invalid header %q: want key=value", pair))
			continue
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("invalid header %q: %w", k, err))
			continue
		}
		h[k] = dv
	}
	return h, errors.Join(errs...)
}

// Validate checks resolved options; problems are config.FieldErrors.
func (o Options) Validate() error {
	var errs []error
	if err := o.QueueOptions.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(o.Endpoints) == 0 {
		if err := o.validateEndpoint(o.Endpoint, "endpoint"); err != nil {
			errs = append(errs, err)
		}
	}
	for i, ep := range o.Endpoints {
		key := fmt.Sprintf("endpoints.%d", i)
		if err := o.validateEndpoint(ep, key); err != nil {
			errs = append(errs, err)
		} else if slices.Contains(o.Endpoints[:i], ep) {
			errs = append(errs, config.Fieldf(key, "%q is listed twice", ep))
		}
	}
	if o.ResolveInterval < 0 {
		errs = append(errs, config.Fieldf("resolve_interval", "must not be negative"))
	}
	if o.Affinity != nil {
		if err := o.Affinity.validate(o); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Timeout <= 0 {
		errs = append(errs, config.Fieldf("timeout", "must be positive"))
	}
	switch o.Compression {
	case "none", "gzip", "zstd":
	default:
		errs = append(errs, config.Fieldf("compression", "must be one of none, gzip, zstd; got %q", o.Compression))
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		errs = append(errs, config.Fieldf("tls", "cert_file and key_file must be given together"))
	}
	return errors.Join(errs...)
}

// validateEndpoint checks one endpoint of o's protocol; key names it.
func (o Options) validateEndpoint(ep, key string) error {
	switch o.Protocol {
	case ProtocolHTTP:
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config.Fieldf(key, "want an http:// or https:// URL, got %q", ep)
		}
	case ProtocolGRPC:
		if _, _, err := grpcTarget(o, ep); err != nil {
			return config.Fieldf(key, "%v", err)
		}
	}
	return nil
}

// grpcTarget returns the host:port of the gRPC endpoint ep to dial and
// whether to use plaintext.
func grpcTarget(o Options, ep string) (target string, plaintext bool, err error) {
	orig := ep
	plaintext = o.TLS.Insecure != nil && *o.TLS.Insecure
	if scheme, rest, ok := strings.Cut(ep, "://"); ok {
		switch scheme {
		case "http":
			plaintext = true
		case "https":
			plaintext = false
		default:
			return "", false, fmt.Errorf("unsupported scheme %q in %q (want host:port, http:// or https://)", scheme, orig)
		}
		ep, _, _ = strings.Cut(rest, "/")
	}
	if ep == "" {
		return "", false, fmt.Errorf("missing host in %q", orig)
	}
	if !strings.Contains(ep, ":") || strings.HasSuffix(ep, "]") {
		ep += ":4317"
	}
	return ep, plaintext, nil
}

// tlsConfig builds the client TLS configuration. It reads the certificate files.
func (t TLSOptions) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, documented option
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read tls.ca_file %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load tls.cert_file and tls.key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// New returns the client for o.Protocol, as set by [Resolve]: a
// [*GRPCClient] or an [*HTTPClient], or with o.Affinity one that splits
// requests by key in front of either (see [AffinityOptions]). It does not
// connect.
func New(o Options, log *slog.Logger) (export.Client, error) {
	switch o.Protocol {
	case ProtocolGRPC:
		c, err := NewGRPC(o, log)
		if err != nil || o.Affinity == nil {
			return c, err
		}
		return c.withAffinity(o), nil
	case ProtocolHTTP:
		c, err := NewHTTP(o, log)
		if err != nil || o.Affinity == nil {
			return c, err
		}
		return c.withAffinity(o), nil
	}
	return nil, fmt.Errorf("create otlp client: unknown protocol %q (resolve the options first)", o.Protocol)
}

// entries returns the configured endpoints of o, resolved (see [Resolve]),
// for a balancer: Endpoints, or Endpoint alone. hostport gives the host and
// port of one. Names are resolved only in Endpoints: a single Endpoint is
// dialled by name as it always was.
func (o Options) entries(hostport func(string) (string, string, error)) ([]entry, error) {
	if len(o.Endpoints) == 0 {
		return []entry{{raw: o.Endpoint}}, nil
	}
	es := make([]entry, 0, len(o.Endpoints))
	for i, raw := range o.Endpoints {
		host, port, err := hostport(raw)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		e := entry{raw: raw, host: host, port: port}
		e.resolve = net.ParseIP(host) == nil
		es = append(es, e)
	}
	return es, nil
}
