package stages

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

func podComponent(t *testing.T, src string) config.Component {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	procs := map[string]config.Component{}
	if err := config.Decode(&doc, "processors", &procs); err != nil {
		t.Fatal(err)
	}
	c := procs["pod"]
	c.Key = "processors.pod"
	return c
}

// TestKubernetesMetadataBuild checks the kubernetes processor's metadata
// options: refused with a clear error by a build without the API client;
// with it, a node name is required, Build makes no API call, and outside a
// cluster the stage still passes every batch with its path attributes.
func TestKubernetesMetadataBuild(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	src := "pod: {type: kubernetes, metadata: {labels: [app], annotations: [owner]}}\n"
	var logs bytes.Buffer
	env := Env{Log: slog.New(slog.NewTextHandler(&logs, nil))}

	_, err := Build(podComponent(t, src), env)
	if !podMetadataBuilt {
		if err == nil || !strings.Contains(err.Error(), "-tags k8smeta") || !strings.Contains(err.Error(), "processors.pod.metadata") {
			t.Fatalf("Build = %v, want an error at processors.pod.metadata naming the build tag", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "node") {
		t.Errorf("Build without a node name = %v, want an error asking for it", err)
	}

	env.NodeName = "node-a"
	stage, err := Build(podComponent(t, src), env)
	if err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Errorf("Build did something: %s", logs.String())
	}
	acks := stagetest.NewAcks()
	b, _ := acks.Batch(stagetest.File{Path: "/var/log/pods/shop_web-1_uid-1/nginx/0.log", Ino: 1}, 0, "line")
	out := stagetest.Run(stage, b)
	if v, _ := event.Lookup(out[0].Resource.Attrs, "k8s.pod.name"); v.Str != "web-1" {
		t.Errorf("resource = %v, want the path attributes", out[0].Resource.Attrs)
	}
	if !strings.Contains(logs.String(), "pod metadata unavailable") {
		t.Errorf("outside a cluster the stage logged %q, want the reason metadata is missing", logs.String())
	}
	stagetest.Release(out)
}
