package k8smeta

import (
	"fmt"
	goruntime "runtime"
	"testing"

	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/logpump/logpump/enrich"
)

// fullPod is a pod as the API serves it whole: metadata with managed
// fields, a spec with two containers (environment, probes, resources,
// mounts) and a status.
func fullPod(ns, name, uid, node string) *unstructured.Unstructured {
	container := func(name, image string) map[string]any {
		return map[string]any{
			"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
			"ports": []any{map[string]any{"containerPort": int64(8080), "protocol": "TCP"}},
			"env": []any{
				map[string]any{"name": "LOG_LEVEL", "value": "info"},
				map[string]any{"name": "POD_NAME", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.name"}}},
			},
			"resources":      map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "256Mi"}},
			"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/ready", "port": int64(8080)}, "periodSeconds": int64(5)},
			"volumeMounts":   []any{map[string]any{"name": "kube-api-access-x2kqz", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}},
		}
	}
	status := func(name string) map[string]any {
		return map[string]any{"name": name, "ready": true, "restartCount": int64(0), "image": "registry.example/" + name + ":1.4.2",
			"imageID":     "registry.example/" + name + "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"state":       map[string]any{"running": map[string]any{"startedAt": "2024-05-01T10:00:00Z"}}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"name": name, "namespace": ns, "uid": uid, "resourceVersion": "12345",
			"labels":      map[string]any{"app.kubernetes.io/name": "web", "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "7f9c8d6b5", "team": "shop"},
			"annotations": map[string]any{"prometheus.io/scrape": "true", "logpump.io/parser": "json"},
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c8d6b5",
				"uid": "rs-uid", "controller": true, "blockOwnerDeletion": true}},
			"managedFields": []any{map[string]any{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
				"fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:metadata": map[string]any{"f:labels": map[string]any{".": map[string]any{}}}}}},
		},
		"spec": map[string]any{
			"nodeName":   node,
			"containers": []any{container("nginx", "registry.example/shop/nginx:1.27.0"), container("app", "registry.example:5000/shop/web@sha256:0123abcd")},
			"volumes":    []any{map[string]any{"name": "kube-api-access-x2kqz", "projected": map[string]any{"sources": []any{map[string]any{"serviceAccountToken": map[string]any{"path": "token"}}}}}},
		},
		"status": map[string]any{
			"phase": "Running", "podIP": "10.0.0.7", "hostIP": "192.168.1.10",
			"conditions":        []any{map[string]any{"type": "Ready", "status": "True"}, map[string]any{"type": "PodScheduled", "status": "True"}},
			"containerStatuses": []any{status("nginx"), status("app")},
		},
	}}
}

// TestContainerImage: with container_image the pod watch reads whole pods
// and the resource gets each container's image name and tag.
func TestContainerImage(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster(t)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtimeScheme(t),
		map[schema.GroupVersionResource]string{podsResource: "PodList"},
		fullPod("shop", "web-7f9c8d6b5-x2kqz", "uid-web", "node-a"))
	reg := c.registry()
	reg.SetDynamic(func(string) DynamicClient { return func() (dynamic.Interface, error) { return dyn, nil } })
	opts := enrich.MetadataOptions{ContainerImage: true, Labels: []string{"team"}}
	w, _ := New(reg, "node-a", opts)
	d := drive(t, w, "node-a", opts)
	got := d.sendUntil(webPath, map[string]string{"container.image.name": "registry.example/shop/nginx"})
	if got["container.image.tags"] != `["1.27.0"]` || got["k8s.pod.label.team"] != "shop" || got["k8s.replicaset.name"] != "web-7f9c8d6b5" {
		t.Errorf("resource %v", got)
	}
	got = d.sendUntil("/var/log/pods/shop_web-7f9c8d6b5-x2kqz_uid-web/app/0.log", map[string]string{"container.image.name": "registry.example:5000/shop/web"})
	if _, ok := got["container.image.tags"]; ok {
		t.Errorf("an image by digest got tags: %v", got)
	}
	d.close()
	for _, a := range c.client.Actions() {
		if a.GetResource().Resource == "pods" {
			t.Errorf("metadata-only %s of pods besides the whole-pod watch", a.GetVerb())
		}
	}
}

func runtimeScheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestImageAttributes(t *testing.T) {
	for ref, want := range map[string]string{
		"nginx":                                 "nginx []",
		"nginx:1.27":                            "nginx [1.27]",
		"registry.example:5000/shop/web":        "registry.example:5000/shop/web []",
		"registry.example:5000/shop/web:v2":     "registry.example:5000/shop/web [v2]",
		"ghcr.io/a/b:1.0@sha256:0123":           "ghcr.io/a/b [1.0]",
		"docker.io/library/busybox@sha256:abcd": "docker.io/library/busybox []",
	} {
		kvs := enrich.ImageAttributes(ref)
		got := kvs[0].Value.Str + " ["
		if len(kvs) > 1 {
			got += kvs[1].Value.List[0].Value.Str
		}
		got += "]"
		if got != want {
			t.Errorf("%s: %s, want %s", ref, got, want)
		}
	}
}

// TestMemoryPer100Pods measures what the pod watch's cache holds for 100
// pods: whole pods as the API sends them, the metadata-only objects kept by
// default, and what the container-image watch keeps. It fails if keeping
// images costs more than half of keeping whole pods.
func TestMemoryPer100Pods(t *testing.T) {
	retained := func(mk func(i int) any) uint64 {
		keep := make([]any, 100)
		goruntime.GC()
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		for i := range keep {
			keep[i] = mk(i)
		}
		goruntime.GC()
		goruntime.ReadMemStats(&after)
		goruntime.KeepAlive(keep)
		return after.HeapAlloc - before.HeapAlloc
	}
	pod := func(i int) *unstructured.Unstructured {
		return fullPod("shop", fmt.Sprintf("web-7f9c8d6b5-%05d", i), fmt.Sprintf("uid-%d", i), "node-a")
	}
	whole := retained(func(i int) any { return pod(i) })
	meta := retained(func(i int) any {
		u := pod(i)
		m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
		m.Name, m.Namespace, m.UID, m.Labels, m.Annotations, m.OwnerReferences = u.GetName(), u.GetNamespace(), u.GetUID(), u.GetLabels(), u.GetAnnotations(), u.GetOwnerReferences()
		m.ManagedFields = u.GetManagedFields()
		out, _ := transform(m)
		return out
	})
	images := retained(func(i int) any {
		out, _ := podImages(pod(i))
		return out
	})
	t.Logf("per 100 pods: whole pods %d KiB, metadata only %d KiB, metadata and images %d KiB", whole>>10, meta>>10, images>>10)
	if images > whole/2 {
		t.Errorf("the image watch keeps %d bytes for 100 pods, whole pods take %d", images, whole)
	}
}
