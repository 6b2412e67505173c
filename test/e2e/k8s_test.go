package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/logpump/logpump/test/e2e/kapi"
	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// The TestK8s* tests run against a real kube-apiserver and etcd (package
// kapi). `make k8s` (.ci/k8s.sh) runs them; `make e2e` leaves them out.

var (
	k8smetaOnce sync.Once
	k8smetaPath string
	k8smetaErr  error
)

// k8smetaBin is the agent built with -tags k8smeta (as the image is), built
// once per test binary; LOGPUMP_E2E_K8SMETA_BIN names one built elsewhere.
func k8smetaBin(t *testing.T) string {
	t.Helper()
	k8smetaOnce.Do(func() {
		if bin := os.Getenv("LOGPUMP_E2E_K8SMETA_BIN"); bin != "" {
			k8smetaPath = bin
			return
		}
		dir, err := os.MkdirTemp("", "logpump-e2e-k8smeta-")
		if err != nil {
			k8smetaErr = err
			return
		}
		k8smetaPath = filepath.Join(dir, "logpump")
		root, _ := filepath.Abs(filepath.Join("..", ".."))
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace,k8smeta", "-o", k8smetaPath, "github.com/logpump/logpump/cmd/agent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			k8smetaErr = fmt.Errorf("build the agent with -tags k8smeta: %v\n%s", err, out)
		}
	})
	if k8smetaErr != nil {
		t.Fatal(k8smetaErr)
	}
	return k8smetaPath
}

// k8sNode is the node the agent runs on; otherNode has pods it must not see.
const (
	k8sNode   = "node-a"
	otherNode = "node-b"
)

// podsEnv is an agent tailing pod logs under dir/var/log/pods with the
// kubernetes processor reading metadata with a kubeconfig.
type podsEnv struct {
	*env
	c    *kapi.Cluster
	root string // dir/var/log/pods
}

// k8sConfig is the agent's configuration: %[1]s the state directory,
// %[2]s the pod log root, %[3]s the kubeconfig, %[4]s the receiver.
const k8sConfig = `state_dir: %[1]s
shutdown_timeout: 10s
log_level: debug
resource: {service.name: k8s-e2e}
checkpoints: {flush_interval: 200ms}
sources:
  pods:
    type: file
    include: [%[2]s/*/*/*.log]
    start_at: beginning
    flush_timeout: 200ms
processors:
  cri: {type: container}
  pod:
    type: kubernetes
    node_name: ` + k8sNode + `
    metadata:
      labels: [app, team, version]
      annotations: [owner]
      namespace_labels: [team]
      node_labels: [topology.kubernetes.io/zone]
      kubeconfig: %[3]s
exporters:
  collector:
    type: otlp_grpc
    endpoint: %[4]s
    tls: {insecure: true}
    batch: {max_records: 1000, timeout: 100ms}
    retry: {initial_interval: 100ms, max_interval: 1s}
pipelines:
  pods:
    sources: [pods]
    processors: [cri, pod]
    exporters: [collector]
`

func newPodsEnv(t *testing.T, c *kapi.Cluster, kubeconfig string) *podsEnv {
	t.Helper()
	e := newEnv(t, setup{})
	e.bin = k8smetaBin(t)
	p := &podsEnv{env: e, c: c, root: filepath.Join(e.dir, "var", "log", "pods")}
	cfg := fmt.Sprintf(k8sConfig, e.stateDir, p.root, kubeconfig, e.sink.GRPCEndpoint())
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testPod is a pod object (it never runs: there is no kubelet) and its
// container log on this machine.
type testPod struct {
	ns, name, container string
	uid                 types.UID
	node                string
	labels, annotations map[string]string
	owner               *metav1.OwnerReference
}

// create creates the pod through the API and fills in its UID.
func (p *testPod) create(t *testing.T, c *kapi.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels, Annotations: p.annotations},
		Spec: corev1.PodSpec{
			NodeName:   p.node,
			Containers: []corev1.Container{{Name: p.container, Image: "registry.example/app:1.0"}},
		},
	}
	if p.owner != nil {
		obj.OwnerReferences = []metav1.OwnerReference{*p.owner}
	}
	got, err := c.Client.CoreV1().Pods(p.ns).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", p.ns, p.name, err)
	}
	p.uid = got.UID
}

