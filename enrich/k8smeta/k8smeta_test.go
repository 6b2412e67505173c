package k8smeta

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/logpump/logpump/enrich"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

// cluster is a fake API server's pods, with the node each runs on. The fake
// metadata client ignores field selectors, so the cluster's reactors apply
// spec.nodeName selectors the way the API server does, from the selector the
// watcher sent: a watcher that asks for the wrong node, or for none, sees
// the wrong pods.
type cluster struct {
	t      *testing.T
	client *metadatafake.FakeMetadataClient

	mu        sync.Mutex
	nodeOf    map[types.UID]string
	selectors []string      // field selectors of every list and watch
	watching  chan struct{} // gets a value when a watch was opened
	listGate  chan struct{} // when set, lists wait for it to be closed
}

func newCluster(t *testing.T) *cluster {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		t:        t,
		client:   metadatafake.NewSimpleMetadataClient(scheme),
		nodeOf:   map[types.UID]string{},
		watching: make(chan struct{}, 16),
	}
	c.client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sel := a.(k8stesting.ListAction).GetListRestrictions().Fields
		c.mu.Lock()
		c.selectors = append(c.selectors, sel.String())
		gate := c.listGate
		c.mu.Unlock()
		if gate != nil {
			<-gate
		}
		_, obj, err := k8stesting.ObjectReaction(c.client.Tracker())(a)
		if err != nil {
			return true, nil, err
		}
		list := obj.(*metav1.List)
		kept := list.Items[:0]
		for _, it := range list.Items {
			if c.matches(sel, it.Object) {
				kept = append(kept, it)
			}
		}
		list.Items = kept
		return true, list, nil
	})
	c.client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		wa := a.(k8stesting.WatchActionImpl)
		sel := wa.GetWatchRestrictions().Fields
		c.mu.Lock()
		c.selectors = append(c.selectors, sel.String())
		c.mu.Unlock()
		w, err := c.client.Tracker().Watch(a.GetResource(), a.GetNamespace(), wa.ListOptions)
		if err != nil {
			return true, nil, err
		}
		c.watching <- struct{}{}
		return true, filter(w, func(e watch.Event) bool { return c.matches(sel, e.Object) }), nil
	})
	return c
}

// filtered is watch.Filter but for its goroutine, which also ends on Stop
// while an event waits for a reader that is gone (watch.Filter's would
// block on that send forever, a leak the goroutine check reports).
type filtered struct {
	in   watch.Interface
	out  chan watch.Event
	done chan struct{}
	once sync.Once
}

func filter(in watch.Interface, keep func(watch.Event) bool) watch.Interface {
	f := &filtered{in: in, out: make(chan watch.Event), done: make(chan struct{})}
	go func() {
		defer close(f.out)
		for e := range in.ResultChan() {
			if !keep(e) {
				continue
			}
			select {
			case f.out <- e:
			case <-f.done:
				return
			}
		}
	}()
	return f
}

func (f *filtered) Stop() {
	f.once.Do(func() {
		close(f.done)
		f.in.Stop()
	})
}

func (f *filtered) ResultChan() <-chan watch.Event { return f.out }

func (c *cluster) matches(sel fields.Selector, obj runtime.Object) bool {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return true
	}
	c.mu.Lock()
	node := c.nodeOf[m.UID]
	c.mu.Unlock()
	return sel == nil || sel.Matches(fields.Set{"spec.nodeName": node})
}

func (c *cluster) clientFunc() (metadata.Interface, error) { return c.client, nil }

// registry returns a registry whose every kubeconfig gives c's client.
func (c *cluster) registry() *Registry {
	return NewRegistry(func(string) Client { return c.clientFunc }, slog.New(slog.DiscardHandler))
}

// pod is a pod's metadata as the API serves it.
func pod(ns, name, uid string, labels, annotations map[string]string, owner ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(uid),
			Labels: labels, Annotations: annotations, OwnerReferences: owner,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
	}
}

func controller(kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID(name + "-uid"), Controller: &yes}
}

