package enrich

import (
	"errors"
	"iter"
	"maps"
	"slices"
	"strings"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
)

// MetadataOptions configure the Kubernetes API part of the kubernetes
// processor: which pod labels and annotations become resource attributes.
// Owners (deployment, daemonset, statefulset, job, cronjob) are always added.
type MetadataOptions struct {
	// Labels are the pod label keys copied as k8s.pod.label.<key>; "*"
	// copies every label.
	Labels []string `yaml:"labels"`
	// Annotations are the pod annotation keys copied as
	// k8s.pod.annotation.<key>; "*" copies every annotation.
	Annotations []string `yaml:"annotations"`
	// Kubeconfig is the path of a kubeconfig file; empty means the in-cluster
	// configuration (the pod's service account).
	Kubeconfig string `yaml:"kubeconfig"`
}

// Validate checks o.
func (o *MetadataOptions) Validate() error {
	var errs []error
	for _, sec := range []struct {
		key  string
		keys []string
	}{{"metadata.labels", o.Labels}, {"metadata.annotations", o.Annotations}} {
		seen := map[string]bool{}
		for _, k := range sec.keys {
			switch {
			case k == "":
				errs = append(errs, config.Fieldf(sec.key, "empty key"))
			case seen[k]:
				errs = append(errs, config.Fieldf(sec.key, "%q listed twice", k))
			}
			seen[k] = true
		}
	}
	return errors.Join(errs...)
}

// WantLabel reports whether the label key is kept (copied to the resource).
func (o *MetadataOptions) WantLabel(key string) bool { return wanted(o.Labels, key) }

// WantAnnotation reports whether the annotation key is kept.
func (o *MetadataOptions) WantAnnotation(key string) bool { return wanted(o.Annotations, key) }

func wanted(keys []string, key string) bool {
	for _, k := range keys {
		if k == key || k == "*" {
			return true
		}
	}
	return false
}

// PodInfo is what the Kubernetes API tells about a pod, as resource
// attributes. It is immutable once built and shared by every stage that
// looks it up; a change of the pod makes a new PodInfo.
type PodInfo struct {
	Attrs []event.KeyValue
}

// Owner is a pod's owner reference (its controller).
type Owner struct {
	Kind, Name string
}

// PodTemplateHashLabel is the label a Deployment's ReplicaSet sets on its
// pods; its value is the suffix of the ReplicaSet's name.
const PodTemplateHashLabel = "pod-template-hash"

