package enrich

import (
	"errors"
	"maps"
	"slices"
	"strings"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
)

// MetadataOptions configure the Kubernetes API part of the kubernetes
// processor: which pod, namespace and node labels and annotations become
// resource attributes. Owners (deployment, daemonset, statefulset, job,
// cronjob) are always added.
type MetadataOptions struct {
	// Labels are the pod label keys copied as k8s.pod.label.<key>; "*"
	// copies every label.
	Labels []string `yaml:"labels"`
	// Annotations are the pod annotation keys copied as
	// k8s.pod.annotation.<key>; "*" copies every annotation.
	Annotations []string `yaml:"annotations"`
	// NamespaceLabels and NamespaceAnnotations are the keys of the pod's
	// namespace copied as k8s.namespace.label.<key> and
	// k8s.namespace.annotation.<key> ("*": all). Either one starts a watch of
	// the cluster's namespaces (metadata only).
	NamespaceLabels      []string `yaml:"namespace_labels"`
	NamespaceAnnotations []string `yaml:"namespace_annotations"`
	// NodeLabels are the label keys of the agent's node copied as
	// k8s.node.label.<key> ("*": all). It starts a watch of that one node.
	NodeLabels []string `yaml:"node_labels"`
	// ContainerImage adds container.image.name and container.image.tags
	// from the pod's spec: the pod watch then receives whole pods (specs
	// and statuses) instead of their metadata, and keeps only the images.
	ContainerImage bool `yaml:"container_image"`
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
	}{
		{"metadata.labels", o.Labels}, {"metadata.annotations", o.Annotations},
		{"metadata.namespace_labels", o.NamespaceLabels}, {"metadata.namespace_annotations", o.NamespaceAnnotations},
		{"metadata.node_labels", o.NodeLabels},
	} {
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

// WantNamespaces reports whether namespace metadata is copied.
func (o *MetadataOptions) WantNamespaces() bool {
	return len(o.NamespaceLabels) > 0 || len(o.NamespaceAnnotations) > 0
}

// WantNode reports whether the node's labels are copied.
func (o *MetadataOptions) WantNode() bool { return len(o.NodeLabels) > 0 }

func wanted(keys []string, key string) bool {
	for _, k := range keys {
		if k == key || k == "*" {
			return true
		}
	}
	return false
}

// PodMeta is what the Kubernetes API says about a pod, as a watch keeps it.
// It is immutable (the maps are only read) and shared by every kubernetes
// processor of the agent; a change of the pod makes a new PodMeta.
type PodMeta struct {
	UID, Namespace, Name string
	Labels, Annotations  map[string]string
	Owner                Owner
	// Workload is the owner of Owner when Owner is a ReplicaSet or a Job
	// (a Deployment, a CronJob, or none: Kind ""), once WorkloadKnown: the
	// watch looks it up lazily. Until then the names are inferred from
	// Owner's name.
	Workload      Owner
	WorkloadKnown bool
	// Images are the containers' image references by container name, when
	// the watch reads them (metadata.container_image).
	Images map[string]string
}

// ObjectMeta is the labels and annotations of a namespace or node, immutable
// like [PodMeta].
type ObjectMeta struct {
	Labels, Annotations map[string]string
}

// Metadata is a watch's view of the cluster. Its methods must not block:
// they are called from the goroutine running the stage, once per batch,
// while the watch updates what they find from others. Each returns nil
// while the object is unknown (or not watched).
type Metadata interface {
	// Pod finds the pod a log path names: by UID for /var/log/pods paths,
	// by namespace and name for /var/log/containers paths.
	Pod(p *PodLog) *PodMeta
	// Namespace finds a namespace by name.
	Namespace(name string) *ObjectMeta
	// Node is the agent's node.
	Node() *ObjectMeta
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
// set), the labels and annotations o selects as k8s.pod.label.<key> and
// k8s.pod.annotation.<key> (sorted by key), those of its namespace ns as
// k8s.namespace.label.<key> and k8s.namespace.annotation.<key>, those of
// the node as k8s.node.label.<key> (ns and node may be nil), and the
// owner's names: a ReplicaSet gives k8s.replicaset.name and
// k8s.deployment.name (the ReplicaSet's owner once looked up, until then
// the ReplicaSet's name without its pod-template-hash suffix), a DaemonSet
// k8s.daemonset.name, a StatefulSet k8s.statefulset.name, a Job
// k8s.job.name and k8s.cronjob.name (the Job's owner once looked up, until
// then inferred from a Job name ending in the scheduled time a CronJob
// appends, -<digits>). A pod
// with several owners is described by its controller, else its first owner.
func NewPodInfo(o *MetadataOptions, pod *PodMeta, ns, node *ObjectMeta) *PodInfo {
	var kvs []event.KeyValue
	add := func(k, v string) { kvs = append(kvs, event.KeyValue{Key: k, Value: event.String(v)}) }
	copyKeys := func(prefix string, keys []string, m map[string]string) {
		if len(keys) == 0 {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if wanted(keys, k) {
				add(prefix+k, m[k])
			}
		}
	}
	if pod.UID != "" {
		add(string(semconv.K8SPodUIDKey), pod.UID)
	}
	copyKeys("k8s.pod.label.", o.Labels, pod.Labels)
	copyKeys("k8s.pod.annotation.", o.Annotations, pod.Annotations)
	if ns != nil {
		copyKeys("k8s.namespace.label.", o.NamespaceLabels, ns.Labels)
		copyKeys("k8s.namespace.annotation.", o.NamespaceAnnotations, ns.Annotations)
	}
	if node != nil {
		copyKeys("k8s.node.label.", o.NodeLabels, node.Labels)
	}
	owner := pod.Owner
	switch owner.Kind {
	case "ReplicaSet":
		add(string(semconv.K8SReplicaSetNameKey), owner.Name)
		switch {
		case pod.WorkloadKnown && pod.Workload.Kind == "Deployment":
			add(string(semconv.K8SDeploymentNameKey), pod.Workload.Name)
		case pod.WorkloadKnown:
		case deploymentName(owner.Name, pod.Labels[PodTemplateHashLabel]) != "":
			add(string(semconv.K8SDeploymentNameKey), deploymentName(owner.Name, pod.Labels[PodTemplateHashLabel]))
		}
	case "DaemonSet":
		add(string(semconv.K8SDaemonSetNameKey), owner.Name)
	case "StatefulSet":
		add(string(semconv.K8SStatefulSetNameKey), owner.Name)
	case "Job":
		add(string(semconv.K8SJobNameKey), owner.Name)
		switch {
		case pod.WorkloadKnown && pod.Workload.Kind == "CronJob":
			add(string(semconv.K8SCronJobNameKey), pod.Workload.Name)
		case pod.WorkloadKnown:
		case cronJobName(owner.Name) != "":
			add(string(semconv.K8SCronJobNameKey), cronJobName(owner.Name))
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

// ImageAttributes returns container.image.name and container.image.tags
// (an array of one tag, when the reference has one) of an image reference
// such as registry.example:5000/shop/web:1.4.2@sha256:....
func ImageAttributes(ref string) []event.KeyValue {
	name := ref
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
	}
	kvs := []event.KeyValue{{Key: string(semconv.ContainerImageNameKey), Value: event.String(name)}}
	if tag != "" {
		kvs = append(kvs, event.KeyValue{Key: string(semconv.ContainerImageTagsKey), Value: event.Array([]event.KeyValue{{Value: event.String(tag)}})})
	}
	return kvs
}