func (c *cluster) add(node string, p *metav1.PartialObjectMetadata) {
	c.t.Helper()
	c.mu.Lock()
	c.nodeOf[p.UID] = node
	c.mu.Unlock()
	if err := c.client.Tracker().Add(p); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) update(p *metav1.PartialObjectMetadata) {
	c.t.Helper()
	if err := c.client.Tracker().Update(podsResource, p, p.Namespace); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) remove(p *metav1.PartialObjectMetadata) {
	c.t.Helper()
	if err := c.client.Tracker().Delete(podsResource, p.Namespace, p.Name); err != nil {
		c.t.Fatal(err)
	}
}

// driver feeds batches to a running stage one at a time.
type driver struct {
	t    *testing.T
	in   chan *event.Batch
	next func() (*event.Batch, bool)
	stop func()
	acks *stagetest.Acks
	off  int64
}

func drive(t *testing.T, w *Watcher, node string, opts enrich.MetadataOptions) *driver {
	return driveEnv(t, node, opts, enrich.MetadataEnv{Watch: w.Watch, Log: slog.New(slog.DiscardHandler)})
}

func driveEnv(t *testing.T, node string, opts enrich.MetadataOptions, env enrich.MetadataEnv) *driver {
	stage, err := enrich.KubernetesMetadata(enrich.KubernetesOptions{Metadata: &opts}, node, env)
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, in: make(chan *event.Batch, 1), acks: stagetest.NewAcks()}
	src := func(yield func(*event.Batch) bool) {
		for b := range d.in {
			if !yield(b) {
				return
			}
		}
	}
	d.next, d.stop = iter.Pull(stage(iter.Seq[*event.Batch](src)))
	return d
}

var base = &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("pods")}}}

// send runs one batch of path through the stage and returns the attributes
// of the resource it left the stage with. It fails the test when the stage
// does not hand the batch on within a second (a stall).
func (d *driver) send(path string) map[string]string {
	d.t.Helper()
	attrs, _ := d.sendLines(path, "line")
	return attrs
}

// sendLines runs one batch of lines through the stage and returns the
// resource attributes and the records it left the stage with.
func (d *driver) sendLines(path string, lines ...string) (map[string]string, []event.Record) {
	d.t.Helper()
	b, _ := d.acks.Batch(stagetest.File{Path: path, Ino: 1, Resource: base}, d.off, lines...)
	d.off = b.End
	d.in <- b
	got := make(chan *event.Batch, 1)
	go func() {
		out, _ := d.next()
		got <- out
	}()
	select {
	case out := <-got:
		if out != b {
			d.t.Fatalf("stage yielded %p, want the batch sent %p", out, b)
		}
		attrs := map[string]string{}
		for _, kv := range out.Resource.Attrs {
			attrs[kv.Key] = kv.Value.Str
			if kv.Value.Kind != event.KindString {
				attrs[kv.Key] = stagetest.Value(kv.Value)
			}
		}
		recs := slices.Clone(out.Records)
		out.Done()
		return attrs, recs
	case <-time.After(time.Second):
		d.t.Fatal("the stage held a batch back for a second")
		return nil, nil
	}
}

