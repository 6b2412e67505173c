package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// AffinityOptions send every record whose resource carries the same values
// of ResourceAttributes (its key) to the same endpoint while the endpoint
// set is stable: a gateway that aggregates, samples or deduplicates per pod
// or per service then sees all of one pod's or service's records.
//
// The owner of a key is chosen by rendezvous (highest random weight)
// hashing over the endpoints: when one goes down or a resolution removes
// it, only the keys it owned move, each to the endpoint next in its own
// order; when it is back its keys return to it. Agents with the same
// endpoints agree on the owners. Records whose resource carries none of
// the attributes have no key and are spread round robin, as without
// affinity.
//
// The cost: requests are split by owner, so a request from many keys
// becomes several calls (made at once), each holding fewer records; with
// compression each call is compressed when it is made, at each attempt,
// rather than its batches as they enter the queue.
type AffinityOptions struct {
	// ResourceAttributes whose values form the key, e.g. [k8s.pod.uid] or
	// [k8s.namespace.name, k8s.pod.name]. A resource lacking some (but not
	// all) of them has an empty value for those.
	ResourceAttributes []string `yaml:"resource_attributes"`
}

// validate checks the affinity options of o; problems are
// config.FieldErrors.
func (a *AffinityOptions) validate(o Options) error {
	var errs []error
	if len(a.ResourceAttributes) == 0 {
		errs = append(errs, config.Fieldf("affinity.resource_attributes", "must name at least one resource attribute (e.g. [k8s.pod.uid])"))
	}
	for i, name := range a.ResourceAttributes {
		key := fmt.Sprintf("affinity.resource_attributes.%d", i)
		if name == "" {
			errs = append(errs, config.Fieldf(key, "must not be empty"))
		} else if slices.Contains(a.ResourceAttributes[:i], name) {
			errs = append(errs, config.Fieldf(key, "%q is listed twice", name))
		}
	}
	if len(o.Endpoints) == 0 {
		errs = append(errs, config.Fieldf("affinity", "needs endpoints: with a single endpoint every record goes to it anyway"))
	}
	return errors.Join(errs...)
}

// FNV-1a, 64 bits: a stable hash, the same in every agent and every run
// (unlike hash/maphash), so that agents agree on the owners of keys.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is the finalizer of SplitMix64: every bit of x moves every bit of
// the result.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hrwScore is the weight of the endpoint hashed ep for the key hashed key:
// a key's owner is the endpoint of highest weight among those available.
func hrwScore(key, ep uint64) uint64 { return mix64(key ^ mix64(ep)) }

// affinityKey returns the hash of res's key for attrs, and false when res
// carries none of them.
func affinityKey(attrs []string, res *event.Resource) (uint64, bool) {
	if res == nil {
		return 0, false
	}
	h, found := uint64(fnvOffset), false
	for _, name := range attrs {
		if v, ok := event.Lookup(res.Attrs, name); ok {
			found = true
			h = hashString(h, v.Text())
		}
		h = hashString(h, "\xff") // 0xff is never in UTF-8: ("a","") ≠ ("","a")
	}
	return h, found
}

// Rendezvous hashing rather than a ring of virtual nodes, measured by
// BenchmarkAffinityOwner over 100,000 keys: the spread is closer to fair
// (the largest share over the fair one: 1.005 against 1.029 for a ring of
// 100 points per endpoint with 3 endpoints, 1.025 against 1.087 with 10),
// nothing is built or rebuilt when a resolution changes the set, and a
// down endpoint's keys go each to its own next endpoint rather than to
// the ring's neighbours. A lookup costs O(endpoints), 27 ns with 3
// endpoints and 64 ns with 10 (36 and 51 for the ring), once per key and
// call, not per record.

