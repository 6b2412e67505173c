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
	if !strings.Contains(logs.String(), "metadata unavailable") {
		t.Errorf("outside a cluster the stage logged %q, want the reason metadata is missing", logs.String())
	}
	stagetest.Release(out)
}

// TestAnnotationParsers checks what a logpump.io/parser annotation may
// name: json, logfmt, a regex preset, a parser processor of the
// configuration; anything else is an error naming what is known.
func TestAnnotationParsers(t *testing.T) {
	procs := map[string]config.Component{
		"applog": podComponent(t, "pod: {type: logfmt, body_field: msg}\n"),
		"sample": podComponent(t, "pod: {type: sample, ratio: 0.5}\n"),
	}
	procs["applog"] = withType(procs["applog"], "logfmt")
	procs["sample"] = withType(procs["sample"], "sample")
	env := Env{Processors: procs}.withDefaults()
	for _, name := range []string{"json", "logfmt", "nginx_access", "postgres", "applog"} {
		p, err := annotationParser(name, env, nil)
		if err != nil || p == nil {
			t.Errorf("parser %q: %v", name, err)
		}
	}
	// The named parser runs with its options (body_field: msg).
	p, _ := annotationParser("applog", env, nil)
	acks := stagetest.NewAcks()
	b, _ := acks.Batch(stagetest.File{Path: "/x.log", Ino: 1}, 0, `level=info msg=hello`)
	p.Batches()(b)
	if got := b.Records[0].Body.Str; got != "hello" {
		t.Errorf("named parser body = %q, want hello", got)
	}
	for name, want := range map[string]string{
		"yaml":   `unknown parser "yaml" (known: json, logfmt, none, apache_access`,
		"sample": `processor "sample" is a sample processor, not a parser`,
	} {
		_, err := annotationParser(name, env, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parser %q: error %v, want %q", name, err, want)
		}
	}
	if _, err := annotationParser("yaml", env, nil); !strings.Contains(err.Error(), "parser processors: applog") {
		t.Errorf("error %v does not list the parser processors", err)
	}
}

func withType(c config.Component, typ string) config.Component {
	c.Type = typ
	return c
}

func TestAnnotationJoining(t *testing.T) {
	env := Env{MaxInFlight: 64 << 10}.withDefaults()
	for _, v := range []string{"java", "python", `^\d{4}-`, `^\[`} {
		if _, err := annotationJoining(v, env); err != nil {
			t.Errorf("multiline %q: %v", v, err)
		}
	}
	_, err := annotationJoining(`(`, env)
	if err == nil || !strings.Contains(err.Error(), "not a multiline preset") || !strings.Contains(err.Error(), "missing closing )") {
		t.Errorf("bad pattern: %v", err)
	}
}

func TestKubernetesAnnotationOptions(t *testing.T) {
	_, err := Build(podComponent(t, "pod: {type: kubernetes, annotations: {prefix: example.com}}\n"), Env{NodeName: "node-a"})
	if err == nil || !strings.Contains(err.Error(), "processors.pod.annotations") || !strings.Contains(err.Error(), "need metadata") {
		t.Errorf("annotations without metadata: %v", err)
	}
	_, err = Build(podComponent(t, "pod: {type: kubernetes, annotations: {enabled: false}}\n"), Env{NodeName: "node-a"})
	if err != nil {
		t.Errorf("annotations turned off without metadata: %v", err)
	}
}
