// Package k8smeta watches the metadata of one node's pods (and, when asked,
// of the cluster's namespaces and of the node itself) through the
// Kubernetes API for the kubernetes processor ([enrich.KubernetesMetadata]).
//
// It uses client-go metadata informers (the one of
// k8s.io/client-go/metadata/metadatainformer, built without that package's
// dependencies): the API server sends PartialObjectMetadata (names, labels,
// annotations, owners; no spec or status). Pods are restricted by the field
// selector spec.nodeName=<node> to the pods of the agent's node, the node
// by metadata.name=<node>; namespaces are listed cluster-wide (a few hundred
// bytes each). A transform drops managedFields and the
// kubectl.kubernetes.io/last-applied-configuration annotation before an
// object is stored. Lookups read maps kept by the informers' event handlers
// under a read lock: they never wait for the API.
//
// A [Registry] shares the informers: every kubernetes processor of the agent
// that asks for the same (kubeconfig, node, resource) uses one watch. A
// watch starts with its first user and stops when the last one lets go;
// [Registry.Hold] keeps the watches of a configuration being replaced so
// that a reload does not list the cluster again.
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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
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

// DynamicClient returns the client of the pod watch that reads container
// images (full pod objects); called like [Client].
type DynamicClient func() (dynamic.Interface, error)

// restConfig reads the in-cluster configuration (the pod's service account
// token and CA), or the kubeconfig file at path when path is not empty.
func restConfig(kubeconfig string) (*rest.Config, error) {
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
	return cfg, nil
}

// Config returns the Client of the in-cluster configuration, or of the
// kubeconfig file at path when path is not empty.
func Config(kubeconfig string) Client {
	return func() (metadata.Interface, error) {
		cfg, err := restConfig(kubeconfig)
		if err != nil {
			return nil, err
		}
		c, err := metadata.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("create kubernetes metadata client: %w", err)
		}
		return c, nil
	}
}

// DynamicConfig is [Config] for the DynamicClient.
func DynamicConfig(kubeconfig string) DynamicClient {
	return func() (dynamic.Interface, error) {
		cfg, err := restConfig(kubeconfig)
		if err != nil {
			return nil, err
		}
		c, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("create kubernetes client: %w", err)
		}
		return c, nil
	}
}

var (
	podsResource       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	nodesResource      = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
)

// lastApplied is the annotation kubectl apply writes: the whole object as
// JSON, often kilobytes, never wanted as an attribute.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Registry holds the watches of one agent, shared by its kubernetes
// processors. Its zero value is not usable; use [NewRegistry]. It is safe
// for concurrent use.
type Registry struct {
	log *slog.Logger
	// client and dynamic make the clients of a kubeconfig ("" in-cluster).
	client  func(kubeconfig string) Client
	dynamic func(kubeconfig string) DynamicClient

	mu      sync.Mutex
	watches map[watchKey]*sharedWatch
	holds   int
}

type watchKey struct {
	kubeconfig, node string
	resource         string // pods, pods+spec (with container images), namespaces, nodes
}

// sharedWatch is one informer and what it found.
type sharedWatch struct {
	key   watchKey
	users int
	store *store
	stop  func()
}

// NewRegistry returns an empty registry. client makes the Client of a
// kubeconfig path ("" for the in-cluster configuration); nil uses [Config].
// It does no I/O.
func NewRegistry(client func(kubeconfig string) Client, log *slog.Logger) *Registry {
	if client == nil {
		client = Config
	}
	if log == nil {
		log = slog.Default()
	}
	return &Registry{log: log, client: client, dynamic: DynamicConfig, watches: map[watchKey]*sharedWatch{}}
}

// SetDynamic replaces the maker of the clients of the pod watch that reads
// container images (tests give a fake). Call it before any watch starts.
func (r *Registry) SetDynamic(dynamic func(kubeconfig string) DynamicClient) { r.dynamic = dynamic }