// path is the pod's container log, as the kubelet names it.
func (p *testPod) path(root string) string {
	return filepath.Join(root, fmt.Sprintf("%s_%s_%s", p.ns, p.name, p.uid), p.container, "0.log")
}

// write appends CRI lines "<tag> seq=N" for seq in [from, to) to the
// pod's container log (another container's when container is not empty).
func (p *testPod) write(t *testing.T, root, container, tag string, from, to int) {
	t.Helper()
	path := p.path(root)
	if container != "" {
		path = filepath.Join(filepath.Dir(filepath.Dir(path)), container, "0.log")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "2026-12-07T11:00:00.%09dZ stdout F %s seq=%010d\n", i, tag, i)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func replicaSetOwner(name string) *metav1.OwnerReference {
	yes := true
	return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name, UID: types.UID(name + "-uid"), Controller: &yes}
}

var seqRE = regexp.MustCompile(`^(\S+) seq=(\d+)$`)

// byTag groups what the sink got by the line's tag: tag -> seq -> the
// resources of every copy.
func byTag(t *testing.T, recs []otlpsink.Record) map[string]map[int][]map[string]any {
	t.Helper()
	out := map[string]map[int][]map[string]any{}
	for _, r := range recs {
		m := seqRE.FindStringSubmatch(r.Body)
		if m == nil {
			t.Errorf("unexpected record body %q", r.Body)
			continue
		}
		seq, err := strconv.Atoi(m[2])
		if err != nil {
			t.Fatal(err)
		}
		if out[m[1]] == nil {
			out[m[1]] = map[int][]map[string]any{}
		}
		out[m[1]][seq] = append(out[m[1]][seq], r.Resource)
	}
	return out
}

