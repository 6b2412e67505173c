package enrich

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/parse"
)

// WatchPods starts watching the cluster in the background and returns at
// once, before anything is known, with the view of what the watch found
// and a stop function that lets go of the watch. The kubernetes stage calls
// it when its sequence is first pulled and calls stop when the sequence
// ends (package enrich/k8smeta implements it with client-go metadata
// informers shared by every stage of the agent).
type WatchPods func() (md Metadata, stop func())

// AnnotationOptions configure the pod annotations that steer the kubernetes
// processor: <prefix>/exclude, <prefix>/parser and <prefix>/multiline, each
// also per container as <prefix>/<name>-<container>.
type AnnotationOptions struct {
	// Enabled turns the annotations on; default true when metadata is set.
	Enabled *bool `yaml:"enabled"`
	// Prefix is the annotations' prefix; default logpump.io.
	Prefix string `yaml:"prefix"`
}

// DefaultAnnotationPrefix is the prefix of the steering annotations.
const DefaultAnnotationPrefix = "logpump.io"

// annotationsOn reports whether the annotations steer the stage, and their
// prefix.
func (o *KubernetesOptions) annotationsOn() (bool, string) {
	if o.Metadata == nil {
		return false, ""
	}
	a := o.Annotations
	if a == nil {
		return true, DefaultAnnotationPrefix
	}
	if a.Enabled != nil && !*a.Enabled {
		return false, ""
	}
	if a.Prefix == "" {
		return true, DefaultAnnotationPrefix
	}
	return true, a.Prefix
}

func (a *AnnotationOptions) validate(metadata bool) error {
	if a == nil {
		return nil
	}
	var errs []error
	if (a.Enabled == nil || *a.Enabled) && !metadata {
		errs = append(errs, config.Fieldf("annotations", "pod annotations need metadata (the Kubernetes API); set metadata: {} or annotations.enabled: false"))
	}
	if a.Prefix != "" && (strings.ContainsAny(a.Prefix, "/ \t") || strings.Trim(a.Prefix, ".-") != a.Prefix) {
		errs = append(errs, config.Fieldf("annotations.prefix", "must be a DNS name such as logpump.io (no '/'); got %q", a.Prefix))
	}
	return errors.Join(errs...)
}

// MetadataEnv is what the kubernetes stage with metadata needs besides its
// options.
type MetadataEnv struct {
	// Watch starts the watch; nil watches nothing (path attributes only).
	Watch WatchPods
	// Log receives the reports of invalid annotations; slog.Default when nil.
	Log *slog.Logger
	// Dropped counts records removed (reason "excluded"); Errored counts
	// records passed on unchanged because an annotation of their pod is
	// invalid (reason "invalid_annotation"). Called from the stage's
	// goroutine; nil discards.
	Dropped, Errored func(reason string, n int)
	// Parser returns the parser a logpump.io/parser value names (json,
	// logfmt, a regex preset, a parser processor of the configuration), or
	// an error naming the known ones.
	Parser func(name string) (*parse.Parser, error)
	// Multiline returns a joiner for a logpump.io/multiline value (a
	// multiline preset or a start pattern), or an error.
	Multiline func(value string) (*parse.Joining, error)
}

// KubernetesMetadata returns the [Kubernetes] stage with, in addition, the
// metadata found through env.Watch (see [NewPodInfo]) on each batch's
// resource, and, unless turned off, the pod annotations steering what
// happens to a container's records:
//
//   - <prefix>/exclude: "true" drops the pod's records (acknowledged at once,
//     counted under reason "excluded"); <prefix>/exclude-<container> the
//     container's. The most specific annotation wins: a container's "false"
//     keeps its records when the pod says "true".
//   - <prefix>/parser (or -<container>) names a parser applied to the body:
//     json, logfmt, a regex preset, a parser processor of the configuration,
//     or none.
//   - <prefix>/multiline (or -<container>) joins consecutive records of one
//     container stream: a multiline preset name or a start pattern, with the
//     multiline processor's max_lines, max_bytes and flush_timeout defaults.
//     Joining happens before the annotated parser.
//
// An annotation value that is not valid is logged once per pod and value,
// ignored (the records pass unparsed, unjoined, not excluded) and the
// records it concerned are counted under reason "invalid_annotation".
//
// The watch starts when the returned stage's sequence is first pulled (no
// I/O before) and stops when that sequence returns. A batch of a pod the
// watch does not know yet is not held back: it gets the path attributes
// only and no annotation applies to it; the batches that follow get the
// metadata, and the annotations' effect, as soon as the watch has it. A
// pod's last known metadata stays on its logs after the pod is deleted. A
// resource is built once per container log and metadata version and shared;
// the stage does not allocate per record, and per batch only when a log or
// its pod's metadata is new.
func KubernetesMetadata(o KubernetesOptions, nodeName string, env MetadataEnv) (pipe.Stage, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	node := o.NodeName
	if node == "" {
		node = nodeName
	}
	if env.Log == nil {
		env.Log = slog.Default()
	}
	for _, f := range []*func(string, int){&env.Dropped, &env.Errored} {
		if *f == nil {
			*f = func(string, int) {}
		}
	}
	on, prefix := o.annotationsOn()
	mo := o.Metadata
	if mo == nil {
		mo = &MetadataOptions{}
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			var md Metadata
			if env.Watch != nil {
				var stop func()
				md, stop = env.Watch()
				defer stop()
			}
			r := &kubeRun{
				opts: mo, node: node, md: md, env: &env, annotations: on, prefix: prefix,
				logs: map[string]*podLogState{}, yield: yield,
			}
			for b := range in {
				if !r.batch(b) {
					return
				}
			}
			for _, j := range r.joiners {
				if j.j != nil && !j.j.Close(r.emit) {
					return
				}
			}
		}
	}, nil
}