// NewPodInfo builds a pod's attributes from its metadata: k8s.pod.uid (when
// uid is set), the labels and annotations o selects as
// k8s.pod.label.<key> and k8s.pod.annotation.<key> (sorted by key), and the
// owner's names: a ReplicaSet gives k8s.replicaset.name and
// k8s.deployment.name (the ReplicaSet's name without its pod-template-hash
// suffix), a DaemonSet k8s.daemonset.name, a StatefulSet
// k8s.statefulset.name, a Job k8s.job.name and, when the Job's name ends in
// the scheduled time a CronJob appends (-<digits>), k8s.cronjob.name. A pod
// with several owners is described by its controller, else its first owner.
// The maps are only read.
func NewPodInfo(o *MetadataOptions, uid string, labels, annotations map[string]string, owner Owner) *PodInfo {
	var kvs []event.KeyValue
	add := func(k, v string) { kvs = append(kvs, event.KeyValue{Key: k, Value: event.String(v)}) }
	if uid != "" {
		add(string(semconv.K8SPodUIDKey), uid)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if o.WantLabel(k) {
			add("k8s.pod.label."+k, labels[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if o.WantAnnotation(k) {
			add("k8s.pod.annotation."+k, annotations[k])
		}
	}
	switch owner.Kind {
	case "ReplicaSet":
		add(string(semconv.K8SReplicaSetNameKey), owner.Name)
		if d := deploymentName(owner.Name, labels[PodTemplateHashLabel]); d != "" {
			add(string(semconv.K8SDeploymentNameKey), d)
		}
	case "DaemonSet":
		add(string(semconv.K8SDaemonSetNameKey), owner.Name)
	case "StatefulSet":
		add(string(semconv.K8SStatefulSetNameKey), owner.Name)
	case "Job":
		add(string(semconv.K8SJobNameKey), owner.Name)
		if c := cronJobName(owner.Name); c != "" {
			add(string(semconv.K8SCronJobNameKey), c)
		}
	}
	return &PodInfo{Attrs: kvs}
}

// deploymentName is a ReplicaSet's name without the "-<pod-template-hash>"
// a Deployment appends; without the pod's hash label the last dash-separated
// part is taken for the hash. "" when the name has no such suffix (a
// ReplicaSet made by hand).
func deploymentName(rs, hash string) string {
	if hash != "" {
		d, ok := strings.CutSuffix(rs, "-"+hash)
		if !ok || d == "" {
			return ""
		}
		return d
	}
	i := strings.LastIndexByte(rs, '-')
	if i <= 0 || i == len(rs)-1 {
		return ""
	}
	return rs[:i]
}

// cronJobName is the name of the CronJob that made the Job named job: a
// CronJob names its Jobs <cronjob>-<scheduled time in minutes>. "" when job
// does not end in -<digits>.
func cronJobName(job string) string {
	i := strings.LastIndexByte(job, '-')
	if i <= 0 || i == len(job)-1 {
		return ""
	}
	for _, c := range job[i+1:] {
		if c < '0' || c > '9' {
			return ""
		}
	}
	return job[:i]
}

// PodLookup returns the API metadata of the pod a log path names (by UID
// for /var/log/pods paths, by namespace and name for /var/log/containers
// paths), or nil while the pod is not known. It must not block; it is
// called once per batch from the goroutine running the stage, while the
// watch updates what it finds from others.
type PodLookup func(p *PodLog) *PodInfo

// WatchPods starts watching pod metadata in the background and returns at
// once, before anything is known, with the lookup and a stop function that
// ends the watch and waits until its goroutines have returned. The
// kubernetes stage calls it when its sequence is first pulled and calls stop
// when the sequence ends (package enrich/k8smeta implements it with a
// client-go metadata informer).
type WatchPods func() (lookup PodLookup, stop func())

// KubernetesMetadata returns the [Kubernetes] stage with, in addition, the
// pod metadata found through watch (see [NewPodInfo]) on each batch's
// resource.
//
// The watch starts when the returned stage's sequence is first pulled (no
// I/O before) and stops when that sequence returns; each iteration of the
// sequence runs its own watch. A batch of a pod the watch does not know yet
// is not held back: it gets the path attributes only, and the batches that
// follow get the metadata as soon as the watch has it. A pod's last known
// metadata stays on its logs after the pod is deleted, for the lines read
// after the deletion. A resource is built once per container log and
// metadata version and shared; the stage does not allocate per record, and
// per batch only when a log or its pod's metadata is new.
func KubernetesMetadata(o KubernetesOptions, nodeName string, watch WatchPods) (pipe.Stage, error) {
	node := o.NodeName
	if node == "" {
		node = nodeName
	}
	return func(in iter.Seq[*event.Batch]) iter.Seq[*event.Batch] {
		return func(yield func(*event.Batch) bool) {
			var lookup PodLookup
			if watch != nil {
				var stop func()
				lookup, stop = watch()
				defer stop()
			}
			logs := map[string]*podLogState{}
			for b := range in {
				if b.Path != "" {
					b.Resource = podResource(logs, b.Path, b.Resource, node, lookup)
				}
				if !yield(b) {
					return
				}
			}
		}
	}, nil
}

// podLogState is what the stage knows about one container log (one path
// without its rotation suffix).
type podLogState struct {
	log  PodLog
	ok   bool // the path is a pod log
	path []event.KeyValue
	info *PodInfo // last metadata found; kept when the pod disappears
	// in, infoUsed and out cache the last resource built.
	in, out  *event.Resource
	infoUsed *PodInfo
}

// podResource returns the resource for a batch of path whose resource is in.
func podResource(logs map[string]*podLogState, path string, in *event.Resource, node string, lookup PodLookup) *event.Resource {
	key := path
	if i := strings.LastIndex(key, ".log"); i >= 0 {
		key = key[:i]
	}
	st := logs[key]
	if st == nil {
		if len(logs) >= maxCachedResources {
			clear(logs)
		}
		st = &podLogState{}
		st.log, st.ok = ParsePodLogPath(strings.Clone(path))
		if st.ok {
			st.path = st.log.Attributes(node)
		}
		logs[strings.Clone(key)] = st
	}
	if !st.ok {
		return in
	}
	if lookup != nil {
		if info := lookup(&st.log); info != nil {
			st.info = info
		}
	}
	if st.out != nil && st.in == in && st.infoUsed == st.info {
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
	st.in, st.infoUsed, st.out = in, st.info, &event.Resource{Attrs: attrs}
	return st.out
}
