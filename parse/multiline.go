package parse

import (
	"errors"
	"iter"
	"regexp"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// MultilineOptions configure the multiline stage. Give exactly one of Start,
// End, Continue, Indent or Preset.
type MultilineOptions struct {
	// Start: a line matching this pattern begins a new event; other lines
	// continue the current one.
	Start string `yaml:"start"`
	// End: a line matching this pattern ends the current event.
	End string `yaml:"end"`
	// Continue: a line matching this pattern continues the current event;
	// any other line begins a new one.
	Continue string `yaml:"continue"`
	// Indent: lines starting with a space or tab continue the current event.
	Indent bool `yaml:"indent"`
	// Preset is a ready-made continuation rule: java (stack traces, "Caused
	// by:", "... 5 more"), python (tracebacks and chained exceptions), go
	// (panics and goroutine dumps), ruby (backtraces), dotnet (exceptions
	// with inner exceptions), nodejs (Error stacks and uncaught exceptions)
	// or php (fatal errors with stack traces).
	Preset string `yaml:"preset"`
	// Separator joins the lines of an event; default "\n".
	Separator *string `yaml:"separator"`
	// MaxLines ends an event after this many lines; default 500.
	MaxLines int `yaml:"max_lines"`
	// MaxBytes cuts an event's body at this size and flags it Truncated;
	// default 1MiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// FlushTimeout emits an open event when no line has arrived for it for
	// this long, so that a lone last line is not held; default 1s.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
}

// Continuation patterns of the presets.
var multilinePresets = map[string]string{
	// "\tat com.example.Foo.bar(Foo.java:42)", "\t... 12 more",
	// "Caused by: ...", "\tSuppressed: ...", and the exception line that
	// follows a log line ("java.lang.IllegalStateException: boom").
	"java": `^(?:\s|Caused by:|Suppressed:|[a-zA-Z_$][\w$]*(?:\.[a-zA-Z_$][\w$]*)+(?:Exception|Error|Throwable)\b)`,
	// "Traceback (most recent call last):", indented frames, chained
	// exception notes, blank lines between them, and the final
	// "ValueError: ..." line.
	"python": `^(?:\s|$|Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause|[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b)`,
	// Blank lines, "goroutine 1 [running]:", "main.main()", tab-indented
	// file lines, "created by ...", "[signal SIGSEGV ...]", "exit status 2".
	"go": `^(?:\s|$|goroutine \d+ \[|[\w./*()\-]+\(.*\)$|created by |\[signal |exit status \d+)`,
	// Indented frames ("\tfrom app/x.rb:5:in `show'", Rails' "  app/x.rb:3:in
	// `call'"), blank lines, and the exception line that follows a log line
	// ("app/models/cart.rb:12:in `total': undefined method ... (NoMethodError)").
	"ruby": `^(?:\s|$|from \S+:\d+:in |\S+\.rb:\d+:in .*\([A-Z]\w*(?:::\w+)*\)$)`,
	// "   at Ns.Type.Method() in File.cs:line 42", " ---> Inner.Exception: ...",
	// "   --- End of inner exception stack trace ---", blank lines, and the
	// exception line that follows a log line ("System.IO.IOException: ...").
	"dotnet": `^(?:\s|$|[A-Z]\w*(?:\.\w+)+(?:Exception|Error)\b)`,
	// "    at fn (/app/x.js:1:2)", the object after a stack ("  code: 'X'",
	// "}"), the source excerpt and caret of an uncaught exception, blank
	// lines, "Error: boom" / "TypeError: ..." after them, "Node.js v20.1.0".
	"nodejs": `^(?:\s|$|\}|(?:[A-Z]\w*)?Error(?: \[\w+\])?:|Node\.js v\d)`,
	// "Stack trace:", "#0 /var/www/x.php(5): f()", "#1 {main}", "  thrown in
	// ... on line 3", "Next RuntimeException: ..." of chained exceptions.
	"php": `^(?:\s|$|Stack trace:|#\d+ |Next \S+)`,
}

// Validate checks o and fills defaults.
func (o *MultilineOptions) Validate() error {
	var errs []error
	n := 0
	for _, set := range []bool{o.Start != "", o.End != "", o.Continue != "", o.Indent, o.Preset != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, config.Fieldf("", "give exactly one of start, end, continue, indent or preset"))
	}
	for key, p := range map[string]string{"start": o.Start, "end": o.End, "continue": o.Continue} {
		if p == "" {
			continue
		}
		if _, err := regexp.Compile(p); err != nil {
			errs = append(errs, config.Fieldf(key, "%v", err))
		}
	}
	if o.Preset != "" {
		if _, ok := multilinePresets[o.Preset]; !ok {
			errs = append(errs, config.Fieldf("preset", "unknown preset %q (known: dotnet, go, java, nodejs, php, python, ruby)", o.Preset))
		}
	}
	if o.MaxLines == 0 {
		o.MaxLines = 500
	}
	if o.MaxLines < 0 {
		errs = append(errs, config.Fieldf("max_lines", "must be positive"))
	}
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
	return errors.Join(errs...)
}

