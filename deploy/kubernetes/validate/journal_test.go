package main

import (
	"os"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// The journal component replaces the agent's configuration: what it holds
// must be the base configuration plus the journald source and its pipeline,
// so that enabling the component changes nothing else.
func TestJournalComponentKeepsBaseConfig(t *testing.T) {
	base := configOf(t, "../configmap.yaml")

	data, err := os.ReadFile("../journal/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Patches []struct {
			Target struct{ Kind string } `json:"target"`
			Patch  string                `json:"patch"`
		} `json:"patches"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("journal/kustomization.yaml: %v", err)
	}
	var withJournal map[string]any
	for _, p := range k.Patches {
		if p.Target.Kind == "ConfigMap" {
			withJournal = configText(t, "journal/kustomization.yaml", []byte(p.Patch))
		}
	}
	if withJournal == nil {
		t.Fatal("journal/kustomization.yaml patches no ConfigMap")
	}

	src := withJournal["sources"].(map[string]any)
	j, _ := src["journal"].(map[string]any)
	if j["type"] != "journald" || j["directory"] != "/var/log/journal" || j["reader"] != "native" {
		t.Errorf("journal source = %v, want type journald, directory /var/log/journal, reader native (the image has no journalctl)", j)
	}
	delete(src, "journal")
	delete(withJournal["pipelines"].(map[string]any), "journal")
	if !reflect.DeepEqual(base, withJournal) {
		b, _ := yaml.Marshal(base)
		w, _ := yaml.Marshal(withJournal)
		t.Errorf("the journal component's configuration without its journal source and pipeline differs from configmap.yaml's:\nbase:\n%s\ncomponent:\n%s", b, w)
	}
}

func configOf(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return configText(t, path, data)
}

// configText returns the agent configuration (data."config.yaml") of the
// ConfigMap manifest data, decoded.
func configText(t *testing.T, name string, data []byte) map[string]any {
	t.Helper()
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil || cfg == nil {
		t.Fatalf("%s: config.yaml: %v", name, err)
	}
	return cfg
}
