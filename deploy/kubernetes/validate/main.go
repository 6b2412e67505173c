// Command validate checks logpump's Kubernetes manifests without an API
// server.
//
// Every YAML document must decode into its k8s.io/api type the way the API
// server decodes it: field names are case-sensitive, and unknown or
// duplicate fields are errors. The workloads running logpump must then keep
// the properties the deployment relies on (see [checkWorkloads]), which
// includes agreeing with the logpump configuration they mount.
//
// Usage:
//
//	validate [-extract DIR] [-reference FILE] PATH...
//
// A PATH is a manifest file (one rendered by kustomize or helm template
// included) or a directory searched for *.yaml files (kustomization.yaml
// files are left to kustomize). With -reference, every DaemonSet must also
// keep what the DaemonSet in FILE gives the agent (see [checkAgainst]): the
// Helm chart is checked against deploy/kubernetes/daemonset.yaml so that it
// is not weaker than the manifests. With -extract, each
// ConfigMap's config.yaml is also written to DIR as
// <namespace>_<name>.yaml, for "logpump validate", which knows every
// component's options.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

func main() {
	extract := flag.String("extract", "", "write each ConfigMap's config.yaml to `dir`")
	reference := flag.String("reference", "", "check every DaemonSet against the DaemonSet in `file`")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: validate [-extract DIR] [-reference FILE] PATH...")
		os.Exit(2)
	}
	objs, err := load(flag.Args())
	if err == nil {
		err = checkWorkloads(objs)
	}
	if err == nil && *reference != "" {
		var ref *appsv1.DaemonSet
		ref, err = loadReference(*reference)
		if err == nil {
			err = checkAgainst(objs, ref)
		}
	}
	if err == nil && *extract != "" {
		err = extractConfigs(objs, *extract)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, o := range objs {
		fmt.Printf("ok %s %s/%s (%s)\n", o.kind, o.namespace(), o.name(), o.where)
	}
}

// object is one decoded document.
type object struct {
	where string // file:document
	kind  string
	obj   metav1.Object
}

func (o object) name() string { return o.obj.GetName() }

func (o object) namespace() string {
	if ns := o.obj.GetNamespace(); ns != "" {
		return ns
	}
	return "-"
}

// load decodes every document of every path, returning all errors found.
func load(paths []string) ([]object, error) {
	var objs []object
	var errs []error
	for _, p := range paths {
		files, err := manifestFiles(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("read manifest: %w", err))
				continue
			}
			got, err := decodeAll(f, data)
			objs = append(objs, got...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return objs, errors.Join(errs...)
}

// manifestFiles lists the manifests at path: the file itself, or the *.yaml
// files below a directory other than kustomization.yaml.
func manifestFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("find manifests: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && p != path {
				return fs.SkipDir // a Go module (this program's), not manifests
			}
			return nil
		}
		if strings.HasSuffix(p, ".yaml") && d.Name() != "kustomization.yaml" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find manifests: %w", err)
	}
	return files, nil
}

// decodeAll decodes each document of a multi-document YAML file strictly.
func decodeAll(file string, data []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	var errs []error
	for i := 1; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return objs, fmt.Errorf("%s: split documents: %w", file, err)
		}
		where := fmt.Sprintf("%s#%d", file, i)
		o, err := decode(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if o.obj == nil {
			continue // only comments
		}
		o.where = where
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// decode converts one YAML document to JSON and decodes it into the type
// its apiVersion and kind name, rejecting unknown, duplicate and wrongly
// cased fields as the API server does.
func decode(doc []byte) (object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("parse YAML: %w", err)
	}
	if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return object{}, nil
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return object{}, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return object{}, err
	}
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return object{}, fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	if len(strict) > 0 {
		return object{}, fmt.Errorf("decode %s: %w", tm.Kind, errors.Join(strict...))
	}
	if obj.GetName() == "" {
		return object{}, fmt.Errorf("decode %s: metadata.name is required", tm.Kind)
	}
	return object{kind: tm.Kind, obj: obj}, nil
}

// newObject returns an empty value of the API type for apiVersion and kind.
// Only the kinds logpump's manifests use are known; anything else is an
// error, so that a typo in apiVersion or kind cannot pass unchecked.
func newObject(apiVersion, kind string) (metav1.Object, error) {
	switch apiVersion + ", " + kind {
	case "v1, Namespace":
		return &corev1.Namespace{}, nil
	case "v1, ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1, ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1, Service":
		return &corev1.Service{}, nil
	case "v1, Pod":
		return &corev1.Pod{}, nil
	case "apps/v1, DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "apps/v1, Deployment":
		return &appsv1.Deployment{}, nil
	case "autoscaling/v2, HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "rbac.authorization.k8s.io/v1, ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1, ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "rbac.authorization.k8s.io/v1, Role":
		return &rbacv1.Role{}, nil
	case "rbac.authorization.k8s.io/v1, RoleBinding":
		return &rbacv1.RoleBinding{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q of apiVersion %q", kind, apiVersion)
}

// extractConfigs writes every ConfigMap's config.yaml into dir.
func extractConfigs(objs []object, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create extract directory: %w", err)
	}
	for _, o := range objs {
		cm, ok := o.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		text, ok := cm.Data[configKey]
		if !ok {
			continue
		}
		ns := cm.Namespace
		if ns == "" {
			ns = "default"
		}
		name := filepath.Join(dir, ns+"_"+cm.Name+".yaml")
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			return fmt.Errorf("extract config: %w", err)
		}
	}
	return nil
}
