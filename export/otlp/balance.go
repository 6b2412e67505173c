package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/export"
)

// Endpoint states, as [EndpointStats.State] reports them.
const (
	EndpointUp   = "up"   // takes requests
	EndpointDown = "down" // failed; skipped until its backoff ends, then probed with one request
)

// EndpointStats describe one endpoint of a client, safe to read from any
// goroutine. Name is bounded by the configuration: the endpoint as
// configured, and the address it resolved to when the name is resolved.
type EndpointStats struct {
	Name     string `json:"name"`
	State    string `json:"state"`    // EndpointUp or EndpointDown
	Requests int64  `json:"requests"` // attempts sent to this endpoint
	Errors   int64  `json:"errors"`   // attempts that failed and took the endpoint out
	// Records in the attempts this endpoint accepted (partly rejected
	// ones included).
	Records int64 `json:"records"`
	// LastLatency is how long this endpoint's last attempt took, answered
	// or failed; MedianLatency the median of its last 64 attempts. In
	// seconds; 0 before the first attempt.
	LastLatency   float64 `json:"last_latency_seconds"`
	MedianLatency float64 `json:"median_latency_seconds"`
	// Reason of the last failure (see export.Reason), DownSince when it
	// went down; set while State is EndpointDown.
	Reason    string    `json:"reason,omitempty"`
	DownSince time.Time `json:"down_since,omitzero"`
}

// endpoint is one destination of a balancer: a connection (a gRPC
// connection, an HTTP client) and its health.
type endpoint[C any] struct {
	name string
	key  string // entry and address: what a new resolution is matched by
	conn C

	downUntil atomic.Int64 // unix nanoseconds; 0: up
	downSince atomic.Int64 // unix nanoseconds of the first failure in a row
	failures  atomic.Int32 // failures in a row
	probing   atomic.Bool  // a request is probing whether it is back
	reason    atomic.Pointer[string]
	requests  atomic.Int64
	errors    atomic.Int64
	records   atomic.Int64
	latency   latencies
	hash      uint64    // of key: its weight for affinity (see hrwScore)
	retired   time.Time // when a resolution removed it (refresh goroutine only)
}

// entry is one configured endpoint: a dial target (gRPC host:port, an HTTP
// URL) and the host:port in it, resolved to addresses when host is a name.
type entry struct {
	raw     string // as configured, after Resolve
	name    string // raw without credentials: for logs and metric labels
	host    string
	port    string
	resolve bool // host is a name to resolve, not an address
}

// balancer spreads the attempts of requests over endpoints, round robin
// over those that are up. An endpoint whose attempt fails (retryably) is
// taken out with exponential backoff and then gets one request, a probe,
// that brings it back if it succeeds. An attempt that failed on one
// endpoint is made at once on the next, each endpoint at most once per
// attempt of the queue; when none is up, every one is tried. An answer
// about the request itself (accepted, partly rejected, refused as bad or
// too large) is the request's, and leaves the endpoint up.
//
// Names in entries are resolved to all their addresses every interval
// (each address an endpoint of its own); an address that disappears stops
// taking requests at once and its connection is closed drain later.
type balancer[C any] struct {
	balancerOptions[C]
	set  atomic.Pointer[[]*endpoint[C]]
	next atomic.Uint64
	now  func() time.Time

	initial, maxDelay time.Duration
	multiplier        float64

	ready    chan struct{} // closed after the first resolution
	stop     chan struct{}
	stopped  chan struct{}
	resolveE atomic.Pointer[error] // the last resolution error, when no endpoint is known
	retired  []*endpoint[C]        // refresh goroutine only
	closing  sync.Once
}

// lookupFunc resolves a host name to its addresses, as net.Resolver.LookupHost.
type lookupFunc func(ctx context.Context, host string) ([]string, error)

// balancerOptions are what a client gives its balancer: the entries (those
// with no name to resolve have their endpoint from the start), how to
// connect to one and close the connection, how names are resolved
// (lookup; nil: the system's resolver) and how often, how long a removed
// address keeps its connection (drain), and the backoff of a failed
// endpoint (retry).
type balancerOptions[C any] struct {
	entries  []entry
	dial     func(e entry, addr string) (C, error)
	closer   func(C)
	lookup   lookupFunc
	interval time.Duration
	drain    time.Duration
	retry    export.RetryOptions
	log      *slog.Logger
	// observe, when set, is told how long each attempt on an endpoint
	// took; called from the sending goroutines, it must not block.
	observe func(endpoint string, d time.Duration)
}

