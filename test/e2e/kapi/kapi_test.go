package kapi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestK8sHarness checks what the harness promises: an administrator who may
// do anything, a service account token that authenticates as that account
// and gets exactly what RBAC grants it (nothing, then what an applied
// binding gives), kubectl against the server, and a server-side dry run
// that refuses an invalid object.
func TestK8sHarness(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != Version {
		t.Errorf("server version %q, want %q", v.GitVersion, Version)
	}
	if out, err := c.Kubectl(t, "version"); err != nil || !strings.Contains(out, "Server Version: "+Version) {
		t.Errorf("kubectl version: %v\n%s", err, out)
	}

	kc := c.KubeconfigFor(t, "watchers", "reader")
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("a service account without bindings listed pods: %v", err)
	}
	if !strings.Contains(err.Error(), "system:serviceaccount:watchers:reader") {
		t.Errorf("forbidden error does not name the service account: %v", err)
	}

	rbac := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(rbac, []byte(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: pod-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: watchers}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Apply(t, rbac)
	// The authorizer learns of the binding through its own watch.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err = sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list pods after the binding: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := sa.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list namespaces, granted only pods: %v", err)
	}
	if out, err := c.KubectlAs(t, kc, "auth", "can-i", "watch", "pods"); err == nil || strings.TrimSpace(out) != "no" {
		t.Errorf("kubectl auth can-i watch pods as the reader: %q, %v", out, err)
	}

	for _, bad := range []struct{ name, yaml, want string }{
		{"number in data", "data: {k: 1}\n", "ConfigMap"},
		{"unknown field", "data: {k: v}\nbogus: 1\n", `unknown field "bogus"`},
	} {
		file := filepath.Join(t.TempDir(), "bad.yaml")
		doc := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: watchers}\n" + bad.yaml
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.ApplyDryRun(t, file); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("a ConfigMap with a %s: server-side dry run: %v, want an error with %q", bad.name, err, bad.want)
		}
	}
	if _, err := c.Client.CoreV1().ConfigMaps("watchers").Get(ctx, "x", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry runs stored a ConfigMap: %v", err)
	}
}