// Hold keeps every watch running, even with no user, until release is
// called; then the watches without users stop. The agent holds its
// registry while a reload replaces pipelines, so that the replacements
// reuse the watches of the pipelines they replace.
func (r *Registry) Hold() (release func()) {
	r.mu.Lock()
	r.holds++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.holds--
			var idle []*sharedWatch
			if r.holds == 0 {
				for k, w := range r.watches {
					if w.users == 0 {
						idle = append(idle, w)
						delete(r.watches, k)
					}
				}
			}
			r.mu.Unlock()
			for _, w := range idle {
				w.stop()
			}
		})
	}
}

// Watches returns how many watches run (for tests and /debug).
func (r *Registry) Watches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.watches)
}

// acquire returns the watch of k, started if it is new.
func (r *Registry) acquire(k watchKey) *sharedWatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.watches[k]; ok {
		w.users++
		return w
	}
	w := &sharedWatch{key: k, users: 1, store: newStore()}
	var ok bool
	w.stop, ok = r.start(k, w.store)
	if ok {
		// A watch that could not start is not shared: the next processor
		// (a reload's, after the kubeconfig was fixed) tries again.
		r.watches[k] = w
	}
	return w
}

// release lets go of w; the last user stops it unless the registry is held.
func (r *Registry) release(w *sharedWatch) {
	r.mu.Lock()
	w.users--
	stop := w.users == 0 && r.holds == 0 && r.watches[w.key] == w
	if stop {
		delete(r.watches, w.key)
	}
	r.mu.Unlock()
	if stop {
		w.stop()
	}
}

// start runs the informer of k in the background; the returned function
// stops it and waits for its goroutines. ok is false when it could not start
// (logged).
func (r *Registry) start(k watchKey, s *store) (stop func(), ok bool) {
	log := r.log.With("component", "k8smeta", "node", k.node, "resource", k.resource)
	unavailable := func(err error) (func(), bool) {
		log.Error("kubernetes metadata unavailable; records get the attributes of their log path only", "error", err)
		return func() {}, false
	}
	client, err := r.client(k.kubeconfig)()
	if err != nil {
		return unavailable(err)
	}
	var (
		inf      cache.SharedIndexInformer
		selector string
		put      func(any)
		own      *owners
		xform    cache.TransformFunc = transform
	)
	switch k.resource {
	case "pods":
		selector, put = FieldSelector(k.node), s.putPod
		inf = newInformer(client.Resource(podsResource).Namespace(metav1.NamespaceAll), client, selector, &metav1.PartialObjectMetadata{})
	case "pods+spec":
		dyn, err := r.dynamic(k.kubeconfig)()
		if err != nil {
			return unavailable(err)
		}
		selector, put, xform = FieldSelector(k.node), s.putPod, podImages
		inf = newInformer(dyn.Resource(podsResource).Namespace(metav1.NamespaceAll), dyn, selector, &unstructured.Unstructured{})
	case "namespaces":
		put = s.putObject
		inf = newInformer(client.Resource(namespacesResource).Namespace(metav1.NamespaceAll), client, selector, &metav1.PartialObjectMetadata{})
	case "nodes":
		selector, put = fields.OneTermEqualSelector("metadata.name", k.node).String(), s.putObject
		inf = newInformer(client.Resource(nodesResource).Namespace(metav1.NamespaceAll), client, selector, &metav1.PartialObjectMetadata{})
	}
	if k.resource == "pods" || k.resource == "pods+spec" {
		own = newOwners(client, log, s.resolved)
		s.owners = own
	}
	if err := inf.SetTransform(xform); err != nil {
		return unavailable(fmt.Errorf("set informer transform: %w", err))
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    put,
		UpdateFunc: func(_, obj any) { put(obj) },
		DeleteFunc: s.remove,
	}); err != nil {
		return unavailable(fmt.Errorf("add informer handler: %w", err))
	}
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logr.FromSlogHandler(log.Handler())))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if own != nil {
			var wg sync.WaitGroup
			wg.Go(func() { own.run(ctx) })
			defer wg.Wait()
		}
		inf.RunWithContext(ctx)
	}()
	log.Info("watching kubernetes metadata", "field_selector", selector)
	return func() {
		cancel()
		<-done
	}, true
}

