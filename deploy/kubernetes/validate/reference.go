package main

import (
	"errors"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// loadReference returns the one DaemonSet among the manifests at path: the
// DaemonSet other renderings of the agent (the Helm chart) must not be
// weaker than.
func loadReference(path string) (*appsv1.DaemonSet, error) {
	objs, err := load([]string{path})
	if err != nil {
		return nil, err
	}
	var found []*appsv1.DaemonSet
	for _, o := range objs {
		if ds, ok := o.obj.(*appsv1.DaemonSet); ok {
			found = append(found, ds)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("reference %s: got %d DaemonSets, want 1", path, len(found))
	}
	return found[0], nil
}

// checkAgainst checks every DaemonSet among objs against ref. Each must
// keep what ref gives its logpump container: the pod and container
// security contexts and the probes unchanged, every environment variable
// ref sets with the same source, every mount of ref at the same path with
// the same kind of volume (a hostPath of the same node path and type) and
// at least as read-only, and a grace period at least as long.
func checkAgainst(objs []object, ref *appsv1.DaemonSet) error {
	refPod := &ref.Spec.Template.Spec
	refC := logpumpContainer(refPod)
	if refC == nil {
		return errors.New("reference DaemonSet: no logpump container")
	}
	var errs []error
	for _, o := range objs {
		ds, ok := o.obj.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: DaemonSet %s, against the reference: "+format, append([]any{o.where, ds.Name}, args...)...))
		}
		pod := &ds.Spec.Template.Spec
		c := logpumpContainer(pod)
		if c == nil {
			fail("no logpump container")
			continue
		}
		if !equality.Semantic.DeepEqual(pod.SecurityContext, refPod.SecurityContext) {
			fail("pod securityContext differs")
		}
		if !equality.Semantic.DeepEqual(c.SecurityContext, refC.SecurityContext) {
			fail("container securityContext differs")
		}
		if !equality.Semantic.DeepEqual(c.LivenessProbe, refC.LivenessProbe) {
			fail("livenessProbe differs")
		}
		if !equality.Semantic.DeepEqual(c.ReadinessProbe, refC.ReadinessProbe) {
			fail("readinessProbe differs")
		}
		if grace(pod) < grace(refPod) {
			fail("terminationGracePeriodSeconds %d, below the reference's %d", grace(pod), grace(refPod))
		}
		if pod.EnableServiceLinks == nil || refPod.EnableServiceLinks != nil && *pod.EnableServiceLinks != *refPod.EnableServiceLinks {
			fail("enableServiceLinks differs")
		}
		for _, e := range refC.Env {
			i := slices.IndexFunc(c.Env, func(g corev1.EnvVar) bool { return g.Name == e.Name })
			if i < 0 || !equality.Semantic.DeepEqual(c.Env[i], e) {
				fail("env %s: missing or from another source", e.Name)
			}
		}
		for _, rm := range refC.VolumeMounts {
			i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == rm.MountPath })
			if i < 0 {
				fail("nothing mounted at %s", rm.MountPath)
				continue
			}
			m := c.VolumeMounts[i]
			if rm.ReadOnly && !m.ReadOnly {
				fail("%s: mounted writable, read-only in the reference", rm.MountPath)
			}
			// The one writable hostPath, for checkpoints, may be anywhere on the node.
			if msg := sameVolumeKind(findVolume(pod, m.Name), findVolume(refPod, rm.Name), rm.ReadOnly); msg != "" {
				fail("%s: %s", rm.MountPath, msg)
			}
		}
	}
	return errors.Join(errs...)
}

func logpumpContainer(pod *corev1.PodSpec) *corev1.Container {
	for i := range pod.Containers {
		if isLogpump(&pod.Containers[i]) {
			return &pod.Containers[i]
		}
	}
	return nil
}

func findVolume(pod *corev1.PodSpec, name string) *corev1.Volume {
	return workload{spec: pod}.volume(name)
}

func grace(pod *corev1.PodSpec) int64 {
	if pod.TerminationGracePeriodSeconds == nil {
		return corev1.DefaultTerminationGracePeriodSeconds
	}
	return *pod.TerminationGracePeriodSeconds
}

// sameVolumeKind says how got differs from want in kind, or "". A hostPath
// must have the same type, and name the same node path if samePath.
func sameVolumeKind(got, want *corev1.Volume, samePath bool) string {
	switch {
	case got == nil || want == nil:
		return "volume missing"
	case (got.HostPath == nil) != (want.HostPath == nil),
		(got.ConfigMap == nil) != (want.ConfigMap == nil),
		(got.Secret == nil) != (want.Secret == nil),
		(got.EmptyDir == nil) != (want.EmptyDir == nil):
		return "a volume of another kind than the reference's"
	case got.HostPath != nil:
		gt, wt := hostPathType(got.HostPath), hostPathType(want.HostPath)
		if gt != wt {
			return fmt.Sprintf("hostPath type %q, the reference's is %q", gt, wt)
		}
		if samePath && got.HostPath.Path != want.HostPath.Path {
			return fmt.Sprintf("hostPath %s, the reference's is %s", got.HostPath.Path, want.HostPath.Path)
		}
	}
	return ""
}

func hostPathType(h *corev1.HostPathVolumeSource) corev1.HostPathType {
	if h.Type == nil {
		return corev1.HostPathUnset
	}
	return *h.Type
}
