// Package stages builds processing stages from configuration. It is the one
// place that maps a processor type to its constructor: a switch, no registry.
package stages

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/enrich"
	"github.com/logpump/logpump/filter"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/parse"
	"github.com/logpump/logpump/transform"
)

// Env is what stages may need from the agent.
type Env struct {
	// Log receives the stages' own messages; slog.Default when nil.
	Log *slog.Logger
	// Now is the clock for flush timeouts, rate limits and years missing
	// from timestamps; time.Now when nil.
	Now func() time.Time
	// Hostname and NodeName (the Kubernetes node, from the downward API)
	// feed the enrich processors.
	Hostname string
	NodeName string
	// Dropped counts records a processor removed, by processor name and
	// reason ("parse_error", "filter", "sample", "rate_limit"). It is called
	// from the goroutine running the pipeline; nil discards the counts.
	Dropped func(processor, reason string, n int)
	// Errored counts records a processor kept unchanged because it failed
	// on them (reason "filter_error": a condition that could not be
	// evaluated), by processor name and reason. Same goroutine as Dropped;
	// nil discards the counts.
	Errored func(processor, reason string, n int)
	// MaxInFlight is checkpoints.max_in_flight: an event joined from
	// several lines (multiline, container max_bytes) may not be larger.
	// 0: no bound.
	MaxInFlight config.ByteSize
	// Kube is the agent's shared Kubernetes API watches; nil gives each
	// kubernetes processor watches of its own.
	Kube *Kube
	// Processors are the configuration's processors, by name: a
	// logpump.io/parser annotation may name one of its parsers.
	Processors map[string]config.Component
}

