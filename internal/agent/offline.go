package agent

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages"
	"github.com/logpump/logpump/route"
	"github.com/logpump/logpump/tailer"
)

// Offline is one pipeline of a built configuration without its sources'
// files and its exporters' connections: the stages, routes and resource the
// agent would use, for `logpump test`.
type Offline struct {
	// Source is the source whose records the input stands for.
	Source string
	// Stages are the pipeline's processors in order, each named.
	Stages []NamedStage
	// Routes decides the exporters of each record; nil when the test runs
	// processors without a pipeline.
	Routes *route.Table
	// Resource is the source's resource as the agent builds it.
	Resource *event.Resource
	// FileAttrs returns the attributes the source's tailer gives each line
	// of the file at path (log.file.name, log.file.path).
	FileAttrs func(path string) []event.KeyValue
}

// NamedStage is a processor's stage and its name.
type NamedStage struct {
	Name  string
	Stage pipe.Stage
}

// OfflineSpec selects what [Agent.Offline] builds: the processors and routes
// of Pipeline, or the Processors listed (without routes). Source defaults to
// the pipeline's first source, else the configuration's only one.
type OfflineSpec struct {
	Pipeline   string
	Processors []string
	Source     string
	// Dropped counts what the processors remove, by processor and reason.
	Dropped func(processor, reason string, n int)
	// Errored counts the records a processor failed on and passed on
	// unchanged, by processor and reason.
	Errored func(processor, reason string, n int)
}

// Offline builds fresh stages (with the agent's clock) for spec. It does no
// I/O.
func (a *Agent) Offline(spec OfflineSpec) (*Offline, error) {
	cfg := a.cfg
	procs := spec.Processors
	var rules []route.Rule
	if spec.Pipeline != "" {
		p, ok := cfg.Pipelines[spec.Pipeline]
		if !ok {
			return nil, fmt.Errorf("no pipeline %q in %s", spec.Pipeline, cfg.File)
		}
		if len(procs) > 0 {
			return nil, errors.New("give a pipeline or processors, not both")
		}
		procs = p.Processors
		rules = []route.Rule{{Exporters: p.Exporters}}
		if len(p.Routes) > 0 {
			rules = rules[:0]
			for _, r := range p.Routes {
				rules = append(rules, route.Rule{When: r.When, Exporters: r.Exporters, Continue: r.Continue})
			}
		}
		if spec.Source == "" && len(p.Sources) > 0 {
			spec.Source = p.Sources[0]
		}
	}
	if spec.Source == "" && len(cfg.Sources) == 1 {
		for name := range cfg.Sources {
			spec.Source = name
		}
	}
	sc, ok := cfg.Sources[spec.Source]
	if !ok {
		return nil, fmt.Errorf("no source %q in %s (name one with source:)", spec.Source, cfg.File)
	}
	opts := sourceOptions{Options: tailer.DefaultOptions()}
	if err := sc.Options(&opts); err != nil {
		return nil, err
	}
	out := &Offline{
		Source:   spec.Source,
		Resource: &event.Resource{Attrs: mergeResource(a.globalResource(), opts.Resource, spec.Source)},
		FileAttrs: func(path string) []event.KeyValue {
			var kvs []event.KeyValue
			if opts.IncludeFilePath {
				kvs = append(kvs, event.KeyValue{Key: tailer.AttrFilePath, Value: event.String(path)})
			}
			if opts.IncludeFileName {
				kvs = append(kvs, event.KeyValue{Key: tailer.AttrFileName, Value: event.String(filepath.Base(path))})
			}
			return kvs
		},
	}
	env := a.stageEnv()
	env.Dropped, env.Errored = spec.Dropped, spec.Errored
	for _, name := range procs {
		c, ok := cfg.Processors[name]
		if !ok {
			return nil, fmt.Errorf("no processor %q in %s", name, cfg.File)
		}
		st, err := stages.Build(c, env)
		if err != nil {
			return nil, err
		}
		out.Stages = append(out.Stages, NamedStage{Name: name, Stage: st})
	}
	if rules != nil {
		t, err := route.New(rules)
		if err != nil {
			return nil, err
		}
		out.Routes = t
	}
	return out, nil
}