// Multiline returns a stage that joins the lines of one file into events:
// stack traces, tracebacks, pretty-printed dumps. Joined lines are separated
// by Separator; the event keeps the first line's time, offset and
// attributes, and the union of the lines' flags. Records whose body is not a
// string pass through alone.
//
// Lines of stdout and stderr (the log.iostream attribute set by the
// container parsers) are joined separately. Lines are joined across batches; see the package documentation on how
// acknowledgement waits for an event that spans batches. Idle files are
// flushed after FlushTimeout, checked on every batch and on the tailer's
// idle ticks; the end of the input flushes every open event. now is the clock
// for the timeout (time.Now when nil).
func Multiline(o MultilineOptions, now func() time.Time) (pipe.Stage, error) {
	newJoiner, err := multilineJoiner(o, now)
	if err != nil {
		return nil, err
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return newJoiner().run(in)
	}, nil
}

// Joining is a multiline joiner driven one batch at a time, for a stage that
// joins the lines of some files only (the kubernetes processor's
// logpump.io/multiline annotation). It joins and acknowledges like
// [Multiline]: state per file and stream, an event spanning batches holds the
// batch it started in until it is emitted. It is used by one goroutine.
type Joining struct {
	j *joiner
}

// NewJoining returns a joiner with the options of [Multiline].
func NewJoining(o MultilineOptions, now func() time.Time) (*Joining, error) {
	newJoiner, err := multilineJoiner(o, now)
	if err != nil {
		return nil, err
	}
	j := newJoiner()
	j.open = make(map[joinKey]*joinState)
	return &Joining{j: j}, nil
}

// Push joins the lines of b and yields what b becomes: first a batch of the
// events of earlier batches that b's lines ended (if any), then b itself,
// then the events of any file idle for the flush timeout. It returns false
// when yield did.
func (m *Joining) Push(b *event.Batch, yield func(*event.Batch) bool) bool {
	return m.j.push(b, yield)
}

// Tick yields the events of files idle for the flush timeout; call it on
// batches that are not pushed (the tailer's idle ticks included).
func (m *Joining) Tick(yield func(*event.Batch) bool) bool {
	return m.j.flush(m.j.now().UnixNano(), false, yield)
}

// Close yields every open event (the end of the input).
func (m *Joining) Close(yield func(*event.Batch) bool) bool {
	return m.j.flush(0, true, yield)
}

// Open reports whether an event is waiting for more lines.
func (m *Joining) Open() bool { return len(m.j.open) > 0 }

// multilineJoiner checks o and returns a maker of joiners (one per run).
func multilineJoiner(o MultilineOptions, now func() time.Time) (func() *joiner, error) {
	if err := o.Validate(); err != nil {
		return nil, optionsError("multiline", err)
	}
	if now == nil {
		now = time.Now
	}
	sep := "\n"
	if o.Separator != nil {
		sep = *o.Separator
	}
	var decide func(line string) (decision, bool)
	switch {
	case o.Start != "":
		re := regexp.MustCompile(o.Start)
		decide = func(line string) (decision, bool) {
			if re.MatchString(line) {
				return joinBegin, false
			}
			return joinAdd, false
		}
	case o.End != "":
		re := regexp.MustCompile(o.End)
		decide = func(line string) (decision, bool) { return joinAdd, re.MatchString(line) }
	case o.Indent:
		decide = func(line string) (decision, bool) {
			if line != "" && (line[0] == ' ' || line[0] == '\t') {
				return joinAdd, false
			}
			return joinBegin, false
		}
	default:
		p := o.Continue
		if o.Preset != "" {
			p = multilinePresets[o.Preset]
		}
		re := regexp.MustCompile(p)
		decide = func(line string) (decision, bool) {
			if re.MatchString(line) {
				return joinAdd, false
			}
			return joinBegin, false
		}
	}
	return func() *joiner {
		return &joiner{
			decide: func(_ *event.Batch, r *event.Record) (decision, bool, uint8) {
				if r.Body.Kind != event.KindString {
					return joinSingle, false, 0
				}
				d, last := decide(r.Body.Str)
				return d, last, streamOf(r)
			},
			sep:      sep,
			maxLines: o.MaxLines,
			maxBytes: int(o.MaxBytes),
			timeout:  o.FlushTimeout,
			now:      now,
		}
	}, nil
}

// streamOf keys joining by the container stream, so that a stderr stack
// trace is not glued to a stdout line written between its lines.
func streamOf(r *event.Record) uint8 {
	if v, ok := event.Lookup(r.Attrs, AttrIOStream); ok && v.Str == "stderr" {
		return 1
	}
	return 0
}

// IsMultilinePreset reports whether name is a preset of the multiline
// processor (java, python, go, ruby, dotnet, nodejs, php).
func IsMultilinePreset(name string) bool {
	_, ok := multilinePresets[name]
	return ok
}