// owner returns the endpoint of eps that owns the key hashed key, skipping
// those in skip: the one of highest weight that is up or due for a probe,
// or, when every endpoint is down and none is due, the one of highest
// weight (as the balancer tries every endpoint when none is up). nil when
// skip holds them all.
func (b *balancer[C]) owner(eps []*endpoint[C], key uint64, skip []*endpoint[C]) *endpoint[C] {
	var best, bestAny *endpoint[C]
	var score, scoreAny uint64
	var now int64
	anyUp := false
	for _, ep := range eps {
		until := ep.downUntil.Load()
		anyUp = anyUp || until == 0
		if slices.Contains(skip, ep) {
			continue
		}
		s := hrwScore(key, ep.hash)
		if bestAny == nil || s > scoreAny {
			bestAny, scoreAny = ep, s
		}
		if until != 0 {
			if now == 0 {
				now = b.now().UnixNano()
			}
			if now < until {
				continue
			}
		}
		if best == nil || s > score {
			best, score = ep, s
		}
	}
	if best == nil && !anyUp {
		return bestAny
	}
	return best
}

// claim reports whether an attempt may be made on ep, the owner of a key
// by b.owner: it is up, or down and this attempt is its probe (another
// request may be probing it already). It counts the attempt.
func (b *balancer[C]) claim(ep *endpoint[C]) bool {
	if ep.downUntil.Load() != 0 && !ep.probing.CompareAndSwap(false, true) {
		return false
	}
	ep.requests.Add(1)
	return true
}

// affinityClient is a client whose requests are split by the owners of
// their records' keys (see AffinityOptions). It implements
// export.PartEncoder: a batch encoded ahead is split by key then, and a
// request joins the pieces of each key.
type affinityClient[C any] struct {
	lb     *balancer[C]
	attrs  []string
	codec  *codec
	bufs   bufferPool // request encoders, compressed payloads
	parts  bufferPool // encoders of batches encoded ahead
	log    *slog.Logger
	client interface {
		export.Client
		Stats() ClientStats
	}
	invalid, reqBytes *atomic.Int64
	// sendTo makes one call on ep of the payload that is the
	// concatenation of pieces (an encoded, maybe compressed, request),
	// written from them without a copy; inUse reports that the transport
	// may still read them after it returned.
	sendTo func(ctx context.Context, ep *endpoint[C], pieces [][]byte) (inUse bool, err error)
}

// Send encodes batches, split by key, and makes one attempt of them.
func (c *affinityClient[C]) Send(ctx context.Context, batches []*event.Batch) error {
	r, err := c.Encode(batches)
	if err != nil {
		return err
	}
	defer r.Release()
	return r.Send(ctx)
}

// Close closes the client.
func (c *affinityClient[C]) Close() error { return c.client.Close() }

// Stats returns the client's counters.
func (c *affinityClient[C]) Stats() ClientStats { return c.client.Stats() }

// Endpoints returns the state and counters of each endpoint.
func (c *affinityClient[C]) Endpoints() []EndpointStats { return c.lb.stats() }

// SetEndpointObserver sets who is told how long each attempt on an
// endpoint took. Call it before the first Send.
func (c *affinityClient[C]) SetEndpointObserver(f func(endpoint string, d time.Duration)) {
	c.lb.observe = f
}

// keyed is an encoded run of records of one key (or of none, keyed
// false): one ResourceLogs per resource, a request of its own.
type keyed struct {
	key     uint64
	keyed   bool
	records int
	from    int // distances from the end of the encoder's buffer
	to      int
}

// affinityPart is a batch encoded ahead by EncodePart: its records, one
// request per key, in e.
type affinityPart struct {
	e    *encoder
	runs []keyed
}

