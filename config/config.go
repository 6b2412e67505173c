// Package config reads logpump's YAML configuration strictly: an unknown key,
// a value of the wrong type or a missing required value is an [Error] that
// names the key path and its line. Components (sources, processors,
// exporters) keep their options in their own packages; this package holds the
// top level and the decoder they share ([Decode], [At]).
package config

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is a whole configuration file.
type Config struct {
	// StateDir holds the checkpoint file.
	StateDir string `yaml:"state_dir"`
	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// LogLevel of the agent's own log: debug, info, warn, error.
	LogLevel string `yaml:"log_level"`
	// Resource attributes added to every source's resource (service.name, ...).
	Resource map[string]string `yaml:"resource"`
	// Checkpoints tunes the checkpoint tracker.
	Checkpoints Checkpoints `yaml:"checkpoints"`
	// Admin is the HTTP server for health, metrics and debugging.
	Admin Admin `yaml:"admin"`

	Sources    map[string]Component `yaml:"sources"`
	Processors map[string]Component `yaml:"processors"`
	Exporters  map[string]Component `yaml:"exporters"`
	Pipelines  map[string]Pipeline  `yaml:"pipelines"`

	// File is the path the configuration was read from.
	File string `yaml:"-"`
	// Root is the parsed document, for locating keys in errors.
	Root *yaml.Node `yaml:"-"`
}

// Checkpoints tunes when offsets are written and how much may be unacknowledged.
type Checkpoints struct {
	// FlushInterval between writes of the checkpoint file.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxInFlight caps the bytes read but not yet acknowledged; reading pauses at the cap.
	MaxInFlight ByteSize `yaml:"max_in_flight"`
	// Retention drops the checkpoint of a file not seen for this long.
	Retention time.Duration `yaml:"retention"`
}

// Admin configures the admin HTTP server; an empty Address disables it.
type Admin struct {
	Address string `yaml:"address"`
	Pprof   bool   `yaml:"pprof"`
	// TokenFile holds a bearer token every admin endpoint except /healthz
	// and /readyz then asks for.
	TokenFile string `yaml:"token_file"`
	// MetricsPush, when its endpoint is set, also pushes the agent's own
	// metrics to an OTLP/gRPC receiver.
	MetricsPush MetricsPush `yaml:"metrics_push"`
}

// MetricsPush configures the OTLP push of the agent's own metrics.
type MetricsPush struct {
	Endpoint string            `yaml:"endpoint"`
	Insecure bool              `yaml:"insecure"`
	Headers  map[string]string `yaml:"headers"`
	Interval time.Duration     `yaml:"interval"`
}

// Token reads the bearer token of TokenFile ("" when none is configured):
// the file's content without surrounding white space, which must not be
// empty.
func (a Admin) Token() (string, error) {
	if a.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", a.TokenFile)
	}
	return tok, nil
}

// Component is a named source, processor or exporter: its type and the raw
// YAML of its options, decoded by the component's own package with [Decode].
type Component struct {
	Type string
	// Node is the component's mapping, including the type key.
	Node *yaml.Node
	// Key is the component's path, e.g. "sources.app".
	Key string
}

// UnmarshalYAML keeps the node and reads the type.
func (c *Component) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want a mapping with a type, got %s", describe(n))
	}
	c.Node = n
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			c.Type = n.Content[i+1].Value
		}
	}
	if c.Type == "" {
		return Fieldf("type", "missing required key")
	}
	return nil
}

// Options decodes the component's options into out, ignoring the type key.
func (c Component) Options(out any) error {
	stripped := *c.Node
	stripped.Content = nil
	for i := 0; i+1 < len(c.Node.Content); i += 2 {
		if c.Node.Content[i].Value != "type" {
			stripped.Content = append(stripped.Content, c.Node.Content[i], c.Node.Content[i+1])
		}
	}
	return Decode(&stripped, c.Key, out)
}

// Pipeline wires sources through processors to exporters.
type Pipeline struct {
	Sources    []string `yaml:"sources"`
	Processors []string `yaml:"processors"`
	// Exporters receive every event of the pipeline (fan-out), unless Routes is set.
	Exporters []string `yaml:"exporters"`
	// Routes send events to exporters by condition; the first match wins
	// unless a route says continue.
	Routes []Route `yaml:"routes"`
}

// Route is one conditional destination of a pipeline.
type Route struct {
	// When is a condition (expression language of the filter processor); empty matches all.
	When      string   `yaml:"when"`
	Exporters []string `yaml:"exporters"`
	// Continue also tries the following routes after a match.
	Continue bool `yaml:"continue"`
}