// Watcher is the watch of one kubernetes processor: the pods of its node,
// and the namespaces and the node when its options copy their metadata.
// Its Watch method is an [enrich.WatchPods].
type Watcher struct {
	reg        *Registry
	kubeconfig string
	node       string
	opts       enrich.MetadataOptions
}

// New returns the watcher of the pods on node for a processor with opts,
// sharing reg's watches. It does no I/O: the client is created when a watch
// first starts. node must not be empty (an empty node would watch every pod
// of the cluster).
func New(reg *Registry, node string, opts enrich.MetadataOptions) (*Watcher, error) {
	if node == "" {
		return nil, fmt.Errorf("create pod watcher: no node name (set node_name or K8S_NODE_NAME)")
	}
	return &Watcher{reg: reg, kubeconfig: opts.Kubeconfig, node: node, opts: opts}, nil
}

// FieldSelector is the list and watch restriction of a watch of node's pods.
func FieldSelector(node string) string {
	return fields.OneTermEqualSelector("spec.nodeName", node).String()
}

// Watch takes the registry's watches the options need (starting those not
// running) and returns at once with a view of them and the function that
// lets go of them (see [enrich.WatchPods]). Nothing is found until a
// watch's first list arrived; list and watch failures are logged and
// retried with the informer's backoff. When the client cannot be created
// the error is logged and nothing is ever found: the records keep their path
// attributes.
func (w *Watcher) Watch() (enrich.Metadata, func()) {
	v := &view{}
	key := watchKey{kubeconfig: w.kubeconfig, node: w.node}
	var taken []*sharedWatch
	take := func(resource string) *store {
		k := key
		k.resource = resource
		sw := w.reg.acquire(k)
		taken = append(taken, sw)
		return sw.store
	}
	if w.opts.ContainerImage {
		// Full pod objects carry the spec with the images; this watch
		// replaces the metadata-only one for this processor.
		v.pods = take("pods+spec")
	} else {
		v.pods = take("pods")
	}
	if w.opts.WantNamespaces() {
		v.namespaces = take("namespaces")
	}
	if w.opts.WantNode() {
		v.nodes = take("nodes")
		v.node = w.node
	}
	var once sync.Once
	return v, func() {
		once.Do(func() {
			for _, sw := range taken {
				w.reg.release(sw)
			}
		})
	}
}

// view is one processor's [enrich.Metadata].
type view struct {
	pods, namespaces, nodes *store
	node                    string
}

func (v *view) Pod(p *enrich.PodLog) *enrich.PodMeta { return v.pods.pod(p) }

func (v *view) Namespace(name string) *enrich.ObjectMeta {
	if v.namespaces == nil {
		return nil
	}
	return v.namespaces.object(name)
}

func (v *view) Node() *enrich.ObjectMeta {
	if v.nodes == nil {
		return nil
	}
	return v.nodes.object(v.node)
}

// listWatcher is the part of a metadata or dynamic client's resource an
// informer uses.
type listWatcher[T runtime.Object] interface {
	List(ctx context.Context, o metav1.ListOptions) (T, error)
	Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error)
}

// newInformer is metadatainformer.NewFilteredMetadataInformer without
// resync, built here because that package's return type
// (informers.GenericInformer) links client-go's typed informers of every
// API group: 28 MB more binary (36 to 64 MB) for nothing the watch uses.
func newInformer[T runtime.Object](res listWatcher[T], client any, fieldSelector string, example runtime.Object) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fieldSelector
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fieldSelector
			return res.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), example, 0, cache.Indexers{})
}

// transform strips what the store does not need from an object before the
// informer keeps it: managedFields and the last-applied-configuration
// annotation. Other labels and annotations stay: the watch is shared by
// processors that may copy any of them, and the steering annotations are
// read from them.
func transform(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	m.ManagedFields = nil
	delete(m.Annotations, lastApplied)
	return m, nil
}

type podName struct{ namespace, name string }