// kubeRun is one run of the kubernetes stage.
type kubeRun struct {
	opts        *MetadataOptions
	node        string
	md          Metadata
	env         *MetadataEnv
	annotations bool
	prefix      string
	logs        map[string]*podLogState
	yield       func(*event.Batch) bool

	parsers  map[string]parserEntry
	joiners  map[string]joinEntry
	reported map[string]bool
}

type parserEntry struct {
	parse func(*event.Batch)
	err   error
}

type joinEntry struct {
	j   *parse.Joining
	err error
}

// control is what the annotations of a pod say about one of its containers.
type control struct {
	exclude bool
	parse   func(*event.Batch) // nil: no parser
	join    *parse.Joining     // nil: no joining
	invalid bool               // an annotation is invalid (reported)
}

// podLogState is what the stage knows about one container log (one path
// without its rotation suffix).
type podLogState struct {
	log  PodLog
	ok   bool // the path is a pod log
	path []event.KeyValue
	// pod, ns and node are the last metadata found; kept when an object
	// disappears.
	pod      *PodMeta
	ns, node *ObjectMeta
	// info is built from infoPod, infoNS and infoNode.
	info             *PodInfo
	infoPod          *PodMeta
	infoNS, infoNode *ObjectMeta
	ctl              *control // nil: no annotation applies
	ctlPod           *PodMeta // the metadata ctl was made from
	in, out          *event.Resource
	outInfo          *PodInfo
}

// maxAnnotationValues bounds the parsers and joiners kept per annotation
// value, and the reports remembered; the maps are cleared when full.
const maxAnnotationValues = 256

func logKey(path string) string {
	if i := strings.LastIndex(path, ".log"); i >= 0 {
		return path[:i]
	}
	return path
}

func (r *kubeRun) stateOf(path string) *podLogState {
	if path == "" {
		return nil
	}
	return r.logs[logKey(path)]
}

// batch handles one batch from the input; false when yield did.
func (r *kubeRun) batch(b *event.Batch) bool {
	var st *podLogState
	if b.Path != "" {
		st = r.state(b.Path)
		if st.ok {
			r.lookup(st)
			b.Resource = r.resource(st, b.Resource)
		}
	}
	ok := true
	switch c := ctlOf(st); {
	case c == nil:
		ok = r.yield(b)
	case c.exclude:
		if n := len(b.Records); n > 0 {
			b.Records = b.Records[:0]
			r.env.Dropped("excluded", n)
		}
		ok = r.yield(b)
	default:
		if c.invalid && len(b.Records) > 0 {
			r.env.Errored("invalid_annotation", len(b.Records))
		}
		if c.join != nil {
			ok = c.join.Push(b, r.emit)
		} else {
			ok = r.emit(b)
		}
	}
	if !ok {
		return false
	}
	// Idle events of every joiner are flushed on every batch (the tailer's
	// idle ticks included), whichever log the batch is of.
	for _, j := range r.joiners {
		if j.j != nil && j.j.Open() && !j.j.Tick(r.emit) {
			return false
		}
	}
	return true
}

func ctlOf(st *podLogState) *control {
	if st == nil {
		return nil
	}
	return st.ctl
}

func (r *kubeRun) state(path string) *podLogState {
	key := logKey(path)
	st := r.logs[key]
	if st == nil {
		if len(r.logs) >= maxCachedResources {
			clear(r.logs)
		}
		st = &podLogState{}
		st.log, st.ok = ParsePodLogPath(strings.Clone(path))
		if st.ok {
			st.path = st.log.Attributes(r.node)
		}
		r.logs[strings.Clone(key)] = st
	}
	return st
}

// lookup refreshes what st knows from the watch, and its control when the
// pod's metadata changed.
func (r *kubeRun) lookup(st *podLogState) {
	if r.md == nil {
		return
	}
	if p := r.md.Pod(&st.log); p != nil {
		st.pod = p
	}
	if r.opts.WantNamespaces() {
		if ns := r.md.Namespace(st.log.Namespace); ns != nil {
			st.ns = ns
		}
	}
	if r.opts.WantNode() {
		if n := r.md.Node(); n != nil {
			st.node = n
		}
	}
	if st.pod != nil && (st.info == nil || st.infoPod != st.pod || st.infoNS != st.ns || st.infoNode != st.node) {
		st.info = NewPodInfo(r.opts, st.pod, st.ns, st.node)
		if img := st.pod.Images[st.log.Container]; img != "" && r.opts.ContainerImage {
			st.info.Attrs = append(st.info.Attrs, ImageAttributes(img)...)
		}
		st.infoPod, st.infoNS, st.infoNode = st.pod, st.ns, st.node
	}
	if r.annotations && st.pod != nil && st.ctlPod != st.pod {
		st.ctl = r.control(st.pod, st.log.Container)
		st.ctlPod = st.pod
	}
}

