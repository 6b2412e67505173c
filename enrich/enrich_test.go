package enrich

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

func TestParsePodLogPath(t *testing.T) {
	tests := []struct {
		path string
		want PodLog
		ok   bool
	}{
		{"/var/log/pods/shop_web-7f9c8d6b5-x2kqz_0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6/nginx/3.log",
			PodLog{Namespace: "shop", Pod: "web-7f9c8d6b5-x2kqz", UID: "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6", Container: "nginx", Restart: 3}, true},
		{"/var/log/pods/kube-system_coredns-5d78c9869d-8bq2n_91b0c1f2-0000-4a4a-9b9b-123456789abc/coredns/0.log.20240501-101500",
			PodLog{Namespace: "kube-system", Pod: "coredns-5d78c9869d-8bq2n", UID: "91b0c1f2-0000-4a4a-9b9b-123456789abc", Container: "coredns", Restart: 0}, true},
		{"/var/log/containers/web-7f9c8d6b5-x2kqz_shop_nginx-3f1c2b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c.log",
			PodLog{Namespace: "shop", Pod: "web-7f9c8d6b5-x2kqz", Container: "nginx", ContainerID: "3f1c2b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c", Restart: -1}, true},
		{"/var/log/syslog", PodLog{}, false},
		{"/var/log/app/access.log", PodLog{}, false},
		{"", PodLog{}, false},
	}
	for _, tt := range tests {
		got, ok := ParsePodLogPath(tt.path)
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.path, ok, tt.ok)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.path, diff)
		}
	}
}

func run(s pipe.Stage, in ...*event.Batch) []*event.Batch { return stagetest.Run(s, in...) }

func TestKubernetes(t *testing.T) {
	shared := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("logpump")}}}
	acks := stagetest.NewAcks()
	pod := "/var/log/pods/shop_web-1_uid-1/nginx/0.log"
	b1, _ := acks.Batch(stagetest.File{Path: pod, Ino: 1, Resource: shared}, 0, "a")
	b2, _ := acks.Batch(stagetest.File{Path: pod, Ino: 1, Resource: shared}, 2, "b")
	b3, _ := acks.Batch(stagetest.File{Path: "/var/log/messages", Ino: 2, Resource: shared}, 0, "c")
	s, err := Kubernetes(KubernetesOptions{}, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	out := run(s, b1, b2, b3)
	want := []event.KeyValue{
		{Key: "service.name", Value: event.String("logpump")},
		{Key: "k8s.namespace.name", Value: event.String("shop")},
		{Key: "k8s.pod.name", Value: event.String("web-1")},
		{Key: "k8s.pod.uid", Value: event.String("uid-1")},
		{Key: "k8s.container.name", Value: event.String("nginx")},
		{Key: "k8s.container.restart_count", Value: event.Int(0)},
		{Key: "k8s.node.name", Value: event.String("node-a")},
	}
	if diff := cmp.Diff(want, out[0].Resource.Attrs, cmp.Comparer(event.Value.Equal)); diff != "" {
		t.Errorf("resource (-want +got):\n%s", diff)
	}
	if out[0].Resource != out[1].Resource {
		t.Error("two batches of one container got different resources; want one shared resource")
	}
	if out[2].Resource != shared {
		t.Error("a path that is not a pod log must keep its resource")
	}
	if len(shared.Attrs) != 1 {
		t.Error("the input resource was modified")
	}
}

func TestStatic(t *testing.T) {
	s, err := Static(StaticOptions{
		Attributes: map[string]any{"env": "prod", "tier": 2},
		Resource:   map[string]any{"deployment.environment.name": "prod"},
	})
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	b, _ := acks.Batch(stagetest.File{Path: "/x.log", Ino: 1}, 0, "one", "two")
	b.Records[1].Attrs = event.Set(b.Records[1].Attrs, "env", event.String("dev"))
	out := run(s, b)
	for i := range out[0].Records {
		r := &out[0].Records[i]
		env, _ := event.Lookup(r.Attrs, "env")
		tier, _ := event.Lookup(r.Attrs, "tier")
		if env.Str != "prod" || tier.AsInt() != 2 {
			t.Errorf("record %d: env=%v tier=%v", i, env, tier)
		}
		if n := len(slices.DeleteFunc(slices.Clone(r.Attrs), func(kv event.KeyValue) bool { return kv.Key != "env" })); n != 1 {
			t.Errorf("record %d has %d env attributes, want 1", i, n)
		}
	}
	if v, ok := event.Lookup(out[0].Resource.Attrs, "deployment.environment.name"); !ok || v.Str != "prod" {
		t.Errorf("resource = %v", out[0].Resource)
	}
}

func TestStaticValidate(t *testing.T) {
	for _, o := range []StaticOptions{{}, {Attributes: map[string]any{"x": []any{1}}}} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) succeeded", o)
		}
	}
}

func TestHost(t *testing.T) {
	s, err := Host(HostOptions{HostID: "4f1e"}, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	acks := stagetest.NewAcks()
	b, _ := acks.Batch(stagetest.File{Path: "/x.log", Ino: 1}, 0, "one")
	out := run(s, b)
	for _, k := range []string{"host.name", "host.id", "host.arch", "os.type"} {
		if _, ok := event.Lookup(out[0].Resource.Attrs, k); !ok {
			t.Errorf("resource lacks %s: %v", k, out[0].Resource.Attrs)
		}
	}
}

func BenchmarkEnrich(b *testing.B) {
	lines := []string{"GET /api/orders 200 12ms"}
	b.Run("static", func(b *testing.B) {
		s, _ := Static(StaticOptions{Attributes: map[string]any{"env": "prod"}, Resource: map[string]any{"team": "shop"}})
		stagetest.Bench(b, s, lines, 1000)
	})
	b.Run("kubernetes", func(b *testing.B) {
		s, _ := Kubernetes(KubernetesOptions{}, "node-a")
		stagetest.Bench(b, s, lines, 1000)
	})
}