// newBalancer dials the entries that need no resolution and, when some
// do, starts the goroutine that resolves them (stopped by close).
func newBalancer[C any](o balancerOptions[C]) (*balancer[C], error) {
	b := &balancer[C]{
		balancerOptions: o,
		now:             time.Now,
		initial:         max(o.retry.InitialInterval, 10*time.Millisecond),
		maxDelay:        max(o.retry.MaxInterval, o.retry.InitialInterval, 10*time.Millisecond),
		multiplier:      max(o.retry.Multiplier, 1),
		ready:           make(chan struct{}),
		stop:            make(chan struct{}),
		stopped:         make(chan struct{}),
	}
	if b.lookup == nil {
		b.lookup = net.DefaultResolver.LookupHost
	}
	var eps []*endpoint[C]
	resolve := false
	for _, e := range o.entries {
		if e.resolve {
			resolve = true
			continue
		}
		ep, err := b.newEndpoint(e, "")
		if err != nil {
			for _, ep := range eps {
				b.closer(ep.conn)
			}
			return nil, err
		}
		eps = append(eps, ep)
	}
	b.set.Store(&eps)
	if !resolve {
		close(b.ready)
		close(b.stopped)
		return b, nil
	}
	go b.run()
	return b, nil
}

func (b *balancer[C]) newEndpoint(e entry, addr string) (*endpoint[C], error) {
	conn, err := b.dial(e, addr)
	if err != nil {
		return nil, err
	}
	name := e.name
	if name == "" {
		name = config.Redact(e.raw) // a gRPC target may hold user:password@
	}
	ep := &endpoint[C]{name: name, key: e.raw, conn: conn}
	if addr != "" {
		ep.name = name + " (" + addr + ")"
		ep.key = e.raw + "\x00" + addr
	}
	ep.hash = hashString(fnvOffset, ep.key)
	return ep, nil
}

// run resolves the names every interval until close.
func (b *balancer[C]) run() {
	defer close(b.stopped)
	b.refresh()
	close(b.ready)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.refresh()
		}
	}
}

