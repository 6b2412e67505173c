// Package agent builds logpump's pipeline graph from a configuration and runs
// it: sources (tailers) feed one driver goroutine each, which pulls batches
// through the pipeline's stages, routes them and hands them to the exporters'
// queues; acknowledgements flow back to the checkpoint tracker.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
	"github.com/logpump/logpump/export/console"
	"github.com/logpump/logpump/export/otlp"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/selfmetrics"
	"github.com/logpump/logpump/internal/stages"
	"github.com/logpump/logpump/internal/tap"
	"github.com/logpump/logpump/journald"
	"github.com/logpump/logpump/route"
	"github.com/logpump/logpump/tailer"
)

// Env is what the agent takes from its process: environment, output streams,
// logger, host name and clock. Zero fields take the process's own.
type Env struct {
	Getenv   func(string) string
	Stdout   io.Writer
	Log      *slog.Logger
	Hostname string
	Now      func() time.Time
	// Ready, when set, is called once the pipeline runs (systemd READY=1).
	Ready func()
	// Settled, when set, is called once, from an exporter's goroutine, when
	// every exporter of the configuration the agent was built with has had
	// an answer to a request (accepted, partly or not at all): start-up,
	// connecting included, is over. It is never called if one of them never
	// gets an answer, or a reload retires it first.
	Settled func()
	// Metrics records the agent's own metrics; nil records nothing.
	Metrics *selfmetrics.Metrics
	// Taps, when set, gets a tap point after every source and processor.
	Taps *tap.Registry
}

