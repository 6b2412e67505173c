package filter

import (
	"errors"
	"iter"
	"math"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// SampleOptions configure the sample processor.
type SampleOptions struct {
	// Rate is the share of records kept, in (0, 1].
	Rate float64 `yaml:"rate"`
	// By names a field (see [ParseField]) whose hash decides: every record
	// with the same value is kept or dropped together, on every host and
	// after restarts (e.g. attributes.request_id, trace_id). Records without
	// the field are sampled by rate. Empty: sample by rate alone, keeping
	// exactly Rate of the records, evenly spread.
	By string `yaml:"by"`
}

// Validate checks o.
func (o *SampleOptions) Validate() error {
	var errs []error
	if !(o.Rate > 0 && o.Rate <= 1) {
		errs = append(errs, config.Fieldf("rate", "must be in (0, 1], got %v", o.Rate))
	}
	if _, err := ParseField(o.By); err != nil {
		errs = append(errs, config.Fieldf("by", "%v", err))
	}
	return errors.Join(errs...)
}

// Sample returns a stage that keeps a share of the records; dropped ones are
// counted under reason "sample". It does not allocate per record.
func Sample(o SampleOptions, drops DropFunc) (pipe.Stage, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	field, _ := ParseField(o.By)
	drops = orNop(drops)
	// A record is kept when its 64-bit hash falls below the threshold.
	threshold := uint64(math.MaxUint64)
	if o.Rate < 1 {
		threshold = uint64(o.Rate * float64(math.MaxUint64))
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			var (
				seen float64 // records sampled by rate so far
				key  []byte
			)
			byRate := func() bool {
				before := math.Floor(seen * o.Rate)
				seen++
				return math.Floor(seen*o.Rate) > before
			}
			for b := range in {
				dropped := keepIf(b, func(r *event.Record) bool {
					if field.IsZero() {
						return byRate()
					}
					var ok bool
					key, ok = field.AppendKey(key[:0], b, r)
					if !ok {
						return byRate()
					}
					return fnv64(key) <= threshold
				})
				if dropped > 0 {
					drops("sample", dropped)
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}

// fnv64 is FNV-1a with a final mix, stable across hosts and versions so that
// sampling by a field agrees between agents.
func fnv64(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range p {
		h ^= uint64(c)
		h *= 1099511628211
	}
	// FNV's high bits are weak for short keys; finish with a murmur3 mix.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// RateLimitOptions configure the rate_limit processor.
type RateLimitOptions struct {
	// Rate is the sustained number of records per second allowed per key.
	Rate float64 `yaml:"rate"`
	// Burst is how many records a key may send at once; default Rate (at least 1).
	Burst float64 `yaml:"burst"`
	// By names the field that keys the buckets (see [ParseField]), e.g.
	// resource.k8s.pod.name; empty: one bucket per file.
	By string `yaml:"by"`
	// MaxKeys bounds the number of buckets; keys beyond it share one
	// overflow bucket. Default 10000.
	MaxKeys int `yaml:"max_keys"`
}

// Validate checks o and fills defaults.
func (o *RateLimitOptions) Validate() error {
	var errs []error
	if !(o.Rate > 0) || math.IsInf(o.Rate, 0) {
		errs = append(errs, config.Fieldf("rate", "must be positive, got %v", o.Rate))
	}
	if o.Burst == 0 {
		o.Burst = max(o.Rate, 1)
	}
	if o.Burst < 1 {
		errs = append(errs, config.Fieldf("burst", "must be at least 1, got %v", o.Burst))
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 10000
	}
	if o.MaxKeys < 0 {
		errs = append(errs, config.Fieldf("max_keys", "must be positive"))
	}
	if _, err := ParseField(o.By); err != nil {
		errs = append(errs, config.Fieldf("by", "%v", err))
	}
	return errors.Join(errs...)
}

type bucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last refill
}

// RateLimit returns a stage that lets through at most Rate records per
// second per key (with bursts of Burst) and drops the rest, counted under
// reason "rate_limit". The clock is read once per batch. It allocates only
// when it sees a new key.
func RateLimit(o RateLimitOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	field, _ := ParseField(o.By)
	if field.IsZero() {
		field = Field{kind: fieldPath}
	}
	drops = orNop(drops)
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			buckets := make(map[string]*bucket)
			var overflow, keyless bucket
			overflow.tokens, keyless.tokens = o.Burst, o.Burst
			var key []byte
			var lastSweep int64
			// idle is how long a bucket takes to refill completely; such a
			// bucket equals a new one and can be forgotten.
			idle := int64(o.Burst / o.Rate * 1e9)
			take := func(bk *bucket, t int64) bool {
				if bk.last == 0 {
					bk.last = t
				}
				if dt := t - bk.last; dt > 0 {
					bk.tokens = min(o.Burst, bk.tokens+float64(dt)/1e9*o.Rate)
					bk.last = t
				}
				if bk.tokens >= 1 {
					bk.tokens--
					return true
				}
				return false
			}
			for b := range in {
				t := now().UnixNano()
				dropped := keepIf(b, func(r *event.Record) bool {
					var ok bool
					key, ok = field.AppendKey(key[:0], b, r)
					if !ok {
						return take(&keyless, t)
					}
					bk := buckets[string(key)]
					if bk == nil {
						if len(buckets) >= o.MaxKeys && t-lastSweep >= idle {
							lastSweep = t
							for k, old := range buckets {
								if t-old.last >= idle {
									delete(buckets, k)
								}
							}
						}
						if len(buckets) >= o.MaxKeys {
							return take(&overflow, t)
						}
						bk = &bucket{tokens: o.Burst, last: t}
						buckets[string(key)] = bk
					}
					return take(bk, t)
				})
				if dropped > 0 {
					drops("rate_limit", dropped)
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}
