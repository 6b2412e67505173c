// Package filter holds the stages that decide which records go on: match
// (keep or drop by a [Condition]), sample (a deterministic share by a field's
// hash, or an exact rate) and rate_limit (a token bucket per key).
//
// A dropped record is removed from its batch; the batch is still yielded, so
// its range is acknowledged in order with the others and the file's offset
// advances past dropped records. Drops are counted by reason through a
// [DropFunc].
package filter

import (
	"errors"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// DropFunc counts records a stage removed, by reason ("filter", "sample",
// "rate_limit"). It is called from the goroutine running the stage.
type DropFunc func(reason string, n int)

func orNop(d DropFunc) DropFunc {
	if d == nil {
		return func(string, int) {}
	}
	return d
}

// keepIf removes the records of b for which keep returns false, keeping the
// order of the others, and returns how many it removed. Removed records are
// swapped behind the kept ones so that every slot keeps its own attribute
// slice for reuse.
func keepIf(b *event.Batch, keep func(r *event.Record) bool) int {
	w := 0
	for i := range b.Records {
		if !keep(&b.Records[i]) {
			continue
		}
		if w != i {
			b.Records[w], b.Records[i] = b.Records[i], b.Records[w]
		}
		w++
	}
	n := len(b.Records) - w
	b.Records = b.Records[:w]
	return n
}

// MatchOptions configure the filter processor. Give exactly one of Keep and
// Drop.
type MatchOptions struct {
	// Keep passes on only the records for which this condition is true.
	Keep string `yaml:"keep"`
	// Drop removes the records for which this condition is true.
	Drop string `yaml:"drop"`
}

// Validate checks o, compiling its condition.
func (o *MatchOptions) Validate() error {
	switch {
	case (o.Keep == "") == (o.Drop == ""):
		return config.Fieldf("", "give exactly one of keep or drop")
	case o.Keep != "":
		if _, err := Compile(o.Keep); err != nil {
			return config.Fieldf("keep", "%v", err)
		}
	default:
		if _, err := Compile(o.Drop); err != nil {
			return config.Fieldf("drop", "%v", err)
		}
	}
	return nil
}

// Match returns a stage that keeps or drops records by a condition. A record
// whose condition fails to evaluate (a type mismatch) is kept, so that a bad
// condition loses nothing; such records are counted with errs under reason
// "filter_error" (they are not drops) and logged at warning level, at most
// once per [errorLogInterval] per stage with the count since the last line.
// now is the clock of that limit (time.Now when nil).
func Match(o MatchOptions, log *slog.Logger, now func() time.Time, drops, errs DropFunc) (pipe.Stage, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	drops, errs = orNop(drops), orNop(errs)
	src, keepWhen := o.Keep, true
	if o.Drop != "" {
		src, keepWhen = o.Drop, false
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			// One compiled condition per run: a Condition is single-goroutine.
			cond, err := Compile(src)
			if err != nil { // Validate compiled it already
				log.Error("compile filter condition", "err", err)
				return
			}
			var lastLog time.Time
			unlogged := 0
			for b := range in {
				var evalErr error
				failed := 0
				dropped := keepIf(b, func(r *event.Record) bool {
					ok, err := cond.Match(b, r)
					if err != nil {
						failed++
						evalErr = err
						return true
					}
					return ok == keepWhen
				})
				if dropped > 0 {
					drops("filter", dropped)
				}
				if failed > 0 {
					errs("filter_error", failed)
					unlogged += failed
					if t := now(); lastLog.IsZero() || t.Sub(lastLog) >= errorLogInterval {
						log.Warn("filter condition could not be evaluated; records kept", "condition", src,
							"records", unlogged, "err", evalErr)
						lastLog, unlogged = t, 0
					}
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}

// errorLogInterval is the least time between two warnings of one filter
// stage about conditions that could not be evaluated.
const errorLogInterval = time.Minute

// Field names a part of a record used as a key: body, severity_text,
// trace_id, attributes.NAME or resource.NAME (NAME may contain dots).
type Field struct {
	kind fieldKind
	name string
}

type fieldKind uint8

const (
	fieldNone fieldKind = iota
	fieldBody
	fieldSeverityText
	fieldTraceID
	fieldAttr
	fieldResource
	fieldPath
)

// ParseField parses a field name; "" is the empty field (no key).
func ParseField(s string) (Field, error) {
	switch {
	case s == "":
		return Field{}, nil
	case s == "body":
		return Field{kind: fieldBody}, nil
	case s == "severity_text":
		return Field{kind: fieldSeverityText}, nil
	case s == "trace_id":
		return Field{kind: fieldTraceID}, nil
	case s == "path":
		return Field{kind: fieldPath}, nil
	case strings.HasPrefix(s, "attributes.") && len(s) > len("attributes."):
		return Field{kind: fieldAttr, name: s[len("attributes."):]}, nil
	case strings.HasPrefix(s, "resource.") && len(s) > len("resource."):
		return Field{kind: fieldResource, name: s[len("resource."):]}, nil
	}
	return Field{}, errors.New("unknown field " + strconv.Quote(s) + " (want body, severity_text, trace_id, path, attributes.NAME or resource.NAME)")
}

// IsZero reports whether f names nothing.
func (f Field) IsZero() bool { return f.kind == fieldNone }

// AppendKey appends the text of f in record r of batch b to dst; ok is false
// when the record has no such field. It does not allocate beyond growing dst.
func (f Field) AppendKey(dst []byte, b *event.Batch, r *event.Record) ([]byte, bool) {
	var v event.Value
	switch f.kind {
	case fieldBody:
		v = r.Body
	case fieldSeverityText:
		if r.SeverityText == "" {
			return dst, false
		}
		return append(dst, r.SeverityText...), true
	case fieldTraceID:
		if r.TraceID == ([16]byte{}) {
			return dst, false
		}
		return append(dst, r.TraceID[:]...), true
	case fieldPath:
		return append(dst, b.Path...), true
	case fieldAttr:
		var ok bool
		if v, ok = event.Lookup(r.Attrs, f.name); !ok {
			return dst, false
		}
	case fieldResource:
		res := r.Resource
		if res == nil {
			res = b.Resource
		}
		if res == nil {
			return dst, false
		}
		var ok bool
		if v, ok = event.Lookup(res.Attrs, f.name); !ok {
			return dst, false
		}
	default:
		return dst, false
	}
	switch v.Kind {
	case event.KindString, event.KindBytes:
		return append(dst, v.Str...), true
	case event.KindInt:
		return strconv.AppendInt(dst, v.AsInt(), 10), true
	case event.KindDouble:
		return strconv.AppendFloat(dst, v.AsDouble(), 'g', -1, 64), true
	case event.KindBool:
		return strconv.AppendBool(dst, v.AsBool()), true
	case event.KindEmpty:
		return dst, false
	}
	return append(dst, v.Text()...), true
}
