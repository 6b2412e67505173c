package enrich

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

func TestNewPodInfo(t *testing.T) {
	labels := map[string]string{"app": "web", "team": "shop", "pod-template-hash": "7f9c8d6b5"}
	annotations := map[string]string{"owner": "shop@example.com", "note": "x"}
	some := &MetadataOptions{Labels: []string{"app", "absent"}, Annotations: []string{"owner"}}
	tests := []struct {
		name   string
		o      *MetadataOptions
		labels map[string]string
		owner  Owner
		want   map[string]string
		ns     *ObjectMeta
		node   *ObjectMeta
	}{
		{"deployment by hash label", some, labels, Owner{"ReplicaSet", "web-7f9c8d6b5"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.pod.label.app": "web", "k8s.pod.annotation.owner": "shop@example.com",
			"k8s.replicaset.name": "web-7f9c8d6b5", "k8s.deployment.name": "web",
		}, nil, nil},
		{"deployment without hash label", &MetadataOptions{}, nil, Owner{"ReplicaSet", "api-v2-5c6d7e8f9"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.replicaset.name": "api-v2-5c6d7e8f9", "k8s.deployment.name": "api-v2",
		}, nil, nil},
		{"replicaset made by hand", &MetadataOptions{}, map[string]string{"pod-template-hash": "abc"}, Owner{"ReplicaSet", "standalone"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.replicaset.name": "standalone",
		}, nil, nil},
		{"daemonset", &MetadataOptions{}, nil, Owner{"DaemonSet", "agent"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.daemonset.name": "agent",
		}, nil, nil},
		{"statefulset", &MetadataOptions{}, nil, Owner{"StatefulSet", "db"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.statefulset.name": "db",
		}, nil, nil},
		{"job of a cronjob", &MetadataOptions{}, nil, Owner{"Job", "nightly-report-29123456"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.job.name": "nightly-report-29123456", "k8s.cronjob.name": "nightly-report",
		}, nil, nil},
		{"plain job", &MetadataOptions{}, nil, Owner{"Job", "migrate-v3"}, map[string]string{
			"k8s.pod.uid": "u", "k8s.job.name": "migrate-v3",
		}, nil, nil},
		{"every label, no owner", &MetadataOptions{Labels: []string{"*"}}, labels, Owner{}, map[string]string{
			"k8s.pod.uid": "u", "k8s.pod.label.app": "web", "k8s.pod.label.team": "shop", "k8s.pod.label.pod-template-hash": "7f9c8d6b5",
		}, nil, nil},
		{"unknown owner kind", &MetadataOptions{}, nil, Owner{"Node", "node-a"}, map[string]string{"k8s.pod.uid": "u"}, nil, nil},
		{"namespace and node", &MetadataOptions{NamespaceLabels: []string{"team"}, NamespaceAnnotations: []string{"*"}, NodeLabels: []string{"topology.kubernetes.io/zone"}},
			nil, Owner{}, map[string]string{
				"k8s.pod.uid": "u", "k8s.namespace.label.team": "shop", "k8s.namespace.annotation.owner": "ops",
				"k8s.node.label.topology.kubernetes.io/zone": "eu-1a",
			},
			&ObjectMeta{Labels: map[string]string{"team": "shop", "env": "prod"}, Annotations: map[string]string{"owner": "ops"}},
			&ObjectMeta{Labels: map[string]string{"topology.kubernetes.io/zone": "eu-1a", "kubernetes.io/os": "linux"}}},
		{"namespace and node not watched", &MetadataOptions{}, nil, Owner{}, map[string]string{"k8s.pod.uid": "u"},
			&ObjectMeta{Labels: map[string]string{"team": "shop"}}, &ObjectMeta{Labels: map[string]string{"zone": "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := NewPodInfo(tt.o, &PodMeta{UID: "u", Labels: tt.labels, Annotations: annotations, Owner: tt.owner}, tt.ns, tt.node)
			got := map[string]string{}
			for _, kv := range info.Attrs {
				if _, dup := got[kv.Key]; dup {
					t.Errorf("key %s twice", kv.Key)
				}
				got[kv.Key] = kv.Value.Str
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetadataOptionsValidate(t *testing.T) {
	tests := []struct {
		o  MetadataOptions
		ok bool
	}{
		{MetadataOptions{}, true},
		{MetadataOptions{Labels: []string{"app", "*"}, Annotations: []string{"owner"}}, true},
		{MetadataOptions{Labels: []string{""}}, false},
		{MetadataOptions{Annotations: []string{"a", "a"}}, false},
	}
	for _, tt := range tests {
		if got := tt.o.Validate() == nil; got != tt.ok {
			t.Errorf("Validate(%+v) ok = %v, want %v", tt.o, got, tt.ok)
		}
	}
}

// TestKubernetesMetadataResources checks, in one run of the stage, what a
// container log's batches get as the watch learns about their pod: the path
// attributes alone while the pod is unknown, the metadata once known (one
// shared resource per metadata version), the newer metadata after a change,
// and the last known metadata once the pod is gone.
func TestKubernetesMetadataResources(t *testing.T) {
	v1 := &PodMeta{UID: "uid-1", Labels: map[string]string{"app": "v1"}}
	v2 := &PodMeta{UID: "uid-1", Labels: map[string]string{"app": "v2"}}
	answers := []*PodMeta{nil, v1, v1, v2, nil} // what the watch knows at each batch
	md := &answering{answers: answers}
	stopped := false
	watch := func() (Metadata, func()) { return md, func() { stopped = true } }
	s, err := KubernetesMetadata(KubernetesOptions{Metadata: &MetadataOptions{Labels: []string{"app"}}}, "node-a", MetadataEnv{Watch: watch})
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	f := stagetest.File{Path: "/var/log/pods/shop_web-1_uid-1/nginx/0.log", Ino: 1}
	other := stagetest.File{Path: "/var/log/syslog", Ino: 2}
	var in []*event.Batch
	var off int64
	for i := range answers {
		b, _ := acks.Batch(f, off, "line")
		off = b.End
		in = append(in, b)
		if i == 0 {
			o, _ := acks.Batch(other, 0, "not a pod")
			in = append(in, o)
		}
	}
	out := stagetest.Run(s, in...)
	if !stopped {
		t.Error("the watch was not stopped when the stage returned")
	}
	if diff := cmp.Diff([]string{"uid-1", "uid-1", "uid-1", "uid-1", "uid-1"}, md.asked); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
	if out[1].Resource != nil {
		t.Errorf("a path that is not a pod log got resource %v", out[1].Resource)
	}
	pods := append(out[:1:1], out[2:]...)
	var got []string
	for _, b := range pods {
		v, _ := event.Lookup(b.Resource.Attrs, "k8s.pod.label.app")
		got = append(got, v.Str)
		if name, _ := event.Lookup(b.Resource.Attrs, "k8s.pod.name"); name.Str != "web-1" {
			t.Errorf("path attributes missing: %v", b.Resource.Attrs)
		}
	}
	if diff := cmp.Diff([]string{"", "v1", "v1", "v2", "v2"}, got); diff != "" {
		t.Errorf("k8s.pod.label.app per batch (-want +got):\n%s", diff)
	}
	if pods[1].Resource != pods[2].Resource || pods[3].Resource != pods[4].Resource {
		t.Error("batches with the same metadata got different resources; want one shared resource")
	}
	if pods[2].Resource == pods[3].Resource {
		t.Error("changed metadata kept the old resource")
	}
	stagetest.Release(out)
}

// answering is a Metadata that answers pod lookups from a list, in order.
type answering struct {
	answers []*PodMeta
	asked   []string
}

func (a *answering) Pod(p *PodLog) *PodMeta {
	a.asked = append(a.asked, p.UID)
	return a.answers[len(a.asked)-1]
}
func (a *answering) Namespace(string) *ObjectMeta { return nil }
func (a *answering) Node() *ObjectMeta            { return nil }

// fixed is a Metadata that always knows the same pod.
type fixed struct{ pod *PodMeta }

func (f fixed) Pod(*PodLog) *PodMeta         { return f.pod }
func (f fixed) Namespace(string) *ObjectMeta { return nil }
func (f fixed) Node() *ObjectMeta            { return nil }

func BenchmarkKubernetesMetadata(b *testing.B) {
	md := fixed{&PodMeta{UID: "uid-1", Labels: map[string]string{"app": "web"}, Owner: Owner{"DaemonSet", "agent"}}}
	watch := func() (Metadata, func()) { return md, func() {} }
	s, _ := KubernetesMetadata(KubernetesOptions{Metadata: &MetadataOptions{Labels: []string{"*"}}}, "node-a", MetadataEnv{Watch: watch})
	stagetest.Bench(b, s, []string{"GET /api/orders 200 12ms"}, 1000)
}
