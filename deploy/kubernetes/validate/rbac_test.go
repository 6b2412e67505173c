package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The Helm chart's ClusterRole grants what the kustomize component's does,
// no more and no less (the real API server tests check the latter is the
// minimum the agent needs).
func TestChartRBACMatchesManifests(t *testing.T) {
	rules := func(path string) any {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The rules block: from "rules:" to the end of its document. It
		// holds no template directive in either file.
		text := string(data)
		i := strings.Index(text, "\nrules:\n")
		if i < 0 {
			t.Fatalf("%s: no rules", path)
		}
		text = text[i+1:]
		if j := strings.Index(text, "\n---"); j >= 0 {
			text = text[:j]
		}
		if strings.Contains(text, "{{") {
			t.Fatalf("%s: the rules hold a template directive", path)
		}
		var r map[string]any
		if err := yaml.Unmarshal([]byte(text), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return r["rules"]
	}
	chart, manifests := rules("../../helm/logpump/templates/rbac.yaml"), rules("../metadata/rbac.yaml")
	if chart == nil || !reflect.DeepEqual(chart, manifests) {
		t.Errorf("the chart's ClusterRole rules differ from metadata/rbac.yaml's:\nchart: %v\nmanifests: %v", chart, manifests)
	}
}