// MinMaxInFlight is the smallest checkpoints.max_in_flight: one batch of a
// file must fit.
const MinMaxInFlight ByteSize = 64 << 10

// Defaults returns a configuration holding every default value.
func Defaults() Config {
	return Config{
		StateDir:        "/var/lib/logpump",
		ShutdownTimeout: 10 * time.Second,
		LogLevel:        "info",
		Checkpoints: Checkpoints{
			FlushInterval: time.Second,
			MaxInFlight:   16 << 20,
			Retention:     72 * time.Hour,
		},
	}
}

// Load reads, expands and decodes the file at path. Environment variables
// are expanded with getenv (os.Getenv when nil) in scalar values after
// parsing (see [ExpandNode]). The returned error is an
// [Errors] listing every problem found.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path, getenv)
}

// Parse decodes a configuration held in data; file names it in errors.
func Parse(data []byte, file string, getenv func(string) string) (*Config, error) {
	cfg, errs := ParsePartial(data, file, getenv)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// LoadPartial is [Load] for validate: it returns what could be decoded
// even when there are errors (nil only when the file cannot be read or
// parsed as YAML), so that the components' own checks can add theirs.
func LoadPartial(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, errs := ParsePartial(data, path, getenv)
	return cfg, errs.Err()
}

// ParsePartial is [Parse] returning the configuration decoded so far with
// the errors; the configuration is nil when data is not YAML. Components
// that could not be decoded are left out of it.
func ParsePartial(data []byte, file string, getenv func(string) string) (*Config, Errors) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs Errors
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		errs = append(errs, hintFlowReference(syntaxError(err), data))
		return nil, locate(errs, file)
	}
	cfg := Defaults()
	cfg.File, cfg.Root = file, &root
	if root.Kind == 0 {
		errs = append(errs, &Error{Msg: "empty configuration"})
		return nil, locate(errs, file)
	}
	if n := expandedSize(&root, map[*yaml.Node]int{}); n > maxExpandedNodes {
		errs = append(errs, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("aliases expand the document to more than %d values", maxExpandedNodes)})
		return nil, locate(errs, file)
	}
	expErrs := ExpandNode(&root, getenv)
	errs = append(errs, expErrs...)
	if err := Decode(&root, "", &cfg); err != nil {
		errs = append(errs, err.(Errors)...)
	}
	errs = append(errs, cfg.check()...)
	errs = dropShadowed(errs, expErrs)
	for _, m := range []map[string]Component{cfg.Sources, cfg.Processors, cfg.Exporters} {
		maps.DeleteFunc(m, func(_ string, c Component) bool { return c.Node == nil })
	}
	if len(errs) > 0 {
		return &cfg, locate(errs, file)
	}
	return &cfg, nil
}

// check validates what the top level can: references between sections.
func (c *Config) check() Errors {
	var errs Errors
	at := func(key, format string, args ...any) {
		errs = append(errs, newError(Find(c.Root, key), key, fmt.Sprintf(format, args...)))
	}
	for _, sec := range []struct {
		name string
		m    map[string]Component
	}{{"sources", c.Sources}, {"processors", c.Processors}, {"exporters", c.Exporters}} {
		for name, comp := range sec.m {
			comp.Key = sec.name + "." + name
			sec.m[name] = comp
		}
	}
	if c.ShutdownTimeout <= 0 {
		at("shutdown_timeout", "must be positive")
	}
	if c.StateDir == "" {
		at("state_dir", "must not be empty")
	}
	if c.Checkpoints.MaxInFlight < MinMaxInFlight {
		at("checkpoints.max_in_flight", "must be at least %v (reading pauses at the cap); got %v", MinMaxInFlight, c.Checkpoints.MaxInFlight)
	}
	if c.Checkpoints.Retention < time.Minute {
		at("checkpoints.retention", "must be at least 1m; got %v", c.Checkpoints.Retention)
	}
	if c.Checkpoints.FlushInterval < 10*time.Millisecond {
		at("checkpoints.flush_interval", "must be at least 10ms; got %v", c.Checkpoints.FlushInterval)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		at("log_level", "must be one of debug, info, warn, error; got %q", c.LogLevel)
	}
	if _, err := c.Admin.Token(); err != nil {
		at("admin.token_file", "%v", err)
	}
	if len(c.Pipelines) == 0 {
		at("pipelines", "at least one pipeline is required")
	}
	usedBy := map[string]string{}
	for _, name := range sortedKeys(c.Pipelines) {
		p := c.Pipelines[name]
		key := "pipelines." + name
		if len(p.Sources) == 0 {
			at(key, "sources: at least one source is required")
		}
		if len(p.Exporters) == 0 && len(p.Routes) == 0 {
			at(key, "exporters: at least one exporter (or routes) is required")
		}
		if len(p.Exporters) > 0 && len(p.Routes) > 0 {
			at(key+".routes", "give either exporters or routes, not both")
		}
		for i, s := range p.Sources {
			k := fmt.Sprintf("%s.sources.%d", key, i)
			if _, ok := c.Sources[s]; !ok {
				at(k, "unknown source %q%s", s, suggest(s, sortedKeys(c.Sources)))
			} else if other, dup := usedBy[s]; dup {
				at(k, "source %q is already used by pipeline %q; a source feeds one pipeline", s, other)
			} else {
				usedBy[s] = name
			}
		}
		for i, s := range p.Processors {
			if _, ok := c.Processors[s]; !ok {
				at(fmt.Sprintf("%s.processors.%d", key, i), "unknown processor %q%s", s, suggest(s, sortedKeys(c.Processors)))
			}
		}
		check := func(k string, list []string) {
			if len(list) == 0 {
				at(k, "at least one exporter is required")
			}
			for i, s := range list {
				if _, ok := c.Exporters[s]; !ok {
					at(fmt.Sprintf("%s.%d", k, i), "unknown exporter %q%s", s, suggest(s, sortedKeys(c.Exporters)))
				}
			}
		}
		if len(p.Exporters) > 0 {
			check(key+".exporters", p.Exporters)
		}
		for i, r := range p.Routes {
			check(fmt.Sprintf("%s.routes.%d.exporters", key, i), r.Exporters)
		}
	}
	return errs
}