func (e *Env) defaults() {
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Stdout == nil {
		e.Stdout = os.Stdout
	}
	if e.Log == nil {
		e.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if e.Hostname == "" {
		e.Hostname, _ = os.Hostname()
	}
	if e.Now == nil {
		e.Now = time.Now
	}
}

// Agent is a built pipeline graph. Build it with [Build], run it with [Agent.Run].
type Agent struct {
	env     Env
	log     *slog.Logger
	tracker *checkpoint.Tracker
	drops   *drops
	// kube is the Kubernetes API watches every kubernetes processor
	// shares; kept across reloads.
	kube *stages.Kube

	reloadMu sync.Mutex // serialises Reload
	// pendingMu guards supersede: told which exporters a newer reload
	// changes, it cuts short the waits of the reload under way that depend
	// on one of them.
	pendingMu sync.Mutex
	supersede func(changes map[string]bool)

	mu  sync.Mutex // guards what follows, which Reload replaces
	cfg *config.Config
	// exporters in a stable order for start and shutdown.
	exporters []*exporter
	lanes     []*lane
	// runCtx and hard are Run's contexts: lanes read until runCtx ends and
	// hand batches over until hard ends.
	runCtx, hard context.Context
}

type exporter struct {
	name   string
	typ    string
	client export.Client
	queue  *export.Queue
	// fingerprint is the canonical text of the exporter's configuration: a
	// reload keeps an exporter whose fingerprint did not change.
	fingerprint string
}

// source is what a lane reads: a tailer or a journal.
type source interface {
	Batches(ctx context.Context) iter.Seq[*event.Batch]
	OnIdle(func())
}

// lane is one source flowing through its pipeline: one goroutine drives it.
type lane struct {
	source   string
	pipeline string
	src      source
	// tailer or journal is src, by the source's type.
	tailer  *tailer.Tailer
	journal *journald.Source
	chain   pipe.Stage
	routes  *route.Table
	queues  map[string]*export.Queue
	// fingerprint covers the source, the pipeline's processors and routes
	// and its exporters: a reload keeps a lane whose fingerprint did not change.
	fingerprint string

	// stages and taps name the lane's steps and tap points, for /debug/pipeline.
	stages, taps []string

	// Set while the lane runs. cancel stops reading; abandon stops handing
	// what was read to the queues (a reload gives up on a queue that does
	// not take it), after which left is set if a batch was not handed over.
	cancel, abandon context.CancelFunc
	done            chan struct{}
	left            atomic.Bool
	// started is closed once the lane's stages have begun (each has run
	// what it does before its first batch: a kubernetes processor has taken
	// its watches), or the lane ended first.
	started     chan struct{}
	startedOnce sync.Once
}

// markStarted closes ln.started once.
func (ln *lane) markStarted() { ln.startedOnce.Do(func() { close(ln.started) }) }

// sourceOptions are a file source's keys: the tailer's plus the source's
// own resource attributes.
type sourceOptions struct {
	tailer.Options `yaml:",inline"`
	// Resource attributes of this source, over the global ones.
	Resource map[string]string `yaml:"resource"`
}

// journalOptions are a journald source's keys and its resource attributes.
type journalOptions struct {
	journald.Options `yaml:",inline"`
	Resource         map[string]string `yaml:"resource"`
}

// Build checks the whole configuration and builds the graph without I/O:
// no file is opened and no connection made. The error is a config.Errors
// listing every problem, located in the configuration file.
func Build(cfg *config.Config, env Env) (*Agent, error) {
	env.defaults()
	tracker := checkpoint.NewTracker(checkpoint.NewStore(cfg.StateDir), env.Log, checkpoint.Options{
		MaxInFlightBytes: int64(cfg.Checkpoints.MaxInFlight),
		Retention:        cfg.Checkpoints.Retention,
		FlushInterval:    cfg.Checkpoints.FlushInterval,
		Now:              env.Now,
	})
	a, err := build(cfg, env, tracker, &drops{m: env.Metrics}, stages.NewKube(env.Log))
	if err != nil {
		return nil, err
	}
	env.Metrics.Observe(a.observe)
	if env.Settled != nil && len(a.exporters) > 0 {
		s := &settling{done: env.Settled}
		s.pending.Store(int64(len(a.exporters)))
		for _, ex := range a.exporters {
			ex.queue.SetObserver(&firstAnswer{next: a.exporterObserver(ex.name), s: s})
		}
	}
	return a, nil
}

// build builds the graph around an existing tracker, drop counters and
// Kubernetes watches (a reload keeps them).
func build(cfg *config.Config, env Env, tracker *checkpoint.Tracker, d *drops, kube *stages.Kube) (*Agent, error) {
	a := &Agent{cfg: cfg, env: env, log: env.Log, tracker: tracker, drops: d, kube: kube}
	var errs config.Errors
	add := func(c config.Component, err error) {
		if err != nil {
			errs = append(errs, config.At(c.Node, c.Key, err)...)
		}
	}

	queues := map[string]*export.Queue{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Exporters)) {
		c := cfg.Exporters[name]
		ex, err := a.buildExporter(name, c)
		if err != nil {
			add(c, err)
			continue
		}
		a.exporters = append(a.exporters, ex)
		queues[name] = ex.queue
	}

	// Every processor is checked once, even when no pipeline uses it.
	for _, name := range slices.Sorted(maps.Keys(cfg.Processors)) {
		c := cfg.Processors[name]
		if _, err := stages.Build(c, a.stageEnv()); err != nil {
			add(c, err)
		}
	}

	globalRes := a.globalResource()
	for _, pname := range slices.Sorted(maps.Keys(cfg.Pipelines)) {
		p := cfg.Pipelines[pname]
		rules := []route.Rule{{Exporters: p.Exporters}}
		if len(p.Routes) > 0 {
			rules = rules[:0]
			for _, r := range p.Routes {
				rules = append(rules, route.Rule{When: r.When, Exporters: r.Exporters, Continue: r.Continue})
			}
		}
		// A table is used by one goroutine: each lane gets its own.
		if _, err := route.New(rules); err != nil {
			errs = append(errs, config.At(config.Find(cfg.Root, "pipelines."+pname), "pipelines."+pname+".routes", err)...)
			continue
		}
		for _, sname := range p.Sources {
			sc, ok := cfg.Sources[sname]
			if !ok {
				continue // reported by config
			}
			ln, err := a.buildLane(sname, sc, pname, p, globalRes)
			if err != nil {
				add(sc, err)
				continue
			}
			ln.routes, _ = route.New(rules)
			ln.queues = queues
			ln.fingerprint = laneFingerprint(cfg, sname, p)
			a.lanes = append(a.lanes, ln)
		}
	}
	for _, sname := range slices.Sorted(maps.Keys(cfg.Sources)) {
		if !usedSource(cfg, sname) {
			env.Log.Warn("source is in no pipeline; it will not be read", "source", sname)
		}
	}
	if len(errs) > 0 {
		for _, ex := range a.exporters {
			ex.client.Close() // built but never started: release its connection
		}
		for _, e := range errs {
			e.File = cfg.File
		}
		slices.SortStableFunc(errs, func(x, y *config.Error) int {
			if x.Line != y.Line {
				return x.Line - y.Line
			}
			return x.Column - y.Column
		})
		return nil, errs
	}
	return a, nil
}