// resource returns the resource for a batch of st whose resource is in.
func (r *kubeRun) resource(st *podLogState, in *event.Resource) *event.Resource {
	if st.out != nil && st.in == in && st.outInfo == st.info {
		return st.out
	}
	var attrs []event.KeyValue
	if in != nil {
		attrs = slices.Clone(in.Attrs)
	}
	for _, kv := range st.path {
		attrs = event.Set(attrs, kv.Key, kv.Value)
	}
	if st.info != nil {
		for _, kv := range st.info.Attrs {
			attrs = event.Set(attrs, kv.Key, kv.Value)
		}
	}
	st.in, st.outInfo, st.out = in, st.info, &event.Resource{Attrs: attrs}
	return st.out
}

// annotation returns the value of <prefix>/<name>-<container>, else of
// <prefix>/<name>, and the key it came from.
func (r *kubeRun) annotation(ann map[string]string, name, container string) (value, key string, ok bool) {
	key = r.prefix + "/" + name + "-" + container
	if v, ok := ann[key]; ok {
		return v, key, true
	}
	key = r.prefix + "/" + name
	v, ok := ann[key]
	return v, key, ok
}

// control reads the annotations of pod for container. nil when none
// applies.
func (r *kubeRun) control(pod *PodMeta, container string) *control {
	c := &control{}
	any := false
	if v, key, ok := r.annotation(pod.Annotations, "exclude", container); ok {
		switch v {
		case "true":
			c.exclude, any = true, true
		case "false":
		default:
			r.invalid(c, pod, key, v, errors.New(`must be "true" or "false"`))
			any = true
		}
	}
	if v, key, ok := r.annotation(pod.Annotations, "multiline", container); ok {
		any = true
		j, err := r.joiner(v)
		if err != nil {
			r.invalid(c, pod, key, v, err)
		}
		c.join = j
	}
	if v, key, ok := r.annotation(pod.Annotations, "parser", container); ok && v != "none" {
		any = true
		p, err := r.parser(v)
		if err != nil {
			r.invalid(c, pod, key, v, err)
		}
		c.parse = p
	}
	if !any {
		return nil
	}
	return c
}

func (r *kubeRun) parser(name string) (func(*event.Batch), error) {
	if e, ok := r.parsers[name]; ok {
		return e.parse, e.err
	}
	if r.parsers == nil || len(r.parsers) >= maxAnnotationValues {
		r.parsers = map[string]parserEntry{}
	}
	var e parserEntry
	if r.env.Parser == nil {
		e.err = errors.New("no parsers known")
	} else if p, err := r.env.Parser(name); err != nil {
		e.err = err
	} else {
		e.parse = p.Batches()
	}
	r.parsers[strings.Clone(name)] = e
	return e.parse, e.err
}

func (r *kubeRun) joiner(value string) (*parse.Joining, error) {
	if e, ok := r.joiners[value]; ok {
		return e.j, e.err
	}
	if r.joiners == nil {
		r.joiners = map[string]joinEntry{}
	}
	var e joinEntry
	switch {
	case len(r.joiners) >= maxAnnotationValues:
		// Joiners hold open events: they are never dropped while the run
		// lasts, so their number is bounded instead.
		e.err = fmt.Errorf("more than %d different multiline annotation values on this node", maxAnnotationValues)
		return nil, e.err
	case r.env.Multiline == nil:
		e.err = errors.New("multiline joining is not available")
	default:
		e.j, e.err = r.env.Multiline(value)
	}
	r.joiners[strings.Clone(value)] = e
	return e.j, e.err
}

// invalid marks c and reports the annotation once per pod and value.
func (r *kubeRun) invalid(c *control, pod *PodMeta, key, value string, err error) {
	c.invalid = true
	id := pod.UID + "\x00" + key + "\x00" + value
	if r.reported[id] {
		return
	}
	if r.reported == nil || len(r.reported) >= maxAnnotationValues*16 {
		r.reported = map[string]bool{}
	}
	r.reported[id] = true
	shown := value
	if len(shown) > 200 {
		shown = shown[:200] + "..."
	}
	r.env.Log.Warn("kubernetes: invalid pod annotation ignored; the pod's records pass without it",
		"namespace", pod.Namespace, "pod", pod.Name, "annotation", key, "value", shown, "error", err.Error())
}

// emit parses b with the parser its log's annotations name, if any, and
// yields it. Joined events flushed later come here too, so they are parsed
// as a whole.
func (r *kubeRun) emit(b *event.Batch) bool {
	if st := r.stateOf(b.Path); st != nil && st.ctl != nil && st.ctl.parse != nil && len(b.Records) > 0 {
		st.ctl.parse(b)
	}
	return r.yield(b)
}