// maxExpandedNodes bounds the values a document holds once its aliases are
// expanded: a few lines of nested aliases can otherwise stand for billions.
const maxExpandedNodes = 1_000_000

// expandedSize counts the nodes of n with every alias expanded, memoized per
// node: linear in the nodes of the document, saturating past the bound.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	if n == nil {
		return 0
	}
	if v, ok := memo[n]; ok {
		return v
	}
	memo[n] = maxExpandedNodes + 1 // an alias cycle counts as too many
	size := 1
	if n.Kind == yaml.AliasNode {
		size += expandedSize(n.Alias, memo)
	}
	for _, c := range n.Content {
		size = min(size+expandedSize(c, memo), maxExpandedNodes+1)
	}
	memo[n] = size
	return size
}

// dropShadowed removes from errs those at the position of an expansion
// error other than the expansion error itself: a value that could not be
// expanded is reported once, not also as a value of the wrong kind.
func dropShadowed(errs, expErrs Errors) Errors {
	if len(expErrs) == 0 {
		return errs
	}
	type pos struct{ line, col int }
	bad := make(map[pos]bool, len(expErrs))
	for _, e := range expErrs {
		bad[pos{e.Line, e.Column}] = true
	}
	out := errs[:0]
	for _, e := range errs {
		if !bad[pos{e.Line, e.Column}] || slices.Contains(expErrs, e) {
			out = append(out, e)
		}
	}
	return out
}

// locate stamps the file name on every error and sorts them by position.
func locate(errs Errors, file string) Errors {
	for _, e := range errs {
		e.File = file
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	return errs
}

func syntaxError(err error) *Error {
	// yaml.v3 says "yaml: line 3: mapping values are not allowed in this context".
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{Msg: "invalid YAML: " + msg}
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		_, rest, _ := strings.Cut(msg, ": ")
		// yaml.v3 reports parser errors at the 0-based line of the construct
		// they happened in (scanner errors are 1-based): shift those.
		for _, p := range parserProblems {
			if strings.HasPrefix(rest, p) {
				line++
				break
			}
		}
		e.Line, e.Column = line, 1
		e.Msg = "invalid YAML: " + rest
	}
	return e
}

// hintFlowReference adds a hint to a syntax error on a line where a ${...}
// reference sits inside a flow collection ([...] or {...}), where YAML
// does not allow braces in an unquoted value.
func hintFlowReference(e *Error, data []byte) *Error {
	if e.Line < 1 {
		return e
	}
	lines := strings.SplitN(string(data), "\n", e.Line+1)
	if len(lines) < e.Line {
		return e
	}
	line := lines[e.Line-1]
	if i := strings.Index(line, "${"); i > 0 && strings.ContainsAny(line[:i], "[{,") && !strings.ContainsAny(line[:i], `"'`) {
		e.Msg += ` (quote a value holding ${...} inside [...] or {...}, e.g. ["${DIR}/*.log"])`
	}
	return e
}

// parserProblems start the messages of yaml.v3's parser (not scanner) errors.
var parserProblems = []string{
	"did not find expected node content", "did not find expected key",
	"did not find expected '-' indicator", "did not find expected ',' or",
	"did not find expected <document start>",
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
