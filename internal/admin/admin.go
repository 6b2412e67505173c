// Package admin serves the agent's health, metrics and debugging endpoints
// over HTTP:
//
//	/healthz          200 while the process serves requests (liveness)
//	/readyz           200 when the readiness function reports no error, else 503 with the reason;
//	                  either way followed by the warnings, one a line
//	/metrics          the Prometheus exposition
//	/debug/pipeline   JSON snapshot of stages, exporters and files
//	/debug/tap        live copies of records passing a tap point (JSON lines)
//	/debug/pprof/     Go profiles, only when enabled
//
// The /debug endpoints reveal file names and log contents, so they answer
// only clients connecting from a loopback address, whatever address the
// server listens on: in a pod, "kubectl port-forward" and "kubectl exec"
// reach them, the pod network does not. They also answer only requests
// whose Host names a loopback address or "localhost", so that a web page
// whose name resolves to 127.0.0.1 (DNS rebinding) cannot read them from a
// browser on the host. With a token, every endpoint except /healthz and
// /readyz also wants "Authorization: Bearer TOKEN". Whatever /readyz and
// /debug/pipeline print passes through config.Redact: no endpoint
// credentials.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/logpump/logpump/config"
)

// Options say what the server serves. Nil fields leave their endpoint out
// (404), except Ready: nil means always ready.
type Options struct {
	// Pprof enables /debug/pprof/.
	Pprof bool
	// Ready returns nil when the agent is ready to take work (the pipeline
	// runs and exporters reached their destinations recently) and otherwise
	// an error saying why. It is called for each /readyz request, from the
	// server's goroutines.
	Ready func() error
	// Warnings returns lines /readyz prints after its verdict (e.g. a
	// source at risk of losing lines) without changing it. paths reports
	// whether the lines may name files: true only for loopback clients,
	// as for the /debug endpoints (a probe from the pod network gets the
	// lines without file names). It is called for each /readyz request,
	// from the server's goroutines.
	Warnings func(paths bool) []string
	// Metrics serves /metrics.
	Metrics http.Handler
	// Pipeline returns the /debug/pipeline snapshot, encoded as JSON. It is
	// called from the server's goroutines.
	Pipeline func() any
	// Tap serves /debug/tap (see the tap package).
	Tap http.Handler
	// Token, when not empty, is the bearer token every endpoint except
	// /healthz and /readyz (the probes) asks for.
	Token string
	// Log receives serve errors; slog.Default when nil.
	Log *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	addr    string
	log     *slog.Logger
	handler http.Handler
	srv     *http.Server
	// base is the context of every request; Shutdown cancels it first so
	// that long requests (tap streams, profiles) end.
	base       context.Context
	cancelBase context.CancelFunc

	mu sync.Mutex
	ln net.Listener
}

// New returns a server for addr (host:port) serving what o holds. It does
// no I/O: [Server.Listen] or [Server.Run] binds the address.
func New(addr string, o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Server{addr: addr, log: o.Log}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.handler = routes(o)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the server's routes, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the address and returns it (with the port chosen when addr
// asked for port 0). Calling it before [Server.Run] lets the agent fail at
// start on an address in use. Later calls return the same address.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	if s.base.Err() != nil {
		return nil, http.ErrServerClosed
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on admin address: %w", err)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Run serves until ctx is done, then shuts down as [Server.Shutdown] does
// with no deadline. It returns nil after a shutdown and the error that
// stopped it otherwise.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		if err := s.Shutdown(context.WithoutCancel(ctx)); err != nil {
			s.log.Warn("admin server shutdown", "err", err)
		}
	})
	defer stop()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve admin endpoints: %w", err)
}

// Shutdown stops accepting connections, ends streaming requests, and waits
// for the others to finish. It returns ctx.Err() if the deadline passes
// first. It is idempotent and safe without Run.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancelBase()
	err := s.srv.Shutdown(ctx)
	s.closeListener()
	return err
}

// Close stops the server at once, closing every connection.
func (s *Server) Close() error {
	s.cancelBase()
	err := s.srv.Close()
	s.closeListener()
	return err
}

// closeListener closes a listener bound by Listen that Run never served.
func (s *Server) closeListener() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
}

func routes(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		code, msg := http.StatusOK, "ready"
		if o.Ready != nil {
			if err := o.Ready(); err != nil {
				code, msg = http.StatusServiceUnavailable, "not ready: "+err.Error()
			}
		}
		if o.Warnings != nil {
			for _, l := range o.Warnings(loopback(r) && loopbackHost(r.Host)) {
				msg += "\n" + l
			}
		}
		text(w, code, config.Redact(msg))
	})
	guard := func(h http.Handler) http.Handler { return bearer(o.Token, h) }
	local := func(h http.Handler) http.Handler { return guard(loopbackOnly(h)) }
	if o.Metrics != nil {
		mux.Handle("GET /metrics", guard(o.Metrics))
	}
	if o.Pipeline != nil {
		mux.Handle("GET /debug/pipeline", local(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body strings.Builder
			enc := json.NewEncoder(&body)
			enc.SetEscapeHTML(false) // keeps "&" of URLs readable for Redact
			enc.SetIndent("", "  ")
			if err := enc.Encode(o.Pipeline()); err != nil {
				text(w, http.StatusInternalServerError, "encode pipeline snapshot: "+err.Error())
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, config.Redact(body.String()))
		})))
	}
	if o.Tap != nil {
		mux.Handle("/debug/tap", local(o.Tap))
	}
	if o.Pprof {
		mux.Handle("GET /debug/pprof/", local(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", local(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("GET /debug/pprof/profile", local(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", local(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", local(http.HandlerFunc(pprof.Trace)))
	}
	return mux
}

// loopbackOnly refuses clients that do not connect from a loopback address
// and requests whose Host is not a loopback name or address.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopback(r) {
			text(w, http.StatusForbidden, "debug endpoints answer loopback clients only")
			return
		}
		if !loopbackHost(r.Host) {
			text(w, http.StatusForbidden, "debug endpoints answer requests for localhost or a loopback address only")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether host (a Host header, with or without a
// port) is "localhost" or a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer refuses requests without "Authorization: Bearer token" when token
// is set.
func bearer(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="logpump"`)
			text(w, http.StatusUnauthorized, "this endpoint wants Authorization: Bearer <admin.token_file's token>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopback reports whether the client connects from a loopback address.
func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