func (e Env) withDefaults() Env {
	if e.Log == nil {
		e.Log = slog.Default()
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	return e
}

// validator is implemented by every options struct.
type validator interface{ Validate() error }

// types is the list Types returns; keep it in the order of the switch.
var types = []string{
	"json", "logfmt", "key_value", "csv", "klog", "regex", "cri", "docker", "container", "syslog", "multiline",
	"filter", "sample", "rate_limit",
	"static", "host", "kubernetes",
	"transform", "redact",
}

// Types lists the processor types Build knows.
func Types() []string { return append([]string(nil), types...) }

// Build decodes c's options strictly and returns the stage. Errors are
// config.Errors located at the offending key. It does no I/O, except loading
// a named time zone from the system's zone database.
func Build(c config.Component, env Env) (pipe.Stage, error) {
	env = env.withDefaults()
	name := strings.TrimPrefix(c.Key, "processors.")
	drops := func(reason string, n int) {
		if env.Dropped != nil {
			env.Dropped(name, reason, n)
		}
	}
	// errored counts records the processor failed on and passed on unchanged.
	errored := func(reason string, n int) {
		if env.Errored != nil {
			env.Errored(name, reason, n)
		}
	}
	// decode reads c's options into o and validates them.
	// Values that decoded are validated even when others did not, so that
	// every error is listed at once.
	decode := func(o validator) error {
		err := c.Options(o)
		var errs config.Errors
		if err != nil {
			errs = err.(config.Errors)
		}
		return append(errs, config.At(c.Node, c.Key, o.Validate())...).Err()
	}
	// withinInFlight refuses an event size the checkpoint cap cannot hold.
	withinInFlight := func(err error, maxBytes config.ByteSize) error {
		if env.MaxInFlight > 0 && maxBytes > env.MaxInFlight {
			more := config.At(c.Node, c.Key, config.Fieldf("max_bytes",
				"must not exceed checkpoints.max_in_flight (%v); got %v", env.MaxInFlight, maxBytes))
			if err != nil {
				return append(err.(config.Errors), more...)
			}
			return more
		}
		return err
	}
	var (
		stage pipe.Stage
		err   error
	)
	switch c.Type {
	case "json":
		var o parse.JSONOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.JSON(o, env.Now, drops)
	case "logfmt":
		var o parse.LogfmtOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.Logfmt(o, env.Now, drops)
	case "key_value":
		var o parse.KeyValueOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.KeyValue(o, env.Now, drops)
	case "csv":
		var o parse.CSVOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.CSV(o, env.Now, drops)
	case "klog":
		var o parse.KlogOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.Klog(o, env.Now, drops)
	case "regex":
		var o parse.RegexOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.Regex(o, env.Now, drops)
	case "cri", "docker", "container":
		var o parse.ContainerOptions
		err := decode(&o) // fills defaults first
		if err := withinInFlight(err, o.MaxBytes); err != nil {
			return nil, err
		}
		switch c.Type {
		case "cri":
			stage, err = parse.CRI(o, env.Now, drops)
		case "docker":
			stage, err = parse.Docker(o, env.Now, drops)
		default:
			stage, err = parse.Container(o, env.Now, drops)
		}
	case "syslog":
		var o parse.SyslogOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = parse.Syslog(o, env.Now, drops)
	case "multiline":
		var o parse.MultilineOptions
		err := decode(&o) // fills defaults first
		if err := withinInFlight(err, o.MaxBytes); err != nil {
			return nil, err
		}
		stage, err = parse.Multiline(o, env.Now)
	case "filter":
		var o filter.MatchOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = filter.Match(o, env.Log, env.Now, drops, errored)
	case "sample":
		var o filter.SampleOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = filter.Sample(o, drops)
	case "rate_limit":
		var o filter.RateLimitOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = filter.RateLimit(o, env.Now, drops)
	case "static":
		var o enrich.StaticOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = enrich.Static(o)
	case "host":
		var o enrich.HostOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = enrich.Host(o, env.Hostname)
	case "kubernetes":
		var o enrich.KubernetesOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		if o.Metadata == nil {
			stage, err = enrich.Kubernetes(o, env.NodeName)
			break
		}
		node := o.NodeName
		if node == "" {
			node = env.NodeName
		}
		watch, werr := podMetadata(o.Metadata, node, env)
		if werr != nil {
			return nil, config.At(c.Node, c.Key, werr).Err()
		}
		stage, err = enrich.KubernetesMetadata(o, env.NodeName, enrich.MetadataEnv{
			Watch: watch, Log: env.Log.With("processor", name), Dropped: drops, Errored: errored,
			Parser:    func(p string) (*parse.Parser, error) { return annotationParser(p, env, drops) },
			Multiline: func(v string) (*parse.Joining, error) { return annotationJoining(v, env) },
		})
	case "transform":
		var o transform.Options
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = transform.Transform(o, transform.Env{Now: env.Now, Log: env.Log.With("processor", name), Failed: errored})
	case "redact":
		var o transform.RedactOptions
		if err := decode(&o); err != nil {
			return nil, err
		}
		stage, err = transform.Redact(o)
	default:
		return nil, config.At(c.Node, c.Key, config.Fieldf("type", "unknown processor type %q (known: %s)", c.Type, strings.Join(types, ", "))).Err()
	}
	if err != nil {
		// Validate accepted the options, so this is a constructor's own
		// check; still locate it at the processor.
		return nil, config.At(c.Node, c.Key, err).Err()
	}
	return stage, nil
}

// annotationParser returns the parser a logpump.io/parser annotation names:
// json, logfmt, a regex preset, or a parser processor of the configuration
// (json, logfmt, key_value, csv, klog, regex, syslog) by name.
func annotationParser(name string, env Env, drops parse.DropFunc) (*parse.Parser, error) {
	switch name {
	case "json":
		return parse.NewJSONParser(parse.JSONOptions{}, env.Now, drops)
	case "logfmt":
		return parse.NewLogfmtParser(parse.LogfmtOptions{}, env.Now, drops)
	}
	if slices.Contains(parse.RegexPresets(), name) {
		return parse.NewRegexParser(parse.RegexOptions{Preset: name}, env.Now, drops)
	}
	c, ok := env.Processors[name]
	if !ok {
		var named []string
		for n, c := range env.Processors {
			if parserTypes[c.Type] != nil {
				named = append(named, n)
			}
		}
		slices.Sort(named)
		known := "json, logfmt, none, " + strings.Join(parse.RegexPresets(), ", ")
		if len(named) > 0 {
			known += "; parser processors: " + strings.Join(named, ", ")
		}
		return nil, fmt.Errorf("unknown parser %q (known: %s)", name, known)
	}
	mk, ok := parserTypes[c.Type]
	if !ok {
		return nil, fmt.Errorf("processor %q is a %s processor, not a parser", name, c.Type)
	}
	p, err := mk(c, env, drops)
	if err != nil {
		return nil, fmt.Errorf("parser processor %q: %w", name, err)
	}
	return p, nil
}

// namedParser decodes c's options and makes the parser with mk.
func namedParser[T any, PT interface {
	*T
	validator
}](mk func(T, func() time.Time, parse.DropFunc) (*parse.Parser, error)) func(config.Component, Env, parse.DropFunc) (*parse.Parser, error) {
	return func(c config.Component, env Env, drops parse.DropFunc) (*parse.Parser, error) {
		var o T
		if err := c.Options(PT(&o)); err != nil {
			return nil, err
		}
		if err := PT(&o).Validate(); err != nil {
			return nil, err
		}
		return mk(o, env.Now, drops)
	}
}

// parserTypes are the processor types a logpump.io/parser annotation may name.
var parserTypes = map[string]func(config.Component, Env, parse.DropFunc) (*parse.Parser, error){
	"json":      namedParser(parse.NewJSONParser),
	"logfmt":    namedParser(parse.NewLogfmtParser),
	"key_value": namedParser(parse.NewKeyValueParser),
	"csv":       namedParser(parse.NewCSVParser),
	"klog":      namedParser(parse.NewKlogParser),
	"regex":     namedParser(parse.NewRegexParser),
	"syslog":    namedParser(parse.NewSyslogParser),
}

// annotationJoining returns the joiner of a logpump.io/multiline annotation:
// a multiline preset, else a start pattern; the multiline processor's
// defaults, max_bytes within checkpoints.max_in_flight.
func annotationJoining(value string, env Env) (*parse.Joining, error) {
	var o parse.MultilineOptions
	if parse.IsMultilinePreset(value) {
		o.Preset = value
	} else {
		if _, err := regexp.Compile(value); err != nil {
			return nil, fmt.Errorf("not a multiline preset (dotnet, go, java, nodejs, php, python, ruby) nor a start pattern: %w", err)
		}
		o.Start = value
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if env.MaxInFlight > 0 && o.MaxBytes > env.MaxInFlight {
		o.MaxBytes = env.MaxInFlight
	}
	return parse.NewJoining(o, env.Now)
}