// sendUntil sends batches of path until the resource has want (every key
// with its value; a value "" means the key must be absent), and returns the
// last attributes.
func (d *driver) sendUntil(path string, want map[string]string) map[string]string {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := d.send(path)
		if has(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: resource never got %v; last %v", path, want, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func has(got, want map[string]string) bool {
	for k, v := range want {
		g, ok := got[k]
		if v == "" && ok || v != "" && g != v {
			return false
		}
	}
	return true
}

func (d *driver) close() {
	close(d.in)
	d.stop()
}

const (
	webPath   = "/var/log/pods/shop_web-7f9c8d6b5-x2kqz_uid-web/nginx/0.log"
	agentPath = "/var/log/pods/kube-system_agent-8xk2p_uid-agent/agent/1.log"
	otherPath = "/var/log/pods/shop_api-5c6d7e8f9-k3m4n_uid-api/api/0.log" // a pod of node-b
	cronPath  = "/var/log/containers/report-29123456-zz9qk_batch_report-0123abcd.log"
)

func TestWatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	web := pod("shop", "web-7f9c8d6b5-x2kqz", "uid-web",
		map[string]string{"app": "web", "team": "shop", "pod-template-hash": "7f9c8d6b5"},
		map[string]string{"owner": "shop@example.com", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		controller("ReplicaSet", "web-7f9c8d6b5"))
	c.add("node-a", web)
	c.add("node-a", pod("kube-system", "agent-8xk2p", "uid-agent", map[string]string{"app": "agent"}, nil, controller("DaemonSet", "agent")))
	c.add("node-b", pod("shop", "api-5c6d7e8f9-k3m4n", "uid-api", map[string]string{"app": "api"}, nil, controller("ReplicaSet", "api-5c6d7e8f9")))
	// The first list waits: the cache is empty when the first batches come.
	gate := make(chan struct{})
	c.listGate = gate

	opts := enrich.MetadataOptions{Labels: []string{"app", "team"}, Annotations: []string{"owner"}}
	w, err := New(c.registry(), "node-a", opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.client.Actions()) != 0 {
		t.Fatalf("New made API calls: %v", c.client.Actions())
	}
	d := drive(t, w, "node-a", opts)

	// A cache miss does not stall: the batch goes on with its path
	// attributes.
	pathOnly := map[string]string{
		"service.name": "pods", "k8s.namespace.name": "shop", "k8s.pod.name": "web-7f9c8d6b5-x2kqz",
		"k8s.pod.uid": "uid-web", "k8s.container.name": "nginx", "k8s.container.restart_count": "0",
		"k8s.node.name": "node-a",
	}
	if diff := cmp.Diff(pathOnly, d.send(webPath)); diff != "" {
		t.Errorf("batch before the first list (-want +got):\n%s", diff)
	}
	close(gate)

	// Once listed, later batches of the pod get its metadata.
	want := map[string]string{
		"service.name": "pods", "k8s.namespace.name": "shop", "k8s.pod.name": "web-7f9c8d6b5-x2kqz",
		"k8s.pod.uid": "uid-web", "k8s.container.name": "nginx", "k8s.container.restart_count": "0",
		"k8s.node.name":     "node-a",
		"k8s.pod.label.app": "web", "k8s.pod.label.team": "shop", "k8s.pod.annotation.owner": "shop@example.com",
		"k8s.replicaset.name": "web-7f9c8d6b5", "k8s.deployment.name": "web",
	}
	got := d.sendUntil(webPath, map[string]string{"k8s.deployment.name": "web"})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batch after the list (-want +got):\n%s", diff)
	}
	got = d.sendUntil(agentPath, map[string]string{"k8s.daemonset.name": "agent"})
	if got["k8s.pod.label.app"] != "agent" || got["k8s.container.restart_count"] != "1" {
		t.Errorf("daemonset pod: %v", got)
	}
	<-c.watching

	// A pod added while watching: found by namespace and name for a
	// /var/log/containers path (no UID in it), with its CronJob.
	c.add("node-a", pod("batch", "report-29123456-zz9qk", "uid-report", nil, nil, controller("Job", "report-29123456")))
	got = d.sendUntil(cronPath, map[string]string{"k8s.cronjob.name": "report"})
	for k, v := range map[string]string{"k8s.job.name": "report-29123456", "k8s.pod.uid": "uid-report", "container.id": "0123abcd"} {
		if got[k] != v {
			t.Errorf("job pod: %s = %q, want %q (%v)", k, got[k], v, got)
		}
	}

	// An update replaces the labels on the following batches.
	web2 := web.DeepCopy()
	web2.Labels["team"] = "payments"
	delete(web2.Labels, "app")
	c.update(web2)
	d.sendUntil(webPath, map[string]string{"k8s.pod.label.team": "payments", "k8s.pod.label.app": ""})

	// A deleted pod's remaining lines keep its last metadata.
	c.remove(web2)
	c.remove(pod("batch", "report-29123456-zz9qk", "uid-report", nil, nil))
	// A log the stage has not seen yet shows when the deletion reached the
	// watch: it gets no metadata any more. (Each try is a new log: a log
	// seen with metadata keeps it.)
	for n := 0; ; n++ {
		got := d.send(fmt.Sprintf("/var/log/pods/shop_web-7f9c8d6b5-x2kqz_uid-web/sidecar/%d.log", n))
		if got["k8s.pod.name"] != "web-7f9c8d6b5-x2kqz" {
			t.Fatalf("sidecar: %v", got)
		}
		if got["k8s.replicaset.name"] == "" {
			break
		}
		if n == 1000 {
			t.Fatal("the deleted pod is still found")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := d.send(webPath); got["k8s.pod.label.team"] != "payments" || got["k8s.deployment.name"] != "web" {
		t.Errorf("after deletion: %v", got)
	}

	// Node filtering: the pod of node-b is never found.
	for range 3 {
		if got := d.send(otherPath); got["k8s.pod.label.app"] != "" || got["k8s.replicaset.name"] != "" {
			t.Fatalf("a pod of another node got metadata: %v", got)
		}
	}
	d.close()

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.selectors) < 2 {
		t.Errorf("%d lists and watches, want at least a list and a watch", len(c.selectors))
	}
	for _, s := range c.selectors {
		if s != "spec.nodeName=node-a" {
			t.Errorf("field selector %q, want spec.nodeName=node-a", s)
		}
	}
}

// TestWatchLifetime checks that the informer starts only when the stage is
// first pulled (building and wiring it makes no API call) and that its
// goroutines are gone when the stage's sequence returns.
func TestWatchLifetime(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	w, err := New(c.registry(), "node-a", enrich.MetadataOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := drive(t, w, "node-a", enrich.MetadataOptions{})
	time.Sleep(50 * time.Millisecond)
	if n := len(c.client.Actions()); n != 0 {
		t.Fatalf("%d API calls before the stage was pulled", n)
	}
	d.send(webPath)
	select {
	case <-c.watching:
	case <-time.After(10 * time.Second):
		t.Fatal("no watch opened after the stage was pulled")
	}
	d.close()
}

func TestWatchClientError(t *testing.T) {
	defer goleak.VerifyNone(t)
	failing := func() (metadata.Interface, error) { return nil, context.DeadlineExceeded }
	reg := NewRegistry(func(string) Client { return failing }, slog.New(slog.DiscardHandler))
	w, err := New(reg, "node-a", enrich.MetadataOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := drive(t, w, "node-a", enrich.MetadataOptions{})
	if got := d.send(webPath); got["k8s.pod.name"] != "web-7f9c8d6b5-x2kqz" {
		t.Errorf("without a client the path attributes must stay: %v", got)
	}
	d.close()
}

func TestNewNeedsNode(t *testing.T) {
	if _, err := New(NewRegistry(nil, nil), "", enrich.MetadataOptions{}); err == nil {
		t.Error("New without a node name succeeded; it would watch every pod of the cluster")
	}
}

func TestTransform(t *testing.T) {
	in := pod("shop", "web", "uid-web",
		map[string]string{"app": "web", "team": "shop", "pod-template-hash": "abc"},
		map[string]string{"owner": "x", "logpump.io/parser": "json", "kubectl.kubernetes.io/last-applied-configuration": "{...}"})
	out, err := transform(in)
	if err != nil {
		t.Fatal(err)
	}
	m := out.(*metav1.PartialObjectMetadata)
	if m.ManagedFields != nil {
		t.Error("managedFields kept")
	}
	if diff := cmp.Diff(map[string]string{"app": "web", "team": "shop", "pod-template-hash": "abc"}, m.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"owner": "x", "logpump.io/parser": "json"}, m.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}