func usedSource(cfg *config.Config, name string) bool {
	for _, p := range cfg.Pipelines {
		if slices.Contains(p.Sources, name) {
			return true
		}
	}
	return false
}

func (a *Agent) stageEnv() stages.Env {
	return stages.Env{
		Log: a.log, Now: a.env.Now, Hostname: a.env.Hostname, NodeName: a.env.Getenv("K8S_NODE_NAME"),
		Dropped: a.drops.add, Errored: a.drops.addError, MaxInFlight: a.cfg.Checkpoints.MaxInFlight,
		Kube: a.kube, Processors: a.cfg.Processors,
	}
}

func (a *Agent) buildLane(name string, c config.Component, pname string, p config.Pipeline, global []event.KeyValue) (*lane, error) {
	ln := &lane{source: name, pipeline: pname, stages: []string{"source/" + name}}
	var disableTicks func()
	switch c.Type {
	case "file":
		opts := sourceOptions{Options: tailer.DefaultOptions()}
		if err := decode(c, &opts, func() error { return opts.Options.Validate() }); err != nil {
			return nil, err
		}
		res := &event.Resource{Attrs: mergeResource(global, opts.Resource, name)}
		t, err := tailer.New(name, opts.Options, a.tracker, res, a.log.With("source", name))
		if err != nil {
			return nil, err
		}
		ln.src, ln.tailer, disableTicks = t, t, t.DisableTicks
	case "journald":
		opts := journalOptions{Options: journald.DefaultOptions()}
		if err := decode(c, &opts, func() error { return opts.Options.Validate() }); err != nil {
			return nil, err
		}
		res := &event.Resource{Attrs: mergeResource(global, opts.Resource, name)}
		j, err := journald.New(name, opts.Options, a.tracker, res, a.log.With("source", name))
		if err != nil {
			return nil, err
		}
		ln.src, ln.journal, disableTicks = j, j, j.DisableTicks
	default:
		return nil, config.Fieldf("type", "unknown source type %q (known: file, journald)", c.Type)
	}
	chain := []pipe.Stage{countRead(a.env.Metrics.Source(name))}
	tapAfter := func(kind, name string) {
		if a.env.Taps != nil {
			chain = append(chain, a.env.Taps.Point(tapName(kind, name)))
			ln.taps = append(ln.taps, tapName(kind, name))
		}
	}
	tapAfter("source", name)
	for _, proc := range p.Processors {
		pc, ok := a.cfg.Processors[proc]
		if !ok {
			continue // reported by config
		}
		st, err := stages.Build(pc, a.stageEnv())
		if err != nil {
			continue // reported once above
		}
		chain = append(chain, st)
		ln.stages = append(ln.stages, "processor/"+proc)
		tapAfter("processor", proc)
	}
	if len(p.Processors) == 0 {
		disableTicks() // ticks are for processors holding an open event
	}
	ln.chain = pipe.Chain(chain...)
	return ln, nil
}

// globalResource is host.name, then OTEL_RESOURCE_ATTRIBUTES, then the
// configuration's resource map; later ones win.
func (a *Agent) globalResource() []event.KeyValue {
	var kvs []event.KeyValue
	if a.env.Hostname != "" {
		kvs = event.Set(kvs, "host.name", event.String(a.env.Hostname))
	}
	for _, pair := range strings.Split(a.env.Getenv("OTEL_RESOURCE_ATTRIBUTES"), ",") {
		k, v, ok := strings.Cut(pair, "=")
		if ok && strings.TrimSpace(k) != "" {
			kvs = event.Set(kvs, strings.TrimSpace(k), event.String(strings.TrimSpace(v)))
		}
	}
	if svc := a.env.Getenv("OTEL_SERVICE_NAME"); svc != "" {
		kvs = event.Set(kvs, "service.name", event.String(svc))
	}
	return setAll(kvs, a.cfg.Resource)
}

