// Package enrich holds the stages that add context to records: static
// attributes, the host's resource attributes and the Kubernetes resource
// attributes found in a pod log's path.
//
// Resources are immutable and shared ([event.Resource]), so a stage that
// adds resource attributes makes a new resource per distinct input resource
// (per pod and container for the kubernetes stage) once, caches it, and
// points batches at it. Resource values are heap strings, never batch
// arena bytes, because a resource outlives any one batch.
package enrich

import (
	"errors"
	"iter"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// StaticOptions configure the static processor.
type StaticOptions struct {
	// Attributes are set on every record (replacing a value of the same key).
	Attributes map[string]any `yaml:"attributes"`
	// Resource attributes are set on every record's resource.
	Resource map[string]any `yaml:"resource"`
}

// Validate checks o.
func (o *StaticOptions) Validate() error {
	var errs []error
	if len(o.Attributes) == 0 && len(o.Resource) == 0 {
		errs = append(errs, config.Fieldf("", "give attributes or resource"))
	}
	for _, sec := range []struct {
		key string
		m   map[string]any
	}{{"attributes", o.Attributes}, {"resource", o.Resource}} {
		for _, k := range slices.Sorted(maps.Keys(sec.m)) {
			if _, err := event.Scalar(sec.m[k]); err != nil {
				errs = append(errs, config.Fieldf(sec.key+"."+k, "%v", err))
			}
		}
	}
	return errors.Join(errs...)
}

func sortedValues(m map[string]any) []event.KeyValue {
	var kvs []event.KeyValue
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v, _ := event.Scalar(m[k])
		kvs = append(kvs, event.KeyValue{Key: k, Value: v})
	}
	return kvs
}

// Static returns a stage that sets fixed attributes on every record and
// fixed attributes on every resource. It does not allocate per record (the
// values are constants shared by all records).
func Static(o StaticOptions) (pipe.Stage, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	attrs := sortedValues(o.Attributes)
	res := sortedValues(o.Resource)
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			resources := resourceCache{add: res}
			for b := range in {
				for i := range b.Records {
					r := &b.Records[i]
					for _, kv := range attrs {
						r.Attrs = event.Set(r.Attrs, kv.Key, kv.Value)
					}
					if r.Resource != nil && len(res) > 0 {
						r.Resource = resources.with(r.Resource, nil)
					}
				}
				if len(res) > 0 {
					b.Resource = resources.with(b.Resource, nil)
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}

// resourceCache maps an input resource to the same resource with attributes
// added. Keyed by pointer: resources are shared and immutable.
type resourceCache struct {
	add []event.KeyValue
	m   map[resourceKey]*event.Resource
}

type resourceKey struct {
	in    *event.Resource
	extra string // what the extra attributes were derived from (a pod directory)
}

// maxCachedResources bounds the cache; it is cleared when full (pods come
// and go; a cleared entry is rebuilt on next use).
const maxCachedResources = 4096

// with returns in plus c.add plus extra's attributes (extra wins over add,
// both over in). extra.key identifies extra's attributes for caching; they
// are built by extra.mk only on a miss.
func (c *resourceCache) with(in *event.Resource, extra *extraAttrs) *event.Resource {
	k := resourceKey{in: in}
	if extra != nil {
		k.extra = extra.key
	}
	if out, ok := c.m[k]; ok {
		return out
	}
	if c.m == nil || len(c.m) >= maxCachedResources {
		c.m = make(map[resourceKey]*event.Resource)
	}
	k.extra = strings.Clone(k.extra)
	var attrs []event.KeyValue
	if in != nil {
		attrs = append(attrs, in.Attrs...)
	}
	for _, kv := range c.add {
		attrs = event.Set(attrs, kv.Key, kv.Value)
	}
	if extra != nil {
		more := extra.mk()
		if len(more) == 0 && len(c.add) == 0 {
			c.m[k] = in
			return in
		}
		for _, kv := range more {
			attrs = event.Set(attrs, kv.Key, kv.Value)
		}
	}
	out := &event.Resource{Attrs: attrs}
	c.m[k] = out
	return out
}

type extraAttrs struct {
	key string
	mk  func() []event.KeyValue
}

// HostOptions configure the host processor.
type HostOptions struct {
	// HostID is the host.id to report, e.g. the content of /etc/machine-id
	// read by the agent; left out when empty.
	HostID string `yaml:"host_id"`
}

// Validate checks o.
func (o *HostOptions) Validate() error { return nil }

// HostAttributes returns the host resource attributes logpump knows without
// I/O: host.name (hostname), host.arch and os.type, plus host.id when set.
func HostAttributes(hostname, hostID string) []event.KeyValue {
	var kvs []event.KeyValue
	if hostname != "" {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.HostNameKey), Value: event.String(hostname)})
	}
	if hostID != "" {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.HostIDKey), Value: event.String(hostID)})
	}
	arch := runtime.GOARCH
	if arch == "386" {
		arch = "x86"
	}
	kvs = append(kvs,
		event.KeyValue{Key: string(semconv.HostArchKey), Value: event.String(arch)},
		event.KeyValue{Key: string(semconv.OSTypeKey), Value: event.String(runtime.GOOS)},
	)
	return kvs
}