// refresh resolves every name and makes the endpoint set match: endpoints
// of addresses still there are kept with their state, new ones start up,
// removed ones are retired and closed once drain has passed. A name that
// fails to resolve keeps its endpoints.
func (b *balancer[C]) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), max(b.interval, 5*time.Second))
	go func() {
		select {
		case <-b.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer cancel()
	old := *b.set.Load()
	byKey := make(map[string]*endpoint[C], len(old))
	for _, ep := range old {
		byKey[ep.key] = ep
	}
	var eps []*endpoint[C]
	var errs []error
	for _, e := range b.entries {
		if !e.resolve {
			eps = append(eps, byKey[e.raw])
			delete(byKey, e.raw)
			continue
		}
		addrs, err := b.lookup(ctx, e.host)
		if err == nil && len(addrs) == 0 {
			err = fmt.Errorf("no address")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve %s: %w", e.host, err))
			for key, ep := range byKey { // keep what it had
				if key == e.raw || len(key) > len(e.raw) && key[:len(e.raw)+1] == e.raw+"\x00" {
					eps = append(eps, ep)
					delete(byKey, key)
				}
			}
			continue
		}
		slices.Sort(addrs)
		for _, a := range slices.Compact(addrs) {
			addr := net.JoinHostPort(a, e.port)
			if ep, ok := byKey[e.raw+"\x00"+addr]; ok {
				eps = append(eps, ep)
				delete(byKey, ep.key)
				continue
			}
			ep, err := b.newEndpoint(e, addr)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.log.Info("otlp endpoint added", "endpoint", ep.name)
			eps = append(eps, ep)
		}
	}
	if err := errors.Join(errs...); err != nil {
		b.log.Warn("otlp endpoints not resolved; keeping the addresses known", "err", err)
		if len(eps) == 0 {
			b.resolveE.Store(&err)
		}
	}
	b.set.Store(&eps)
	now := b.now()
	for _, ep := range byKey {
		b.log.Info("otlp endpoint removed; it drains", "endpoint", ep.name)
		ep.retired = now
		b.retired = append(b.retired, ep)
	}
	b.retired = slices.DeleteFunc(b.retired, func(ep *endpoint[C]) bool {
		if now.Sub(ep.retired) < b.drain {
			return false
		}
		b.closer(ep.conn)
		return true
	})
}

// attempt is one attempt of one request over the endpoints: each is tried
// at most once, starting at the next in round-robin order.
type attempt[C any] struct {
	eps     []*endpoint[C]
	start   uint64
	i       int
	allDown bool
	nowNano int64
	// records is how many records the attempt carries, counted for the
	// endpoint that accepts it; began is when the endpoint got it.
	records int
	began   time.Time
}

// endpoints waits for the first resolution and returns the endpoint set,
// or an error when none is known (the names have not resolved yet, or to
// nothing).
func (b *balancer[C]) endpoints(ctx context.Context) ([]*endpoint[C], error) {
	select {
	case <-b.ready:
	default:
		select {
		case <-b.ready:
		case <-ctx.Done():
			return nil, export.WithReason(fmt.Errorf("resolve otlp endpoints: %w", ctx.Err()), export.ReasonTimeout)
		}
	}
	eps := *b.set.Load()
	if len(eps) == 0 {
		err := errors.New("no address")
		if e := b.resolveE.Load(); e != nil {
			err = *e
		}
		return nil, export.WithReason(fmt.Errorf("resolve otlp endpoints: %w", err), export.ReasonConnection)
	}
	return eps, nil
}

// first returns the endpoint for a new attempt, or an error when none is
// known (see endpoints).
func (b *balancer[C]) first(ctx context.Context, a *attempt[C]) (*endpoint[C], error) {
	var err error
	if a.eps, err = b.endpoints(ctx); err != nil {
		return nil, err
	}
	if len(a.eps) == 1 {
		// One endpoint: it gets every attempt, up or not.
		a.allDown = true
	} else {
		a.start = b.next.Add(1)
		a.allDown = true
		for _, ep := range a.eps {
			if ep.downUntil.Load() == 0 {
				a.allDown = false
				break
			}
		}
	}
	if ep := b.advance(a); ep != nil {
		return ep, nil
	}
	// Those up when a looked went down since: the next attempt tries all.
	return nil, export.WithReason(errors.New("no otlp endpoint is up"), export.ReasonUnavailable)
}

// advance returns the next endpoint of a to try, or nil.
func (b *balancer[C]) advance(a *attempt[C]) *endpoint[C] {
	n := uint64(len(a.eps))
	for a.i < len(a.eps) {
		ep := a.eps[(a.start+uint64(a.i))%n]
		a.i++
		until := ep.downUntil.Load()
		if until == 0 || a.allDown {
			ep.requests.Add(1)
			a.began = time.Now()
			return ep
		}
		if a.nowNano == 0 {
			a.nowNano = b.now().UnixNano()
		}
		if a.nowNano >= until && ep.probing.CompareAndSwap(false, true) {
			ep.requests.Add(1)
			a.began = time.Now()
			return ep
		}
	}
	return nil
}

// done records the outcome err of ep's attempt and returns the endpoint to
// try next, or nil when err is the request's answer.
func (b *balancer[C]) done(ctx context.Context, a *attempt[C], ep *endpoint[C], err error) *endpoint[C] {
	if !b.settle(ctx, ep, a.records, time.Since(a.began), err) {
		return nil
	}
	return b.advance(a)
}

// settle records the outcome err of an attempt of records that took d on
// ep: its latency, its records when accepted, and the endpoint's health.
// It reports whether the attempt failed on ep (retryably), so that it may
// be made on another endpoint.
func (b *balancer[C]) settle(ctx context.Context, ep *endpoint[C], records int, d time.Duration, err error) bool {
	ep.latency.add(d)
	if f := b.observe; f != nil {
		f(ep.name, d)
	}
	if err == nil || answered(err) {
		if err == nil || isPartial(err) {
			ep.records.Add(int64(records))
		}
		b.up(ep)
		return false
	}
	if ctx.Err() != nil {
		// The queue gave up on the attempt (shutdown): nothing learnt.
		ep.probing.Store(false)
		return false
	}
	b.down(ep, err)
	return true
}

// answered reports whether err is the destination's answer about the
// request itself: refused, partly rejected, too large.
func answered(err error) bool {
	var tl *tooLargeError
	var pe *export.PartialError
	return export.IsPermanent(err) || errors.As(err, &pe) || errors.As(err, &tl)
}

func isPartial(err error) bool {
	var pe *export.PartialError
	return errors.As(err, &pe)
}

func (b *balancer[C]) up(ep *endpoint[C]) {
	if ep.downUntil.Load() == 0 && ep.failures.Load() == 0 {
		return
	}
	if ep.failures.Swap(0) > 0 && len(*b.set.Load()) > 1 {
		b.log.Info("otlp endpoint is back", "endpoint", ep.name,
			"down_for", b.now().Sub(time.Unix(0, ep.downSince.Load())).Round(time.Millisecond))
	}
	ep.downUntil.Store(0)
	ep.probing.Store(false)
}

func (b *balancer[C]) down(ep *endpoint[C], err error) {
	ep.errors.Add(1)
	f := ep.failures.Add(1)
	now := b.now()
	d := float64(b.initial)
	for i := int32(1); i < f && d < float64(b.maxDelay); i++ {
		d *= b.multiplier
	}
	d = min(d, float64(b.maxDelay))
	d *= 0.8 + 0.4*rand.Float64() // jitter: endpoints failed together are probed apart
	reason := export.Reason(err)
	ep.reason.Store(&reason)
	if f == 1 {
		ep.downSince.Store(now.UnixNano())
		if len(*b.set.Load()) > 1 {
			b.log.Warn("otlp endpoint failed; requests go to the others", "endpoint", ep.name, "reason", reason, "err", err)
		}
	}
	ep.downUntil.Store(now.Add(time.Duration(d)).UnixNano())
	ep.probing.Store(false)
}

// stats returns the endpoints' counters, in the order of the set.
func (b *balancer[C]) stats() []EndpointStats {
	eps := *b.set.Load()
	out := make([]EndpointStats, len(eps))
	for i, ep := range eps {
		s := EndpointStats{Name: ep.name, State: EndpointUp, Requests: ep.requests.Load(), Errors: ep.errors.Load(), Records: ep.records.Load()}
		s.LastLatency, s.MedianLatency = ep.latency.stats()
		if ep.failures.Load() > 0 {
			s.State = EndpointDown
			if r := ep.reason.Load(); r != nil {
				s.Reason = *r
			}
			s.DownSince = time.Unix(0, ep.downSince.Load())
		}
		out[i] = s
	}
	return out
}

// close stops resolving and closes every connection.
func (b *balancer[C]) close() {
	b.closing.Do(func() {
		close(b.stop)
		<-b.stopped
		for _, ep := range *b.set.Load() {
			b.closer(ep.conn)
		}
		for _, ep := range b.retired {
			b.closer(ep.conn)
		}
		b.retired = nil
	})
}

// latencies remembers the durations of an endpoint's last attempts, for
// its median; safe for concurrent use.
type latencies struct {
	n    atomic.Uint64
	ring [64]atomic.Int64 // nanoseconds
}

func (l *latencies) add(d time.Duration) {
	i := l.n.Add(1) - 1
	l.ring[i%uint64(len(l.ring))].Store(int64(d))
}

// stats returns the last duration and the median of those remembered, in
// seconds; zeros before the first.
func (l *latencies) stats() (last, median float64) {
	n := l.n.Load()
	if n == 0 {
		return 0, 0
	}
	k := min(n, uint64(len(l.ring)))
	var buf [len(l.ring)]int64
	for i := range k {
		buf[i] = l.ring[i].Load()
	}
	d := buf[:k]
	last = time.Duration(l.ring[(n-1)%uint64(len(l.ring))].Load()).Seconds()
	slices.Sort(d)
	return last, time.Duration(d[len(d)/2]).Seconds()
}