// setAll sets every attribute of m in kvs (replacing one of the same key),
// in key order; linear in the keys of both, however many a configuration
// gives (event.Set on each would be quadratic).
func setAll(kvs []event.KeyValue, m map[string]string) []event.KeyValue {
	at := make(map[string]int, len(kvs)+len(m))
	for i, kv := range kvs {
		if _, dup := at[kv.Key]; !dup {
			at[kv.Key] = i
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if i, ok := at[k]; ok {
			kvs[i].Value = event.String(m[k])
			continue
		}
		at[k] = len(kvs)
		kvs = append(kvs, event.KeyValue{Key: k, Value: event.String(m[k])})
	}
	return kvs
}

// mergeResource adds a source's own attributes to the global ones; a source
// without service.name anywhere is named after itself.
func mergeResource(global []event.KeyValue, own map[string]string, source string) []event.KeyValue {
	kvs := setAll(slices.Clone(global), own)
	if _, ok := event.Lookup(kvs, "service.name"); !ok {
		kvs = event.Set(kvs, "service.name", event.String(source))
	}
	return kvs
}

func (a *Agent) buildExporter(name string, c config.Component) (*exporter, error) {
	log := a.log.With("exporter", name) // for the client; the queue names itself
	ex := &exporter{name: name, typ: c.Type, fingerprint: c.Type + canonical(c.Node)}
	switch c.Type {
	case "otlp_grpc", "otlp_http":
		opts := otlp.DefaultOptions()
		decodeErr := c.Options(&opts)
		protocol := "grpc"
		if c.Type == "otlp_http" {
			protocol = "http/protobuf"
		}
		resolved, err := otlp.Resolve(protocol, opts, a.env.Getenv)
		if err := errors.Join(decodeErr, err); err != nil {
			return nil, err
		}
		cl, err := otlp.New(resolved, log)
		if err != nil {
			return nil, err
		}
		ex.client = cl
		if o, ok := cl.(endpointObserved); ok && a.env.Metrics != nil {
			o.SetEndpointObserver(a.env.Metrics.Exporter(name).EndpointLatency)
		}
		ex.queue = export.NewQueue(name, ex.client, resolved.QueueOptions, a.log)
		ex.queue.SetObserver(a.exporterObserver(name))
	case "console":
		opts := console.DefaultOptions()
		if err := decode(c, &opts, func() error { return opts.Validate() }); err != nil {
			return nil, err
		}
		w := a.env.Stdout
		if opts.Output == "stderr" {
			w = os.Stderr
		}
		ex.client = console.New(w, opts)
		ex.queue = export.NewQueue(name, ex.client, opts.QueueOptions, a.log)
		ex.queue.SetObserver(a.exporterObserver(name))
	default:
		return nil, config.Fieldf("type", "unknown exporter type %q (known: otlp_grpc, otlp_http, console)", c.Type)
	}
	return ex, nil
}

// endpointObserved is a client of several endpoints that tells how long
// each attempt on one took (an OTLP client).
type endpointObserved interface {
	SetEndpointObserver(func(endpoint string, d time.Duration))
}

func (a *Agent) exporterObserver(name string) export.Observer {
	if a.env.Metrics == nil {
		return nil
	}
	return exporterObserver{a.env.Metrics.Exporter(name)}
}

// decode decodes a component's options and validates them (validate reads
// the decoded opts), reporting the problems of both steps together: a field
// that failed to decode keeps its default, so validation still speaks of the
// others.
func decode[T any](c config.Component, opts *T, validate func() error) error {
	err := c.Options(opts)
	return errors.Join(err, validate())
}

// laneFingerprint is the canonical text of everything a lane is built from.
func laneFingerprint(cfg *config.Config, source string, p config.Pipeline) string {
	var b strings.Builder
	b.WriteString("source:" + canonical(cfg.Sources[source].Node))
	for _, name := range p.Processors {
		b.WriteString("|proc:" + canonical(cfg.Processors[name].Node))
	}
	dest := func(names []string) {
		for _, name := range names {
			c := cfg.Exporters[name]
			b.WriteString("|exp:" + name + ":" + c.Type + canonical(c.Node))
		}
	}
	dest(p.Exporters)
	for _, r := range p.Routes {
		fmt.Fprintf(&b, "|route:%q:%v", r.When, r.Continue)
		dest(r.Exporters)
	}
	fmt.Fprintf(&b, "|resource:%v", cfg.Resource)
	return b.String()
}

// canonical renders a YAML node's content without comments or styles, so
// that only a change of meaning changes it.
func canonical(n *yaml.Node) string {
	var b strings.Builder
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.AliasNode:
			walk(n.Alias)
		case yaml.MappingNode:
			b.WriteByte('{')
			for _, c := range n.Content {
				walk(c)
				b.WriteByte(',')
			}
			b.WriteByte('}')
		case yaml.SequenceNode:
			b.WriteByte('[')
			for _, c := range n.Content {
				walk(c)
				b.WriteByte(',')
			}
			b.WriteByte(']')
		default:
			b.WriteString(strconv.Quote(n.Value))
		}
	}
	walk(n)
	return b.String()
}