// Host returns a stage that adds the host's resource attributes (see
// [HostAttributes]) to every batch's and record's resource.
func Host(o HostOptions, hostname string) (pipe.Stage, error) {
	attrs := HostAttributes(hostname, o.HostID)
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			resources := resourceCache{add: attrs}
			for b := range in {
				b.Resource = resources.with(b.Resource, nil)
				for i := range b.Records {
					if r := &b.Records[i]; r.Resource != nil {
						r.Resource = resources.with(r.Resource, nil)
					}
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}

// KubernetesOptions configure the kubernetes processor.
type KubernetesOptions struct {
	// NodeName is reported as k8s.node.name; default the agent's node name
	// (NODE_NAME from the downward API).
	NodeName string `yaml:"node_name"`
	// Metadata, when set, adds pod labels, annotations and owners from the
	// Kubernetes API (see [KubernetesMetadata]).
	Metadata *MetadataOptions `yaml:"metadata"`
	// Annotations configure the pod annotations that steer the processor
	// (exclude, parser, multiline); on by default with metadata.
	Annotations *AnnotationOptions `yaml:"annotations"`
}

// Validate checks o.
func (o *KubernetesOptions) Validate() error {
	var errs []error
	if o.Metadata != nil {
		errs = append(errs, o.Metadata.Validate())
	}
	errs = append(errs, o.Annotations.validate(o.Metadata != nil))
	return errors.Join(errs...)
}

// PodLog is what a Kubernetes log path tells about its container.
type PodLog struct {
	Namespace, Pod, UID, Container string
	// ContainerID is known from /var/log/containers names only.
	ContainerID string
	// Restart is the container's restart count (the log file's number),
	// -1 when unknown.
	Restart int
}

// ParsePodLogPath reads a kubelet log path:
//
//	/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log[.<rotation suffix>]
//	/var/log/containers/<pod>_<namespace>_<container>-<container id>.log
//
// ok is false for any other path.
func ParsePodLogPath(path string) (PodLog, bool) {
	parts := strings.Split(path, "/")
	if len(parts) >= 3 {
		dir, container, file := parts[len(parts)-3], parts[len(parts)-2], parts[len(parts)-1]
		ns, rest, ok1 := strings.Cut(dir, "_")
		pod, uid, ok2 := strings.Cut(rest, "_")
		name, _, ok3 := strings.Cut(file, ".log")
		if ok1 && ok2 && ok3 && ns != "" && pod != "" && uid != "" && container != "" {
			restart, err := strconv.Atoi(name)
			if err != nil {
				restart = -1
			}
			return PodLog{Namespace: ns, Pod: pod, UID: uid, Container: container, Restart: restart}, true
		}
	}
	if len(parts) >= 1 {
		file := parts[len(parts)-1]
		if base, ok := strings.CutSuffix(file, ".log"); ok {
			pod, rest, ok1 := strings.Cut(base, "_")
			ns, rest, ok2 := strings.Cut(rest, "_")
			i := strings.LastIndexByte(rest, '-')
			if ok1 && ok2 && i > 0 && i < len(rest)-1 && pod != "" && ns != "" {
				return PodLog{Namespace: ns, Pod: pod, Container: rest[:i], ContainerID: rest[i+1:], Restart: -1}, true
			}
		}
	}
	return PodLog{}, false
}

// Attributes returns the resource attributes of p (semantic-convention keys).
func (p PodLog) Attributes(node string) []event.KeyValue {
	kvs := []event.KeyValue{
		{Key: string(semconv.K8SNamespaceNameKey), Value: event.String(p.Namespace)},
		{Key: string(semconv.K8SPodNameKey), Value: event.String(p.Pod)},
	}
	if p.UID != "" {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.K8SPodUIDKey), Value: event.String(p.UID)})
	}
	kvs = append(kvs, event.KeyValue{Key: string(semconv.K8SContainerNameKey), Value: event.String(p.Container)})
	if p.Restart >= 0 {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.K8SContainerRestartCountKey), Value: event.Int(int64(p.Restart))})
	}
	if p.ContainerID != "" {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.ContainerIDKey), Value: event.String(p.ContainerID)})
	}
	if node != "" {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.K8SNodeNameKey), Value: event.String(node)})
	}
	return kvs
}

// Kubernetes returns a stage that sets the Kubernetes resource attributes
// read from each batch's path ([ParsePodLogPath]) on the batch's resource:
// k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.container.name,
// k8s.container.restart_count, container.id (from /var/log/containers) and
// k8s.node.name. Batches of other paths pass unchanged. A resource is built
// once per pod container and shared; the stage does not allocate per record.
func Kubernetes(o KubernetesOptions, nodeName string) (pipe.Stage, error) {
	node := o.NodeName
	if node == "" {
		node = nodeName
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			var resources resourceCache
			for b := range in {
				if b.Path != "" {
					// One resource per log file, whatever its rotation suffix.
					key := b.Path
					if i := strings.LastIndex(key, ".log"); i >= 0 {
						key = key[:i]
					}
					path := b.Path
					b.Resource = resources.with(b.Resource, &extraAttrs{key: key, mk: func() []event.KeyValue {
						p, ok := ParsePodLogPath(strings.Clone(path))
						if !ok {
							return nil
						}
						return p.Attributes(node)
					}})
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}