// encodeKeyed writes the records of batches in e, grouped by key, as
// requests one after the other (see keyed), and appends them to runs.
// Each holds one ResourceLogs per resource of its key, as encode does.
func (c *affinityClient[C]) encodeKeyed(e *encoder, batches []*event.Batch, runs []keyed) []keyed {
	type resource struct {
		res     *event.Resource
		run     int
		records int
	}
	var buf [16]resource
	resources := buf[:0]
	first := len(runs)
	var last *event.Resource
	li := -1
	for _, b := range batches {
		for i := range b.Records {
			res := resourceOf(b, &b.Records[i])
			if li < 0 || res != last {
				last = res
				li = slices.IndexFunc(resources, func(r resource) bool { return r.res == res })
				if li < 0 {
					key, ok := affinityKey(c.attrs, res)
					ri := slices.IndexFunc(runs[first:], func(k keyed) bool { return k.keyed == ok && k.key == key })
					if ri < 0 {
						ri = len(runs) - first
						runs = append(runs, keyed{key: key, keyed: ok})
					}
					li = len(resources)
					resources = append(resources, resource{res: res, run: first + ri})
				}
			}
			resources[li].records++
		}
	}
	for ri := len(runs) - 1; ri >= first; ri-- {
		k := &runs[ri]
		k.from = e.written()
		for _, r := range slices.Backward(resources) {
			if r.run == ri {
				e.resourceLogs(batches, r.res)
				k.records += r.records
			}
		}
		k.to = e.written()
	}
	return runs
}

// EncodePart encodes b on its own, split by key (see export.PartEncoder).
func (c *affinityClient[C]) EncodePart(b *event.Batch) export.Part {
	e := c.parts.take()
	e.begin()
	one := [1]*event.Batch{b}
	p := &affinityPart{e: e, runs: c.encodeKeyed(e, one[:], nil)}
	e.end()
	if e.invalid > 0 {
		c.invalid.Add(int64(e.invalid))
	}
	return p
}

// Encode encodes batches into one request per key (records without a key
// in one more).
func (c *affinityClient[C]) Encode(batches []*event.Batch) (export.Encoded, error) {
	return c.EncodeParts(batches, nil)
}

// EncodeParts encodes a request of batches, some of them encoded ahead
// by EncodePart (see export.PartEncoder): the runs of each key, from the
// parts and from the other batches, make its group. The request keeps the
// parts' encoders until it is released.
func (c *affinityClient[C]) EncodeParts(batches []*event.Batch, parts []export.Part) (export.Encoded, error) {
	r := &affinityRequest[C]{c: c}
	var rest []*event.Batch
	for i, b := range batches {
		if p := partAt(parts, i); p != nil {
			r.parts = append(r.parts, p.(*affinityPart))
		} else {
			rest = append(rest, b)
		}
	}
	var runs []keyed
	if len(rest) > 0 {
		r.e = c.bufs.take()
		r.e.begin()
		runs = c.encodeKeyed(r.e, rest, nil)
		r.e.end()
		if r.e.invalid > 0 {
			c.invalid.Add(int64(r.e.invalid))
		}
	}
	add := func(e *encoder, k keyed) {
		gi := slices.IndexFunc(r.groups, func(g keyGroup) bool { return g.keyed == k.keyed && g.key == k.key })
		if gi < 0 {
			gi = len(r.groups)
			r.groups = append(r.groups, keyGroup{key: k.key, keyed: k.keyed})
		}
		g := &r.groups[gi]
		g.pieces = append(g.pieces, e.buf[len(e.buf)-k.to:len(e.buf)-k.from])
		g.records += k.records
	}
	for _, p := range r.parts {
		for _, k := range p.runs {
			add(p.e, k)
		}
	}
	for _, k := range runs {
		add(r.e, k)
	}
	return r, nil
}

// keyGroup is the part of a request whose records share an owner's key,
// or have none (keyed false): encoded requests whose concatenation is
// one.
type keyGroup struct {
	key     uint64
	keyed   bool
	pieces  [][]byte
	records int
	done    bool
	alone   bool // sent in a call of its own (after a refusal for size)
}

// affinityRequest is a request of an affinityClient, split by key. An
// attempt sends each group not yet accepted to its key's owner, those of
// one owner in one call, the calls at once; a group accepted stays
// accepted, so a retry sends only the others, to their owners then.
type affinityRequest[C any] struct {
	c      *affinityClient[C]
	groups []keyGroup
	e      *encoder // of the batches not encoded ahead, or nil
	parts  []*affinityPart
	// busy: a transport may still read an encoder's buffer (a call failed
	// with a payload not copied); the buffers are then not reused.
	busy bool
	// refused counts the records of groups refused as a whole
	// (permanent errors), rejected those partly rejected.
	refused, rejected int64
	message           string
	lastErr           error
}

