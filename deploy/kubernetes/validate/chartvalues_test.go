package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart, checked here for what helm lint does not
// check.
var chartDir = filepath.Join("..", "..", "helm", "logpump")

// valuePaths returns the dotted paths of values.yaml down to each leaf; a
// map or list value is a leaf (templates take them whole).
func valuePaths(prefix string, v map[string]any, out *[]string) {
	for k, x := range v {
		p := prefix + k
		if m, ok := x.(map[string]any); ok && len(m) > 0 {
			valuePaths(p+".", m, out)
			continue
		}
		*out = append(*out, p)
	}
}

// valueRef matches a reference to a value in a template.
var valueRef = regexp.MustCompile(`\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)`)

// TestChartValuesUsed: every key of values.yaml is used by a template, and
// every value a template uses is in values.yaml (documented there), so
// neither a dead value nor an undocumented one can be added. Templates
// refer to values by their full .Values path, or through a variable bound
// to a prefix of one ($v := .Values, $tls := $v.exporter.tls).
func TestChartValuesUsed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var paths []string
	valuePaths("", values, &paths)
	slices.Sort(paths)

	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates: %v", err)
	}
	var text strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(b)
	}
	// Variables bound to a value path: $v := .Values, $tls := $v.exporter.tls.
	src := text.String()
	vars := map[string]string{"$v": ""}
	if !strings.Contains(src, "$v := .Values") {
		delete(vars, "$v")
	}
	bind := regexp.MustCompile(`(\$[a-z][A-Za-z]*) := \$v((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s`)
	for _, m := range bind.FindAllStringSubmatch(src, -1) {
		vars[m[1]] = strings.TrimPrefix(m[2], ".") + "."
	}
	var used []string
	for _, m := range valueRef.FindAllStringSubmatch(src, -1) {
		used = append(used, strings.TrimPrefix(m[1], "."))
	}
	for name, prefix := range vars {
		ref := regexp.MustCompile(regexp.QuoteMeta(name) + `((?:\.[A-Za-z_][A-Za-z0-9_]*)+)`)
		for _, m := range ref.FindAllStringSubmatch(src, -1) {
			used = append(used, prefix+strings.TrimPrefix(m[1], "."))
		}
	}
	slices.Sort(used)
	used = slices.Compact(used)

	covers := func(ref, path string) bool { return ref == path || strings.HasPrefix(path, ref+".") }
	for _, p := range paths {
		if !slices.ContainsFunc(used, func(u string) bool { return covers(u, p) }) {
			t.Errorf("values.yaml: %s is used by no template", p)
		}
	}
	for _, u := range used {
		if !slices.ContainsFunc(paths, func(p string) bool { return covers(u, p) || covers(p, u) }) {
			t.Errorf("templates use .Values.%s, which values.yaml does not have", u)
		}
	}
	if len(paths) < 20 || len(used) < 20 {
		t.Fatalf("found %d values and %d references: the parsing is broken", len(paths), len(used))
	}
}