// waitProbe writes lines tagged tag to the probe pod's log until one
// arrives whose resource has k8s.pod.label.version = version: the agent's
// watch then has every change made before the probe was given that label
// (watch events come in the order of the changes). fail, when it returns
// an error, ends the wait (the agent reported why it cannot watch).
func (p *podsEnv) waitProbe(t *testing.T, probe *testPod, version string, fail func() error) error {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tag := "probe-" + version
	for i := 0; ; i++ {
		probe.write(t, p.root, "", tag, i, i+1)
		for _, r := range p.sink.Records() {
			if strings.HasPrefix(r.Body, tag+" ") && r.Resource["k8s.pod.label.version"] == version {
				return nil
			}
		}
		if fail != nil {
			if err := fail(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe pod's lines never got label version=%s in 2 minutes", version)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setLabel changes a label of a pod through the API.
func setLabel(t *testing.T, c *kapi.Cluster, p *testPod, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, value)
	if _, err := c.Client.CoreV1().Pods(p.ns).Patch(ctx, p.name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("label pod %s: %v", p.name, err)
	}
}

// shippedRBAC applies deploy/kubernetes/metadata/rbac.yaml (the namespace
// of its service account first) and returns a kubeconfig of that service
// account.
func shippedRBAC(t *testing.T, c *kapi.Cluster) string {
	t.Helper()
	c.CreateNamespace(t, "logpump")
	c.Apply(t, filepath.Join("..", "..", "deploy", "kubernetes", "metadata", "rbac.yaml"))
	return c.KubeconfigFor(t, "logpump", "logpump")
}

// TestK8sMetadata runs the agent built with -tags k8smeta against a real
// API server with only the shipped service account role: pods created
// through the API with labels, annotations and a ReplicaSet owner, their
// logs written as the kubelet lays them out. Every record of a known pod
// carries what the configuration asks for (and nothing it does not); a pod
// deleted while its log is still written keeps its metadata for the later
// lines, while a log of it first seen after the deletion gets none; a pod
// of another node never gets metadata (the field selector). Lines are
// counted by sequence number: none missing, duplicates reported.
func TestK8sMetadata(t *testing.T) {
	c := kapi.Start(t)
	kc := shippedRBAC(t, c)
	c.CreateNamespace(t, "shop")
	pods := []*testPod{
		{ns: "shop", name: "web-7f9c8d6b5-x2kqz", container: "nginx", node: k8sNode,
			labels:      map[string]string{"app": "web", "team": "shop", "pod-template-hash": "7f9c8d6b5", "secret-label": "no"},
			annotations: map[string]string{"owner": "shop@example.com", "not-copied": "no"},
			owner:       replicaSetOwner("web-7f9c8d6b5")},
		{ns: "shop", name: "api-5c6d7e8f9-k3m4n", container: "api", node: k8sNode,
			labels:      map[string]string{"app": "api", "pod-template-hash": "5c6d7e8f9"},
			annotations: map[string]string{"owner": "api@example.com"},
			owner:       replicaSetOwner("api-5c6d7e8f9")},
		// A pod of another node, whose log is (wrongly) on this one: the
		// agent's watch must not see it.
		{ns: "shop", name: "other-6b7c8d9e0-p5q6r", container: "other", node: otherNode,
			labels: map[string]string{"app": "other"}, annotations: map[string]string{"owner": "x"},
			owner: replicaSetOwner("other-6b7c8d9e0")},
	}
	web, api, other := pods[0], pods[1], pods[2]
	for _, p := range pods {
		p.create(t, c)
	}
	// The probe is created last: once its metadata is seen, so is every
	// pod's above.
	probe := &testPod{ns: "shop", name: "probe", container: "probe", node: k8sNode, labels: map[string]string{"version": "1"}}
	probe.create(t, c)

	e := newPodsEnv(t, c, kc)
	agent := e.start()
	if err := e.waitProbe(t, probe, "1", nil); err != nil {
		t.Fatal(err)
	}

	// Phase 1: every pod's lines while it exists.
	const n = 500
	for _, p := range pods {
		p.write(t, e.root, "", p.name, 0, n)
	}
	waitLines(t, e.sink, map[string]int{web.name: n, api.name: n, other.name: n})

	// Phase 2: web is deleted; the agent sees it go (the probe's next label
	// comes after the deletion), then web writes on, to its log and to a
	// log of a container the agent has not seen before.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A graceful deletion waits for the kubelet, which then deletes the pod
	// with grace period 0; there is no kubelet here, so the test does that.
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(web.ns).Delete(ctx, web.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods(web.ns).Get(ctx, web.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the web pod is still there after its deletion: %v", err)
	}
	setLabel(t, c, probe, "version", "2")
	if err := e.waitProbe(t, probe, "2", nil); err != nil {
		t.Fatal(err)
	}
	web.write(t, e.root, "", web.name, n, 2*n)
	web.write(t, e.root, "late", "web-late", 0, n)
	waitLines(t, e.sink, map[string]int{web.name: 2 * n, "web-late": n})
	agent.stop(10 * time.Second)

	got := byTag(t, e.sink.Records())
	wantMeta := map[string]map[string]any{
		web.name: {"k8s.pod.label.app": "web", "k8s.pod.label.team": "shop", "k8s.pod.annotation.owner": "shop@example.com",
			"k8s.replicaset.name": "web-7f9c8d6b5", "k8s.deployment.name": "web", "k8s.pod.uid": string(web.uid),
			"k8s.namespace.name": "shop", "k8s.pod.name": web.name, "k8s.container.name": "nginx", "k8s.node.name": k8sNode},
		api.name: {"k8s.pod.label.app": "api", "k8s.pod.annotation.owner": "api@example.com",
			"k8s.replicaset.name": "api-5c6d7e8f9", "k8s.deployment.name": "api", "k8s.pod.uid": string(api.uid),
			"k8s.namespace.name": "shop", "k8s.pod.name": api.name, "k8s.container.name": "api", "k8s.node.name": k8sNode},
	}
	// The keys no record may have: not configured, or not this node's.
	never := []string{"k8s.pod.label.secret-label", "k8s.pod.annotation.not-copied", "k8s.pod.label.pod-template-hash"}
	apiOnly := []string{"k8s.pod.label.team"}
	metaKeys := []string{"k8s.pod.label.app", "k8s.pod.label.team", "k8s.pod.annotation.owner", "k8s.replicaset.name", "k8s.deployment.name"}

	for _, c := range []struct {
		tag      string
		lines    int
		want     map[string]any
		absent   []string
		describe string
	}{
		{web.name, 2 * n, wantMeta[web.name], never, "web pod (lines after its deletion included)"},
		{api.name, n, wantMeta[api.name], append(never, apiOnly...), "api pod"},
		{other.name, n, map[string]any{"k8s.pod.name": other.name, "k8s.pod.uid": string(other.uid)}, append(never, metaKeys...), "pod of another node"},
		{"web-late", n, map[string]any{"k8s.pod.name": web.name, "k8s.container.name": "late"}, append(never, metaKeys...), "web's log first seen after its deletion"},
	} {
		seqs := got[c.tag]
		missing, dups, bad := 0, 0, 0
		for i := range c.lines {
			copies := seqs[i]
			if len(copies) == 0 {
				missing++
				continue
			}
			dups += len(copies) - 1
			for _, res := range copies {
				if diff := resourceDiff(res, c.want, c.absent); diff != "" {
					if bad < 3 {
						t.Errorf("%s: seq %d: %s", c.describe, i, diff)
					}
					bad++
				}
			}
		}
		summary := fmt.Sprintf("k8s metadata %s: written=%d delivered=%d missing=%d duplicates=%d wrong_resource=%d",
			c.tag, c.lines, len(seqs)+dups, missing, dups, bad)
		t.Log(summary)
		fmt.Println("E2E " + summary)
		if missing > 0 || bad > 0 || len(seqs) > c.lines {
			t.Errorf("%s: %s", c.describe, summary)
		}
	}
}

// resourceDiff says how res differs from want (keys and values) and which
// of absent it has.
func resourceDiff(res, want map[string]any, absent []string) string {
	var d []string
	for k, v := range want {
		if res[k] != v {
			d = append(d, fmt.Sprintf("%s = %v, want %v", k, res[k], v))
		}
	}
	for _, k := range absent {
		if v, ok := res[k]; ok {
			d = append(d, fmt.Sprintf("%s = %v, want none", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

// waitLines waits until the sink holds at least want[tag] distinct
// sequence numbers of each tag.
func waitLines(t *testing.T, sink *otlpsink.Sink, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := byTag(t, sink.Records())
		short := ""
		for tag, n := range want {
			if len(got[tag]) < n {
				short += fmt.Sprintf(" %s %d/%d", tag, len(got[tag]), n)
			}
		}
		if short == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines not delivered in 2 minutes:%s", short)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grant is one verb on one resource of a ClusterRole's rules.
type grant struct{ group, resource, verb string }

func (g grant) String() string { return g.resource + "/" + g.verb }

// shippedRole reads the ClusterRole of deploy/kubernetes/metadata/rbac.yaml.
func shippedRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "deploy", "kubernetes", "metadata", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var role rbacv1.ClusterRole
		if err := dec.Decode(&role); err != nil {
			t.Fatalf("no ClusterRole in rbac.yaml: %v", err)
		}
		if role.Kind == "ClusterRole" {
			return &role
		}
	}
}

// without is role with one grant removed.
func without(role *rbacv1.ClusterRole, g grant) *rbacv1.ClusterRole {
	r := role.DeepCopy()
	var rules []rbacv1.PolicyRule
	for _, rule := range r.Rules {
		if !contains(rule.APIGroups, g.group) || !contains(rule.Resources, g.resource) || !contains(rule.Verbs, g.verb) {
			rules = append(rules, rule)
			continue
		}
		// Split the rule: the resource without the verb, the others as they were.
		var rest []string
		for _, v := range rule.Verbs {
			if v != g.verb {
				rest = append(rest, v)
			}
		}
		if len(rest) > 0 {
			rules = append(rules, rbacv1.PolicyRule{APIGroups: rule.APIGroups, Resources: []string{g.resource}, Verbs: rest})
		}
		var others []string
		for _, res := range rule.Resources {
			if res != g.resource {
				others = append(others, res)
			}
		}
		if len(others) > 0 {
			rules = append(rules, rbacv1.PolicyRule{APIGroups: rule.APIGroups, Resources: others, Verbs: rule.Verbs})
		}
	}
	r.Rules = rules
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s || x == "*" {
			return true
		}
	}
	return false
}

// unusedGrants are the grants of the shipped role this build of the agent
// does not use. The test fails when one of them turns out to be needed, and
// when a grant not listed here is not: keep the list (and the role) exact.
//
// The configuration (k8sConfig) asks for everything the role is for: pods
// (list, watch), namespace labels (namespaces list, watch), the node's
// labels (nodes list, watch), and the owners of pods owned by a ReplicaSet
// and by a Job (replicasets get, jobs get).
var unusedGrants = map[string]bool{}

// TestK8sRBAC runs the agent with a token of the shipped service account
// bound by the shipped ClusterRole (deploy/kubernetes/metadata/rbac.yaml),
// then with copies of that role lacking one verb on one resource each. With
// the shipped role the watch works: a pod's label change made after the
// agent started reaches its next lines. Without a grant the agent uses,
// the agent logs the API server's refusal naming the verb and resource.
// Every grant of the role is tried; those the agent does not need are
// listed in unusedGrants, and a grant must be in exactly one of the two.
func TestK8sRBAC(t *testing.T) {
	c := kapi.Start(t)
	kc := shippedRBAC(t, c)
	c.CreateNamespace(t, "shop")
	role := shippedRole(t)

	var grants []grant
	for _, rule := range role.Rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				for _, v := range rule.Verbs {
					grants = append(grants, grant{g, res, v})
				}
			}
		}
	}
	if len(grants) == 0 {
		t.Fatal("the shipped role grants nothing")
	}

	// run starts the agent with the role as it is now in the API server
	// and reports whether the watch worked (nil) or the error the agent
	// logged. Each run uses its own probe pod.
	// Pods whose owners the agent looks up (their ReplicaSet and Job need
	// not exist: the lookup is what needs the grant).
	yes := true
	for _, p := range []*testPod{
		{ns: "shop", name: "web-7f9c8d6b5-x2kqz", container: "web", node: k8sNode, owner: replicaSetOwner("web-7f9c8d6b5")},
		{ns: "shop", name: "report-29123456-zz9qk", container: "report", node: k8sNode,
			owner: &metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: "report-29123456", UID: "report-uid", Controller: &yes}},
	} {
		p.create(t, c)
	}

	// run starts the agent with the role as it is now in the API server
	// and reports whether the watch worked (nil) or the error the agent
	// logged. Each run uses its own probe pod. With refusal, a run whose
	// probe passed waits up to a minute more for the refusal to be logged
	// (the owner lookups run in the background).
	run := func(t *testing.T, probeName string, refusal bool) error {
		probe := &testPod{ns: "shop", name: probeName, container: "probe", node: k8sNode, labels: map[string]string{"version": "1"}}
		probe.create(t, c)
		e := newPodsEnv(t, c, kc)
		agent := e.start()
		defer agent.stop(10 * time.Second)
		forbidden := func() error { return forbiddenIn(t, e.agentLog) }
		if err := e.waitProbe(t, probe, "1", forbidden); err != nil {
			return err
		}
		// Listed; now a change the watch must deliver.
		setLabel(t, c, probe, "version", "2")
		if err := e.waitProbe(t, probe, "2", forbidden); err != nil || !refusal {
			return err
		}
		var err error
		waitUntil(time.Minute, func() bool { err = forbidden(); return err != nil })
		return err
	}

	t.Run("shipped", func(t *testing.T) {
		if err := run(t, "probe-shipped", false); err != nil {
			t.Fatalf("with the shipped role: %v", err)
		}
	})
	var needed, unused []string
	defer func() {
		fmt.Printf("E2E k8s rbac: failed=%v; the agent was refused without: %s; not used: %s\n",
			t.Failed(), strings.Join(needed, ","), strings.Join(unused, ","))
	}()
	for _, g := range grants {
		t.Run("without-"+g.resource+"-"+g.verb, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			reduced := without(role, g)
			reduced.ResourceVersion = ""
			current, err := c.Client.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			reduced.ResourceVersion = current.ResourceVersion
			if _, err := c.Client.RbacV1().ClusterRoles().Update(ctx, reduced, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				current, err := c.Client.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				restored := role.DeepCopy()
				restored.ResourceVersion = current.ResourceVersion
				if _, err := c.Client.RbacV1().ClusterRoles().Update(ctx, restored, metav1.UpdateOptions{}); err != nil {
					t.Error(err)
				}
			})
			waitDenied(t, c, kc, g)

			err = run(t, "probe-"+g.resource+"-"+g.verb, !unusedGrants[g.String()])
			if err == nil {
				unused = append(unused, g.String())
			} else {
				needed = append(needed, g.String())
			}
			switch {
			case err == nil && !unusedGrants[g.String()]:
				t.Errorf("the agent works without %s, which the shipped role grants: remove it from the role (or list it in unusedGrants)", g)
			case err == nil:
				t.Logf("%s: not used by this build (unusedGrants)", g)
			case unusedGrants[g.String()]:
				t.Errorf("without %s the agent fails, but unusedGrants says it is not used: %v", g, err)
			case !strings.Contains(err.Error(), fmt.Sprintf("cannot %s resource %q", g.verb, g.resource)):
				t.Errorf("without %s the agent logged an error that does not name it: %v", g, err)
			default:
				t.Logf("without %s: %v", g, err)
			}
		})
	}
}

// waitDenied waits until the API server's authorizer refuses g to the
// kubeconfig's user (RBAC changes reach it through a watch).
func waitDenied(t *testing.T, c *kapi.Cluster, kubeconfig string, g grant) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		// kubectl prints warnings before the answer.
		out, _ := c.KubectlAs(t, kubeconfig, "auth", "can-i", g.verb, g.resource)
		lines := strings.Fields(out)
		if len(lines) > 0 && lines[len(lines)-1] == "no" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl auth can-i %s %s still says %q after the role lost it", g.verb, g.resource, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var forbiddenRE = regexp.MustCompile(`is forbidden: User "[^"]+" cannot [a-z]+ resource "[^"]+" in API group "[^"]*"( at the cluster scope)?`)

// forbiddenIn returns the API server's first refusal the agent logged at a
// level an operator sees (WARN or ERROR; client-go also mentions it at
// DEBUG, which does not count), or nil.
func forbiddenIn(t *testing.T, log string) error {
	data, err := os.ReadFile(log)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil || entry["level"] != "ERROR" && entry["level"] != "WARN" {
			continue
		}
		text := fmt.Sprint(entry)
		if m := forbiddenRE.FindString(text); m != "" {
			return fmt.Errorf("agent log, level %v, %q: %s", entry["level"], entry["msg"], m)
		}
	}
	return nil
}

// TestK8sManifests applies every shipped manifest with `kubectl apply
// --dry-run=server`: the API server of the targeted release decodes,
// defaults, validates (unknown fields included) and admits each object, as
// it would on a real cluster, and stores none. The kustomize renderings are
// those .ci/ops.sh checks offline (base, with the metadata, gateway and
// journal components, the sidecar example), rendered by the kubectl of
// the same release. The logpump namespace is created for real first (a dry
// run creates nothing for the objects that follow). When there is a Helm
// chart (deploy/helm/logpump), its renderings with the default values and
// with each ci/*-values.yaml are applied the same way, rendered by
// $LOGPUMP_CI_CACHE/bin/helm (.ci/k8s.sh installs it when there is a chart).
func TestK8sManifests(t *testing.T) {
	c := kapi.Start(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, gw, jn := filepath.Join(dir, "src"), filepath.Join(dir, "gw"), filepath.Join(dir, "journal")
	for _, d := range []string{src, gw, jn} {
		if out, err := exec.Command("cp", "-r", filepath.Join(root, "deploy", "kubernetes"), d).CombinedOutput(); err != nil {
			t.Fatalf("copy the manifests: %v\n%s", err, out)
		}
		if err := os.RemoveAll(filepath.Join(d, "validate")); err != nil {
			t.Fatal(err)
		}
	}
	appendFile(t, filepath.Join(src, "kustomization.yaml"), "components: [metadata]\n")
	appendFile(t, filepath.Join(gw, "kustomization.yaml"), "components: [gateway]\n")
	appendFile(t, filepath.Join(jn, "kustomization.yaml"), "components: [journal]\n")

	c.CreateNamespace(t, "logpump")
	c.CreateNamespace(t, "shop")
	renderings := []struct {
		name, kustomization, namespace string
	}{
		{"base", filepath.Join(root, "deploy", "kubernetes"), ""},
		{"metadata", src, ""},
		{"gateway", gw, ""},
		{"journal", jn, ""},
		{"sidecar", filepath.Join(root, "deploy", "kubernetes", "sidecar"), "shop"},
	}
	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			out, err := c.Kubectl(t, "kustomize", r.kustomization)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, r.name+".yaml")
			if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			dryRun(t, c, file, r.namespace)
		})
	}

	// The Helm chart, when there is one and a helm binary to render it.
	cache := os.Getenv("LOGPUMP_CI_CACHE")
	if cache == "" {
		cache = "/var/cache/logpump-ci"
	}
	helm := filepath.Join(cache, "bin", "helm")
	chart := filepath.Join(root, "deploy", "helm", "logpump")
	var helmFiles []string
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		t.Logf("helm: no chart at %s: not tested", chart)
	} else if _, err := os.Stat(helm); err != nil {
		// .ci/k8s.sh installs helm when there is a chart.
		if os.Getenv("LOGPUMP_REQUIRE_K8S") == "1" {
			t.Fatalf("helm: a chart at %s but no %s", chart, helm)
		}
		t.Logf("helm: no %s: the chart is not tested", helm)
	} else {
		values, _ := filepath.Glob(filepath.Join(chart, "ci", "*-values.yaml"))
		for _, v := range append([]string{""}, values...) {
			args := []string{"template", "logpump", chart, "--namespace", "logpump", "--kube-version", strings.TrimPrefix(kapi.Version, "v")}
			name := "helm-default"
			if v != "" {
				args = append(args, "-f", v)
				name = "helm-" + strings.TrimSuffix(filepath.Base(v), "-values.yaml")
			}
			var stderr bytes.Buffer
			cmd := exec.Command(helm, args...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
				continue
			}
			file := filepath.Join(dir, name+".yaml")
			if err := os.WriteFile(file, out, 0o644); err != nil {
				t.Fatal(err)
			}
			helmFiles = append(helmFiles, file)
		}
	}
	for _, f := range helmFiles {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) { dryRun(t, c, f, "logpump") })
	}
	fmt.Printf("E2E k8s manifests: failed=%v; kubectl apply --dry-run=server of %d kustomize and %d helm renderings\n",
		t.Failed(), len(renderings), len(helmFiles))
}

// dryRun applies file with --dry-run=server (in namespace when not empty)
// and fails the test with kubectl's output when the server refuses any
// object. It checks the output names every object of the file, so that a
// rendering kubectl did not read does not pass.
func dryRun(t *testing.T, c *kapi.Cluster, file, namespace string) {
	t.Helper()
	args := []string{"apply", "--dry-run=server", "-f", file}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	out, err := c.Kubectl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objects := 0
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.Contains(doc, "\nkind:") || strings.HasPrefix(strings.TrimSpace(doc), "kind:") {
			objects++
		}
	}
	got := strings.Count(out, "(server dry run)")
	if objects == 0 || got != objects {
		t.Fatalf("%s: %d objects, kubectl dry-ran %d:\n%s", file, objects, got, out)
	}
	t.Logf("%s: %d objects accepted", filepath.Base(file), got)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