// store is a watch's view of its objects, written by the informer's handler
// goroutine and read by the stages.
type store struct {
	owners *owners // pods: looks up ReplicaSets' and Jobs' owners

	mu      sync.RWMutex
	byUID   map[string]*enrich.PodMeta
	byName  map[podName]*enrich.PodMeta
	objects map[string]*enrich.ObjectMeta // namespaces and nodes, by name
}

func newStore() *store {
	return &store{byUID: map[string]*enrich.PodMeta{}, byName: map[podName]*enrich.PodMeta{}, objects: map[string]*enrich.ObjectMeta{}}
}

func (s *store) pod(p *enrich.PodLog) *enrich.PodMeta {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p.UID != "" {
		return s.byUID[p.UID]
	}
	return s.byName[podName{p.Namespace, p.Pod}]
}

func (s *store) object(name string) *enrich.ObjectMeta {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.objects[name]
}

func (s *store) putPod(obj any) {
	var (
		m      *metav1.ObjectMeta
		images map[string]string
	)
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		m = &o.ObjectMeta
	case *podObject:
		m, images = &o.ObjectMeta, o.images
	default:
		return
	}
	p := &enrich.PodMeta{
		UID: string(m.UID), Namespace: m.Namespace, Name: m.Name,
		Labels: m.Labels, Annotations: m.Annotations, Owner: owner(m.OwnerReferences), Images: images,
	}
	if s.owners != nil && (p.Owner.Kind == "ReplicaSet" || p.Owner.Kind == "Job") {
		if r, ok := s.owners.lookup(ownerKey{p.Namespace, p.Owner}); ok && r.ok {
			p.Workload, p.WorkloadKnown = r.workload, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byUID[p.UID] = p
	s.byName[podName{m.Namespace, m.Name}] = p
}

// resolved gives the pods owned by k their workload, as new PodMetas.
func (s *store) resolved(k ownerKey, r ownerResult) {
	if !r.ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, p := range s.byUID {
		if p.Namespace != k.namespace || p.Owner != k.owner || p.WorkloadKnown {
			continue
		}
		q := *p
		q.Workload, q.WorkloadKnown = r.workload, true
		s.byUID[uid] = &q
		if n := (podName{q.Namespace, q.Name}); s.byName[n] == p {
			s.byName[n] = &q
		}
	}
}

func (s *store) putObject(obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	o := &enrich.ObjectMeta{Labels: m.Labels, Annotations: m.Annotations}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[m.Name] = o
}

func (s *store) remove(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	var m *metav1.ObjectMeta
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		m = &o.ObjectMeta
	case *podObject:
		m = &o.ObjectMeta
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Namespace == "" {
		delete(s.objects, m.Name)
		return
	}
	delete(s.byUID, string(m.UID))
	k := podName{m.Namespace, m.Name}
	if p := s.byName[k]; p != nil && p.UID == string(m.UID) {
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

// podObject is what the image-reading pod watch keeps of a pod: its
// metadata (without managedFields and last-applied-configuration) and its
// containers' images, not the spec and status.
type podObject struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	images map[string]string // container name -> image reference
}

func (p *podObject) DeepCopyObject() runtime.Object {
	q := *p
	q.ObjectMeta = *p.ObjectMeta.DeepCopy()
	return &q
}

// podImages turns a full pod into a podObject before the informer keeps it.
func podImages(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	p := &podObject{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
	p.Name, p.Namespace, p.UID, p.ResourceVersion = u.GetName(), u.GetNamespace(), u.GetUID(), u.GetResourceVersion()
	p.Labels, p.Annotations, p.OwnerReferences = u.GetLabels(), u.GetAnnotations(), u.GetOwnerReferences()
	delete(p.Annotations, lastApplied)
	for _, field := range []string{"initContainers", "containers", "ephemeralContainers"} {
		list, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
		for _, c := range list {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			name, _ := m["name"].(string)
			image, _ := m["image"].(string)
			if name == "" || image == "" {
				continue
			}
			if p.images == nil {
				p.images = map[string]string{}
			}
			p.images[name] = image
		}
	}
	return p, nil
}
