package parse

import (
	"errors"
	"iter"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// AttrIOStream is the attribute holding the stream a container line was
// written to: "stdout" or "stderr" (OpenTelemetry's log.iostream).
const AttrIOStream = "log.iostream"

// ContainerOptions configure the cri, docker and container parsers.
type ContainerOptions struct {
	// MaxBytes bounds a line joined from partial lines; the rest is cut and
	// the record flagged Truncated. Default 1MiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// FlushTimeout emits a partial line whose end has not arrived after this
	// long. Default 1s.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// OnError: keep (default) or drop a line that is not in the format.
	OnError string `yaml:"on_error"`
}

// Validate checks o and fills defaults.
func (o *ContainerOptions) Validate() error {
	var errs []error
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 20
	}
	if o.MaxBytes < 0 {
		errs = append(errs, config.Fieldf("max_bytes", "must be positive"))
	}
	if o.FlushTimeout == 0 {
		o.FlushTimeout = time.Second
	}
	if o.FlushTimeout < 0 {
		errs = append(errs, config.Fieldf("flush_timeout", "must be positive"))
	}
	switch o.OnError {
	case "":
		o.OnError = "keep"
	case "keep", "drop":
	default:
		errs = append(errs, config.Fieldf("on_error", "must be keep or drop, got %q", o.OnError))
	}
	return errors.Join(errs...)
}

type containerFormat uint8

const (
	formatCRI containerFormat = iota
	formatDocker
	formatAuto
)

// CRI returns a stage that unwraps the log format of containerd and CRI-O
// ("<RFC 3339 time> <stdout|stderr> <P|F> <message>"): the body becomes the
// message, Time the runtime's timestamp, and log.iostream the stream. Partial
// lines (tag P, written when a line exceeds the runtime's buffer, usually 16
// KiB) are joined with the lines that follow on the same stream up to the
// final F line, across batches (see the package documentation on joining).
func CRI(o ContainerOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	return containerStage(formatCRI, o, now, drops)
}

// Docker returns a stage that unwraps Docker's json-file log lines
// ({"log":"...\n","stream":"stdout","time":"..."}): the body becomes the
// log text without its newline, Time the "time" field and log.iostream the
// stream. Lines Docker split (a "log" without a final newline) are joined.
func Docker(o ContainerOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	return containerStage(formatDocker, o, now, drops)
}

// Container returns a stage that unwraps either format, deciding per line: a
// line starting with '{' is Docker json-file, anything else CRI. Use it for
// /var/log/pods when nodes run different runtimes.
func Container(o ContainerOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	return containerStage(formatAuto, o, now, drops)
}

func containerStage(format containerFormat, o ContainerOptions, now func() time.Time, drops DropFunc) (pipe.Stage, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("container", err)
	}
	if now == nil {
		now = time.Now
	}
	if drops == nil {
		drops = func(string, int) {}
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		c := &containerParser{format: format, drop: o.OnError == "drop", drops: drops}
		c.time = TimeParser{loc: time.UTC, utcOnly: true}
		j := &joiner{
			decide:   c.decide,
			maxLines: int(o.MaxBytes), // bounded by bytes; a part carries at least one byte
			maxBytes: int(o.MaxBytes),
			timeout:  o.FlushTimeout,
			now:      now,
		}
		return j.run(in)
	}, nil
}

type containerParser struct {
	format containerFormat
	drop   bool
	drops  DropFunc
	time   TimeParser
	json   jsonParser
}

const (
	errCRI    = "parse cri: not <time> <stream> <P|F> <message>"
	errDocker = "parse docker: not a json-file log line"
)

func (c *containerParser) decide(b *event.Batch, r *event.Record) (decision, bool, uint8) {
	if r.Body.Kind != event.KindString {
		return c.fail(r, errNotString)
	}
	line := r.Body.Str
	format := c.format
	if format == formatAuto {
		format = formatCRI
		if len(line) > 0 && line[0] == '{' {
			format = formatDocker
		}
	}
	if format == formatDocker {
		return c.docker(b, r, line)
	}
	return c.cri(r, line)
}

func (c *containerParser) fail(r *event.Record, msg string) (decision, bool, uint8) {
	if c.drop {
		c.drops("parse_error", 1)
		return joinDrop, false, 0
	}
	r.Flags |= event.ParseError
	r.Attrs = event.Set(r.Attrs, AttrParseError, event.String(msg))
	return joinSingle, false, 0
}

func (c *containerParser) cri(r *event.Record, line string) (decision, bool, uint8) {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return c.fail(r, errCRI)
	}
	stream, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return c.fail(r, errCRI)
	}
	tag, msg, _ := strings.Cut(rest, " ")
	// Tags are ':'-separated; the first is P (partial) or F (full).
	if i := strings.IndexByte(tag, ':'); i >= 0 {
		tag = tag[:i]
	}
	if tag != "P" && tag != "F" {
		return c.fail(r, errCRI)
	}
	sid, streamName, ok := streamID(stream)
	if !ok {
		return c.fail(r, errCRI)
	}
	ns, err := c.time.rfc3339(ts)
	if err != nil {
		return c.fail(r, errCRI)
	}
	r.Time = ns
	r.Body = event.String(msg)
	r.Attrs = event.Set(r.Attrs, AttrIOStream, event.String(streamName))
	return joinAdd, tag == "F", sid
}

func streamID(s string) (uint8, string, bool) {
	switch s {
	case "stdout":
		return 0, "stdout", true
	case "stderr":
		return 1, "stderr", true
	}
	return 0, "", false
}

func (c *containerParser) docker(b *event.Batch, r *event.Record, line string) (decision, bool, uint8) {
	fields, ok := c.json.fields(b, line)
	defer c.json.fail("")
	if !ok {
		return c.fail(r, errDocker)
	}
	logv, _ := event.Lookup(fields, "log")
	if logv.Kind != event.KindString {
		return c.fail(r, errDocker)
	}
	stream, _ := event.Lookup(fields, "stream") // not a string: ""
	sid, streamName, ok := streamID(stream.Str)
	if !ok {
		return c.fail(r, errDocker)
	}
	var ns int64
	if t, _ := event.Lookup(fields, "time"); t.Kind == event.KindString {
		var err error
		if ns, err = c.time.rfc3339(t.Str); err != nil {
			return c.fail(r, errDocker)
		}
	}
	// The message is part of the line or, unescaped, in the batch's arena.
	msg := logv.Str
	last := strings.HasSuffix(msg, "\n")
	if last {
		msg = strings.TrimSuffix(msg[:len(msg)-1], "\r")
	}
	r.Time = ns
	r.Body = event.String(msg)
	r.Attrs = event.Set(r.Attrs, AttrIOStream, event.String(streamName))
	return joinAdd, last, sid
}
