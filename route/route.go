// Package route sends records to exporters by condition. A routing [Table] is
// an ordered list of rules; each record goes to the exporters of the first
// rule whose condition matches it, and also to those of the following
// matching rules while a matched rule says Continue. A rule with no condition
// matches everything (a default route when last).
//
// Acknowledgement: a batch split to several exporters is acknowledged when
// every exporter that received any of its records released its part (the
// parts share the batch's reference count); records that match no rule are
// dropped and counted, and a batch whose records all went nowhere is
// acknowledged at once.
package route

import (
	"fmt"
	"sync/atomic"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/filter"
)

// Rule is one route: records matching When (a condition in the language of
// [filter.Compile]; empty matches all) go to Exporters.
type Rule struct {
	When      string
	Exporters []string
	// Continue also tries the following rules after this one matched.
	Continue bool
}

// Dest is one exporter's share of a batch. The receiver owns one reference
// to Batch and must call Done on it.
type Dest struct {
	Exporter string
	Batch    *event.Batch
}

// maxExporters bounds the distinct exporters of one table (a bit mask per record).
const maxExporters = 64

// Table is a compiled routing table. It is not safe for concurrent use: use
// one per pipeline goroutine (see [Table.Rules]).
type Table struct {
	rules     []rule
	exporters []string // bit i of a record's mask is exporters[i]
	all       uint64   // mask of every exporter
	matchAll  bool     // first rule has no condition: no evaluation needed

	masks    []uint64
	counts   []int
	dests    []Dest
	unrouted atomic.Uint64
	errors   atomic.Uint64
}

type rule struct {
	src  Rule
	cond *filter.Condition // nil: matches all
	mask uint64
	cont bool
}

// New compiles rules. It fails on a bad condition, a rule without
// exporters, or more than 64 distinct exporters.
func New(rules []Rule) (*Table, error) {
	t := &Table{}
	index := map[string]int{}
	for i, r := range rules {
		if len(r.Exporters) == 0 {
			return nil, fmt.Errorf("compile route %d: no exporters", i)
		}
		cr := rule{src: r, cont: r.Continue}
		if r.When != "" {
			c, err := filter.Compile(r.When)
			if err != nil {
				return nil, fmt.Errorf("compile route %d: %w", i, err)
			}
			cr.cond = c
		}
		for _, e := range r.Exporters {
			bit, ok := index[e]
			if !ok {
				if len(t.exporters) == maxExporters {
					return nil, fmt.Errorf("compile route %d: more than %d exporters", i, maxExporters)
				}
				bit = len(t.exporters)
				index[e] = bit
				t.exporters = append(t.exporters, e)
			}
			cr.mask |= 1 << bit
		}
		t.all |= cr.mask
		t.rules = append(t.rules, cr)
	}
	t.matchAll = len(t.rules) > 0 && t.rules[0].cond == nil && !t.rules[0].cont
	t.counts = make([]int, len(t.exporters))
	return t, nil
}

// Rules returns the rules the table was compiled from; New(t.Rules()) makes
// a table for another goroutine.
func (t *Table) Rules() []Rule {
	rules := make([]Rule, len(t.rules))
	for i, r := range t.rules {
		rules[i] = r.src
	}
	return rules
}

// Exporters lists every exporter the table can send to, in first-use order.
func (t *Table) Exporters() []string { return t.exporters }

// Unrouted is the number of records that matched no rule and were dropped.
// Safe to call from any goroutine.
func (t *Table) Unrouted() uint64 { return t.unrouted.Load() }

// Errors is the number of condition evaluations that failed (treated as no
// match). Safe to call from any goroutine.
func (t *Table) Errors() uint64 { return t.errors.Load() }

// mask returns the exporters record r goes to.
func (t *Table) mask(b *event.Batch, r *event.Record) uint64 {
	if t.matchAll {
		return t.rules[0].mask
	}
	var m uint64
	for i := range t.rules {
		ru := &t.rules[i]
		if ru.cond != nil {
			ok, err := ru.cond.Match(b, r)
			if err != nil {
				t.errors.Add(1)
			}
			if !ok {
				continue
			}
		}
		m |= ru.mask
		if !ru.cont {
			break
		}
	}
	return m
}

// Route returns the exporters record r of b goes to, in the table's
// exporter order; none when it matches no route. It counts nothing.
func (t *Table) Route(b *event.Batch, r *event.Record) []string {
	if len(t.rules) == 0 {
		return nil
	}
	m := t.mask(b, r)
	var out []string
	for bit, e := range t.exporters {
		if m&(1<<bit) != 0 {
			out = append(out, e)
		}
	}
	return out
}

// Split assigns b's records to exporters. It consumes the caller's reference
// to b and returns one Dest per exporter that received records, each holding
// one reference: b itself (retained) for an exporter that gets every record,
// a view ([event.Batch.View]) for a subset. If no record goes anywhere, b is
// released (acknowledged) and Split returns nil. The returned slice is
// reused by the next call.
func (t *Table) Split(b *event.Batch) []Dest {
	t.dests = t.dests[:0]
	n := len(b.Records)
	if n == 0 || len(t.rules) == 0 {
		b.Done()
		return nil
	}
	if cap(t.masks) < n {
		t.masks = make([]uint64, n)
	}
	masks := t.masks[:n]
	clear(t.counts)
	unrouted := 0
	for i := range b.Records {
		m := t.mask(b, &b.Records[i])
		masks[i] = m
		if m == 0 {
			unrouted++
			continue
		}
		for bit := range t.exporters {
			if m&(1<<bit) != 0 {
				t.counts[bit]++
			}
		}
	}
	if unrouted > 0 {
		t.unrouted.Add(uint64(unrouted))
	}
	usedWhole := false
	for bit, e := range t.exporters {
		c := t.counts[bit]
		switch {
		case c == 0:
			continue
		case c == n:
			if usedWhole {
				b.Retain(1)
			}
			usedWhole = true
			t.dests = append(t.dests, Dest{Exporter: e, Batch: b})
		default:
			recs := make([]event.Record, 0, c)
			for i := range b.Records {
				if masks[i]&(1<<bit) != 0 {
					recs = append(recs, b.Records[i])
				}
			}
			t.dests = append(t.dests, Dest{Exporter: e, Batch: b.View(recs)})
		}
	}
	if !usedWhole {
		// The views hold their own references; release the caller's.
		b.Done()
	}
	if len(t.dests) == 0 {
		return nil
	}
	return t.dests
}
