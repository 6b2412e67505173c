package k8smeta

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/logpump/logpump/enrich"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/parse"
)

// calls counts the list and watch calls the fake API server got, by verb
// and resource ("list pods").
func (c *cluster) calls() map[string]int {
	n := map[string]int{}
	for _, a := range c.client.Actions() {
		if v := a.GetVerb(); v == "list" || v == "watch" {
			n[v+" "+a.GetResource().Resource]++
		}
	}
	return n
}

// waitCalls waits until the API server got at least want of each call.
func (c *cluster) waitCalls(want map[string]int) map[string]int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.calls()
		ok := true
		for k, v := range want {
			if got[k] < v {
				ok = false
			}
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("API calls %v, want at least %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func object(kind, name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
	}
}

// TestRegistryShares: the kubernetes processors of several pipelines share
// one watch per (kubeconfig, node, resource): one list and one watch of the
// node's pods however many processors run; a held registry keeps the watches
// of processors that stop for the ones that replace them (a reload lists
// nothing again); the last user stops them.
func TestRegistryShares(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	c.add("node-a", pod("shop", "web-7f9c8d6b5-x2kqz", "uid-web", map[string]string{"app": "web"}, nil))
	if err := c.client.Tracker().Add(object("Namespace", "shop", map[string]string{"team": "shop"}, nil)); err != nil {
		t.Fatal(err)
	}
	reg := c.registry()
	labels := enrich.MetadataOptions{Labels: []string{"app"}}
	nsLabels := enrich.MetadataOptions{NamespaceLabels: []string{"team"}}
	w1, _ := New(reg, "node-a", labels)
	w2, _ := New(reg, "node-a", nsLabels)
	w3, _ := New(reg, "node-a", labels)
	if got := c.calls(); len(got) != 0 {
		t.Fatalf("New made API calls: %v", got)
	}
	_, stop1 := w1.Watch()
	_, stop2 := w2.Watch()
	md3, stop3 := w3.Watch()
	want := map[string]int{"list pods": 1, "watch pods": 1, "list namespaces": 1, "watch namespaces": 1}
	c.waitCalls(want)
	if n := reg.Watches(); n != 2 {
		t.Errorf("%d watches for three processors of one node, want 2 (pods, namespaces)", n)
	}
	// The shared watch serves every processor.
	waitFor(t, func() bool { return md3.Pod(&enrich.PodLog{UID: "uid-web"}) != nil })

	// A reload: the old processors stop, their replacements start, while
	// the registry is held.
	release := reg.Hold()
	stop1()
	stop2()
	stop3()
	stop1() // idempotent
	if n := reg.Watches(); n != 2 {
		t.Errorf("held registry: %d watches, want 2 kept", n)
	}
	_, stop4 := w1.Watch()
	_, stop5 := w2.Watch()
	release()
	if n := reg.Watches(); n != 2 {
		t.Errorf("after the reload: %d watches, want 2", n)
	}
	if got := c.calls(); got["list pods"] != 1 || got["list namespaces"] != 1 {
		t.Errorf("API calls %v: a reload listed again", got)
	}

	// Another node is another watch.
	w6, _ := New(reg, "node-b", labels)
	_, stop6 := w6.Watch()
	c.waitCalls(map[string]int{"list pods": 2})
	stop6()

	stop4()
	if n := reg.Watches(); n != 2 {
		t.Errorf("%d watches while a processor still uses both, want 2", n)
	}
	stop5()
	if n := reg.Watches(); n != 0 {
		t.Errorf("%d watches after the last user stopped, want 0", n)
	}
	got := c.calls()
	want = map[string]int{"list pods": 2, "watch pods": 2, "list namespaces": 1, "watch namespaces": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d calls, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNamespaceAndNodeMetadata: namespace labels and annotations and the
// node's labels reach the resource, from metadata watches of namespaces and
// of the agent's node.
func TestNamespaceAndNodeMetadata(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	c.add("node-a", pod("shop", "web-7f9c8d6b5-x2kqz", "uid-web", nil, nil))
	for _, o := range []*metav1.PartialObjectMetadata{
		object("Namespace", "shop", map[string]string{"team": "payments", "env": "prod"}, map[string]string{"owner": "ops@example.com"}),
		object("Node", "node-a", map[string]string{"topology.kubernetes.io/zone": "eu-1a", "kubernetes.io/os": "linux"}, nil),
	} {
		if err := c.client.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	opts := enrich.MetadataOptions{NamespaceLabels: []string{"team"}, NamespaceAnnotations: []string{"*"}, NodeLabels: []string{"topology.kubernetes.io/zone"}}
	w, _ := New(c.registry(), "node-a", opts)
	d := drive(t, w, "node-a", opts)
	got := d.sendUntil(webPath, map[string]string{"k8s.namespace.label.team": "payments", "k8s.node.label.topology.kubernetes.io/zone": "eu-1a"})
	if got["k8s.namespace.annotation.owner"] != "ops@example.com" || got["k8s.namespace.label.env"] != "" || got["k8s.node.label.kubernetes.io/os"] != "" {
		t.Errorf("resource %v", got)
	}
	d.close()
	for _, a := range c.client.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "nodes" {
			if sel := a.(k8stesting.ListAction).GetListRestrictions().Fields.String(); sel != "metadata.name=node-a" {
				t.Errorf("nodes listed with field selector %q, want metadata.name=node-a", sel)
			}
		}
	}
}

// TestAnnotationsOnRunningPipeline flips a pod's annotations through the API
// while the stage runs: every line is accounted for by sequence number
// (passed, or counted as excluded), the exclusion takes effect for later
// lines and ends when the annotation goes, and the parser annotation
// parses the lines after it.
func TestAnnotationsOnRunningPipeline(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	web := pod("shop", "web-7f9c8d6b5-x2kqz", "uid-web", nil, nil)
	c.add("node-a", web)
	var mu sync.Mutex
	dropped := 0
	opts := enrich.MetadataOptions{}
	w, _ := New(c.registry(), "node-a", opts)
	d := driveEnv(t, "node-a", opts, enrich.MetadataEnv{
		Watch: w.Watch,
		Log:   slog.New(slog.DiscardHandler),
		Dropped: func(reason string, n int) {
			mu.Lock()
			defer mu.Unlock()
			if reason == "excluded" {
				dropped += n
			}
		},
		Parser: func(name string) (*parse.Parser, error) {
			return parse.NewJSONParser(parse.JSONOptions{}, nil, nil)
		},
	})
	seq := 0
	var passed []int
	// send sends one line and reports whether it passed.
	send := func() (bool, []event.Record) {
		_, recs := d.sendLines(webPath, fmt.Sprintf(`{"seq":%d}`, seq))
		seq++
		for _, r := range recs {
			var n int
			fmt.Sscanf(r.Body.Str, `{"seq":%d}`, &n)
			passed = append(passed, n)
		}
		return len(recs) == 1, recs
	}
	d.sendUntil(webPath, map[string]string{"k8s.replicaset.name": ""}) // the watch is up
	send()

	set := func(kv ...string) {
		p := web.DeepCopy()
		p.Annotations = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
		c.update(p)
	}
	set("logpump.io/exclude", "true")
	waitFor(t, func() bool { ok, _ := send(); return !ok })
	send()
	set("logpump.io/exclude", "false", "logpump.io/parser", "json")
	waitFor(t, func() bool {
		ok, recs := send()
		if !ok {
			return false
		}
		_, parsed := event.Lookup(recs[0].Attrs, "seq")
		return parsed
	})
	d.close()

	mu.Lock()
	defer mu.Unlock()
	if dropped < 2 {
		t.Errorf("%d lines excluded, want at least 2", dropped)
	}
	if len(passed)+dropped != seq {
		t.Errorf("%d lines sent, %d passed + %d excluded: lines missing or duplicated", seq, len(passed), dropped)
	}
	for i := 1; i < len(passed); i++ {
		if passed[i] <= passed[i-1] {
			t.Errorf("sequence out of order or duplicated: %v", passed)
			break
		}
	}
}

// TestOwnerLookup: the Deployment and CronJob names come from the
// ReplicaSet's and the Job's owners, looked up once each through the API
// (no ReplicaSet or Job informer); until an answer arrives, or when the
// lookup fails, they are inferred from the names.
func TestOwnerLookup(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	rollout := metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: "r", Controller: ptr(true)}
	deployment := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api", UID: "d", Controller: ptr(true)}
	cron := metav1.OwnerReference{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", UID: "c", Controller: ptr(true)}
	for _, o := range []*metav1.PartialObjectMetadata{
		withOwner(object("ReplicaSet", "web-7f9c8d6b5", nil, nil), "shop", "apps/v1", rollout),
		withOwner(object("ReplicaSet", "api-5c6d7e8f9", nil, nil), "shop", "apps/v1", deployment),
		withOwner(object("Job", "nightly-29123456", nil, nil), "batch", "batch/v1", cron),
		withOwner(object("Job", "migrate-12345", nil, nil), "batch", "batch/v1"),
	} {
		if err := c.client.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	c.add("node-a", pod("shop", "web-7f9c8d6b5-x2kqz", "uid-web", map[string]string{"pod-template-hash": "7f9c8d6b5"}, nil, controller("ReplicaSet", "web-7f9c8d6b5")))
	c.add("node-a", pod("shop", "api-5c6d7e8f9-k3m4n", "uid-api", nil, nil, controller("ReplicaSet", "api-5c6d7e8f9")))
	c.add("node-a", pod("batch", "nightly-29123456-aaaaa", "uid-nightly", nil, nil, controller("Job", "nightly-29123456")))
	c.add("node-a", pod("batch", "migrate-12345-bbbbb", "uid-migrate", nil, nil, controller("Job", "migrate-12345")))
	c.add("node-a", pod("batch", "gone-777-ccccc", "uid-gone", nil, nil, controller("Job", "gone-777"))) // its Job is not found

	w, _ := New(c.registry(), "node-a", enrich.MetadataOptions{})
	md, stop := w.Watch()
	defer stop()
	info := func(uid string) map[string]string {
		p := md.Pod(&enrich.PodLog{UID: uid})
		if p == nil {
			return nil
		}
		got := map[string]string{}
		for _, kv := range enrich.NewPodInfo(&enrich.MetadataOptions{}, p, nil, nil).Attrs {
			got[kv.Key] = kv.Value.Str
		}
		return got
	}
	known := func(uid string) bool {
		p := md.Pod(&enrich.PodLog{UID: uid})
		return p != nil && p.WorkloadKnown
	}
	waitFor(t, func() bool {
		return known("uid-web") && known("uid-api") && known("uid-nightly") && known("uid-migrate") && md.Pod(&enrich.PodLog{UID: "uid-gone"}) != nil
	})
	for uid, want := range map[string]map[string]string{
		"uid-web":     {"k8s.pod.uid": "uid-web", "k8s.replicaset.name": "web-7f9c8d6b5"}, // a Rollout's: no deployment
		"uid-api":     {"k8s.pod.uid": "uid-api", "k8s.replicaset.name": "api-5c6d7e8f9", "k8s.deployment.name": "api"},
		"uid-nightly": {"k8s.pod.uid": "uid-nightly", "k8s.job.name": "nightly-29123456", "k8s.cronjob.name": "nightly"},
		"uid-migrate": {"k8s.pod.uid": "uid-migrate", "k8s.job.name": "migrate-12345"},                     // no CronJob
		"uid-gone":    {"k8s.pod.uid": "uid-gone", "k8s.job.name": "gone-777", "k8s.cronjob.name": "gone"}, // inferred
	} {
		if diff := cmp.Diff(want, info(uid)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", uid, diff)
		}
	}
	gets := map[string]int{}
	for _, a := range c.client.Actions() {
		switch a.GetVerb() {
		case "get":
			gets[a.GetResource().Resource]++
		case "list", "watch":
			if r := a.GetResource().Resource; r != "pods" {
				t.Errorf("%s of %s: owners must be looked up one by one", a.GetVerb(), r)
			}
		}
	}
	if gets["replicasets"] != 2 || gets["jobs"] != 3 {
		t.Errorf("gets %v, want one per ReplicaSet (2) and Job (3)", gets)
	}
}

func ptr[T any](v T) *T { return &v }

func withOwner(o *metav1.PartialObjectMetadata, ns, apiVersion string, refs ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	o.Namespace, o.APIVersion, o.OwnerReferences = ns, apiVersion, refs
	return o
}
