// Package k8smeta watches the metadata of one node's pods through the
// Kubernetes API for the kubernetes processor ([enrich.KubernetesMetadata]).
//
// It uses a client-go metadata informer (the one of
// k8s.io/client-go/metadata/metadatainformer, built without that package's
// dependencies): the API server sends
// PartialObjectMetadata (names, labels, annotations, owners; no spec or
// status), restricted by the field selector spec.nodeName=<node> to the
// pods of the agent's node. A transform drops managedFields and the labels
// and annotations no one asked for before an object is stored, so memory
// holds only what becomes attributes. Lookups read a map kept by the
// informer's event handlers under a read lock: they never wait for the API.
//
// The package links k8s.io/client-go into the binary; the agent includes it
// only when built with the k8smeta build tag (see internal/stages).
package k8smeta

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/logpump/logpump/enrich"
)

// Client returns the metadata client to watch with. It is called when a
// watch starts, not before, so that building a stage does no I/O.
type Client func() (metadata.Interface, error)

// Config returns the Client that reads the in-cluster configuration (the
// pod's service account token and CA), or the kubeconfig file at path when
// path is not empty.
func Config(kubeconfig string) Client {
	return func() (metadata.Interface, error) {
		var (
			cfg *rest.Config
			err error
		)
		if kubeconfig != "" {
			cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		} else {
			cfg, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("load kubernetes client configuration: %w", err)
		}
		cfg.UserAgent = "logpump"
		c, err := metadata.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("create kubernetes metadata client: %w", err)
		}
		return c, nil
	}
}

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// Watcher watches the pods of one node. Its Watch method is an
// [enrich.WatchPods]. A Watcher holds no state between watches; it is safe
// to start several watches, each with its own informer.
type Watcher struct {
	client Client
	node   string
	opts   enrich.MetadataOptions
	log    *slog.Logger
}

// New returns a watcher of the pods on node. It does no I/O: the client is
// created when a watch starts. node must not be empty (an empty node would
// watch every pod of the cluster).
func New(client Client, node string, opts enrich.MetadataOptions, log *slog.Logger) (*Watcher, error) {
	if node == "" {
		return nil, fmt.Errorf("create pod watcher: no node name (set node_name or K8S_NODE_NAME)")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{client: client, node: node, opts: opts, log: log}, nil
}

// FieldSelector is the list and watch restriction of a watch of node's pods.
func FieldSelector(node string) string {
	return fields.OneTermEqualSelector("spec.nodeName", node).String()
}

// Watch starts an informer in the background and returns at once with its
// lookup and stop function (see [enrich.WatchPods]). The lookup finds
// nothing until the informer's first list arrived; list and watch failures
// are logged and retried with the informer's backoff. When the client cannot
// be created the error is logged and the lookup never finds anything: the
// records keep their path attributes.
func (w *Watcher) Watch() (enrich.PodLookup, func()) {
	s := &store{byUID: map[string]*enrich.PodInfo{}, byName: map[podName]uidInfo{}}
	client, err := w.client()
	if err != nil {
		w.log.Error("kubernetes pod metadata unavailable; records get the attributes of their log path only", "error", err)
		return s.lookup, func() {}
	}
	node := w.node
	inf := newInformer(client, FieldSelector(node))
	if err := inf.SetTransform(w.transform); err != nil {
		w.log.Error("kubernetes pod metadata unavailable", "error", fmt.Errorf("set informer transform: %w", err))
		return s.lookup, func() {}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.put(&w.opts, obj) },
		UpdateFunc: func(_, obj any) { s.put(&w.opts, obj) },
		DeleteFunc: s.remove,
	}); err != nil {
		w.log.Error("kubernetes pod metadata unavailable", "error", fmt.Errorf("add informer handler: %w", err))
		return s.lookup, func() {}
	}
	log := w.log.With("component", "k8smeta", "node", node)
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logr.FromSlogHandler(log.Handler())))
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.RunWithContext(ctx)
	}()
	log.Info("watching pod metadata", "field_selector", FieldSelector(node))
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	return s.lookup, stop
}

// newInformer is metadatainformer.NewFilteredMetadataInformer for pods of
// all namespaces, without resync, built here because that package's
// return type (informers.GenericInformer) links client-go's typed informers
// of every API group: 28 MB more binary (36 to 64 MB) for nothing the
// watch uses.
func newInformer(client metadata.Interface, fieldSelector string) cache.SharedIndexInformer {
	pods := client.Resource(podsResource).Namespace(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fieldSelector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fieldSelector
			return pods.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client),
		&metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
}

// transform strips what the store does not need from an object before the
// informer keeps it: managedFields always, and the labels and annotations
// that are not copied (the pod-template-hash label stays: it names the
// Deployment).
func (w *Watcher) transform(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	m.ManagedFields = nil
	for k := range m.Labels {
		if k != enrich.PodTemplateHashLabel && !w.opts.WantLabel(k) {
			delete(m.Labels, k)
		}
	}
	for k := range m.Annotations {
		if !w.opts.WantAnnotation(k) {
			delete(m.Annotations, k)
		}
	}
	return m, nil
}

type podName struct{ namespace, name string }

type uidInfo struct {
	uid  string
	info *enrich.PodInfo
}

// store is a watch's view of the node's pods, written by the informer's
// handler goroutine and read by the stage.
type store struct {
	mu     sync.RWMutex
	byUID  map[string]*enrich.PodInfo
	byName map[podName]uidInfo
}

func (s *store) lookup(p *enrich.PodLog) *enrich.PodInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p.UID != "" {
		return s.byUID[p.UID]
	}
	return s.byName[podName{p.Namespace, p.Pod}].info
}

func (s *store) put(o *enrich.MetadataOptions, obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	info := enrich.NewPodInfo(o, string(m.UID), m.Labels, m.Annotations, owner(m.OwnerReferences))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byUID[string(m.UID)] = info
	s.byName[podName{m.Namespace, m.Name}] = uidInfo{uid: string(m.UID), info: info}
}

func (s *store) remove(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byUID, string(m.UID))
	k := podName{m.Namespace, m.Name}
	if s.byName[k].uid == string(m.UID) {
		delete(s.byName, k)
	}
}

// owner is the pod's controller, else its first owner.
func owner(refs []metav1.OwnerReference) enrich.Owner {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return enrich.Owner{Kind: r.Kind, Name: r.Name}
		}
	}
	if len(refs) > 0 {
		return enrich.Owner{Kind: refs[0].Kind, Name: refs[0].Name}
	}
	return enrich.Owner{}
}