// Send makes one attempt. It returns nil when every group was accepted; a
// *export.PartialError when some records were refused or rejected (an
// error of the whole request when all were refused); otherwise the
// retryable error of the last call that failed.
func (r *affinityRequest[C]) Send(ctx context.Context) error {
	c := r.c
	eps, err := c.lb.endpoints(ctx)
	if err != nil {
		return err
	}
	// Passes: each pending group goes to its key's owner, skipping the
	// endpoints that failed in this attempt, until every group is
	// settled or no endpoint is left to try. The calls of a pass, one
	// per owner (and the records without a key, round robin, once per
	// attempt), are made at once. A group refused for its size is sent
	// again at once, in halves, each in a call of its own.
	var failed []*endpoint[C]
	var retryable error
	var keylessSent []bool
	for {
		keylessSent = append(keylessSent, make([]bool, len(r.groups)-len(keylessSent))...)
		owner := make([]*endpoint[C], len(r.groups))
		var owners []*endpoint[C]
		for i, g := range r.groups {
			if g.done || !g.keyed {
				continue
			}
			if ep := c.lb.owner(eps, g.key, failed); ep != nil {
				owner[i] = ep
				if !slices.Contains(owners, ep) {
					owners = append(owners, ep)
				}
			}
		}
		var calls []ownerCall[C]
		for _, ep := range owners {
			if !c.lb.claim(ep) {
				// Another request probes it: its keys go to their next owner.
				failed = append(failed, ep)
				continue
			}
			n := len(calls)
			calls = append(calls, ownerCall[C]{ep: ep})
			for i, o := range owner {
				switch {
				case o != ep:
				case r.groups[i].alone:
					calls = append(calls, ownerCall[C]{ep: ep})
					calls[len(calls)-1].add(r, i)
				default:
					calls[n].add(r, i)
				}
			}
			if len(calls[n].idx) == 0 {
				calls = slices.Delete(calls, n, n+1)
			}
			for range len(calls) - n - 1 {
				ep.requests.Add(1) // claim counted one
			}
		}
		for i, g := range r.groups {
			if !g.done && !g.keyed && !keylessSent[i] {
				keylessSent[i] = true
				var oc ownerCall[C] // ep nil: round robin
				oc.add(r, i)
				calls = append(calls, oc)
			}
		}
		if len(calls) == 0 {
			if len(owners) == 0 {
				break
			}
			continue // every owner was being probed: their keys go to the next
		}
		var wg sync.WaitGroup
		for i := range calls[1:] {
			wg.Go(func() { calls[1+i].make(ctx, c) })
		}
		calls[0].make(ctx, c)
		wg.Wait()
		for _, oc := range calls {
			r.busy = r.busy || oc.busy
			var tl *tooLargeError
			switch {
			case errors.As(oc.err, &tl):
				if err := r.split(oc.idx, oc.err); err != nil {
					r.answer(oc.idx, err)
				}
				for _, gi := range oc.idx {
					if !r.groups[gi].keyed {
						keylessSent[gi] = false
					}
				}
			case oc.err != nil && !answered(oc.err):
				retryable = oc.err
				if oc.ep != nil {
					failed = append(failed, oc.ep)
				}
			default:
				r.answer(oc.idx, oc.err)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if slices.ContainsFunc(r.groups, func(g keyGroup) bool { return !g.done }) {
		switch {
		case retryable != nil:
		case ctx.Err() != nil:
			retryable = export.WithReason(ctx.Err(), export.ReasonTimeout)
		default:
			retryable = export.WithReason(errors.New("no otlp endpoint is up"), export.ReasonUnavailable)
		}
		return retryable
	}
	total := 0
	for _, g := range r.groups {
		total += g.records
	}
	switch {
	case r.refused == int64(total):
		return r.lastErr
	case r.refused+r.rejected > 0:
		msg := r.message
		if r.lastErr != nil {
			msg = r.lastErr.Error()
		}
		return &export.PartialError{Rejected: r.refused + r.rejected, Message: msg}
	}
	return nil
}

// ownerCall is one call of an attempt: the groups idx of a request, to
// ep (nil: the endpoints round robin), and its outcome.
type ownerCall[C any] struct {
	ep      *endpoint[C]
	idx     []int
	pieces  [][]byte
	records int
	err     error
	busy    bool // a transport may still read the pieces
}

func (oc *ownerCall[C]) add(r *affinityRequest[C], gi int) {
	oc.idx = append(oc.idx, gi)
	oc.pieces = append(oc.pieces, r.groups[gi].pieces...)
	oc.records += r.groups[gi].records
}

// make makes the call and records its outcome on the endpoints.
func (oc *ownerCall[C]) make(ctx context.Context, c *affinityClient[C]) {
	payload := oc.pieces
	var zp *[]byte
	if c.codec != nil {
		zp = c.bufs.get()
		s := c.codec.begin(*zp)
		s.compress(oc.pieces...)
		*zp = s.end()
		payload = [][]byte{*zp}
		c.reqBytes.Add(int64(s.n))
	} else {
		for _, p := range oc.pieces {
			c.reqBytes.Add(int64(len(p)))
		}
	}
	var inUse bool
	if oc.ep != nil {
		began := time.Now()
		inUse, oc.err = c.sendTo(ctx, oc.ep, payload)
		c.lb.settle(ctx, oc.ep, oc.records, time.Since(began), oc.err)
	} else {
		a := attempt[C]{records: oc.records}
		var ep *endpoint[C]
		ep, oc.err = c.lb.first(ctx, &a)
		for ep != nil {
			var busy bool
			busy, oc.err = c.sendTo(ctx, ep, payload)
			inUse = inUse || busy
			ep = c.lb.done(ctx, &a, ep, oc.err)
		}
	}
	switch {
	case zp != nil && !inUse:
		c.bufs.put(zp)
	case zp == nil && inUse:
		oc.busy = true
	}
}

// split handles a refusal for its size, err, of a call of the groups idx:
// several groups are sent again each alone; a group alone is split in
// halves, sent alone (the first in its place, the second appended); a
// single record is refused (settled by answer). It returns an error to
// settle the groups with when the request cannot be read back.
func (r *affinityRequest[C]) split(idx []int, err error) error {
	if len(idx) > 1 {
		for _, gi := range idx {
			r.groups[gi].alone = true
		}
		return nil
	}
	g := &r.groups[idx[0]]
	a, b, n, ok, serr := splitRequest(slices.Concat(g.pieces...))
	switch {
	case serr != nil:
		return export.Permanent(fmt.Errorf("split a request refused for its size (%v): %w", err, serr))
	case !ok:
		return export.WithReason(fmt.Errorf("a single record larger than the endpoint accepts: %w", err), export.ReasonTooLarge)
	}
	r.c.log.Debug("request refused for its size, sending it in halves", "records", n, "err", err)
	second := keyGroup{key: g.key, keyed: g.keyed, pieces: [][]byte{b}, records: n - n/2, alone: true}
	g.pieces, g.records, g.alone = [][]byte{a}, n/2, true
	r.groups = append(r.groups, second)
	return nil
}

// answer settles the groups idx with err, an answer about them: accepted,
// partly rejected, refused.
func (r *affinityRequest[C]) answer(idx []int, err error) {
	records := 0
	for _, gi := range idx {
		r.groups[gi].done = true
		records += r.groups[gi].records
	}
	var pe *export.PartialError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		r.rejected += pe.Rejected
		r.message = pe.Message
	default: // permanent, or a single record too large
		r.refused += int64(records)
		r.lastErr = export.Permanent(err)
		r.c.log.Warn("otlp endpoint refused the records of some keys", "records", records, "reason", export.Reason(err), "err", err)
	}
}

// Release returns the request's encoders for reuse unless a call may
// still read them.
func (r *affinityRequest[C]) Release() {
	if !r.busy {
		if r.e != nil {
			r.c.bufs.release(r.e)
		}
		for _, p := range r.parts {
			r.c.parts.release(p.e)
		}
	}
	r.groups, r.e, r.parts = nil, nil, nil
}
