package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedManifests checks the manifests in deploy/kubernetes as CI does.
func TestShippedManifests(t *testing.T) {
	objs, err := load([]string{".."})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := checkWorkloads(objs); err != nil {
		t.Fatalf("checkWorkloads: %v", err)
	}
	got := map[string]int{}
	for _, o := range objs {
		got[o.kind]++
	}
	for kind, want := range map[string]int{"DaemonSet": 1, "Deployment": 2, "ConfigMap": 4, "ClusterRole": 1, "HorizontalPodAutoscaler": 1} {
		if got[kind] != want {
			t.Errorf("%s manifests: got %d, want %d", kind, got[kind], want)
		}
	}
}

// TestBrokenManifests changes one thing in a shipped manifest and expects
// the validator to name it.
func TestBrokenManifests(t *testing.T) {
	tests := []struct {
		name      string
		file      string // below deploy/kubernetes
		old, new  string
		wantError string // substring; empty: valid
	}{
		{name: "daemonset unchanged", file: "daemonset.yaml"},
		{name: "sidecar unchanged", file: "sidecar/deployment.yaml"},
		{
			name: "unknown field", file: "daemonset.yaml",
			old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: true\n            readOnlyRootFS: true",
			wantError: `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFS"`,
		},
		{
			name: "field name in the wrong case", file: "daemonset.yaml",
			old: "terminationGracePeriodSeconds: 30", new: "terminationgraceperiodseconds: 30",
			wantError: `unknown field "spec.template.spec.terminationgraceperiodseconds"`,
		},
		{
			name: "duplicate field", file: "daemonset.yaml",
			old: "      enableServiceLinks: false\n", new: "      enableServiceLinks: false\n      enableServiceLinks: true\n",
			wantError: "already set in map",
		},
		{
			name: "wrong type", file: "daemonset.yaml",
			old: "terminationGracePeriodSeconds: 30", new: "terminationGracePeriodSeconds: thirty",
			wantError: "terminationGracePeriodSeconds",
		},
		{
			name: "bad quantity", file: "daemonset.yaml",
			old: "memory: 512Mi", new: "memory: 512 megs",
			wantError: "quantities must match",
		},
		{
			name: "unknown kind", file: "daemonset.yaml",
			old: "kind: DaemonSet", new: "kind: Daemonset",
			wantError: `unknown kind "Daemonset"`,
		},
		{
			name: "grace period below the drain deadline", file: "daemonset.yaml",
			old: "terminationGracePeriodSeconds: 30", new: "terminationGracePeriodSeconds: 12",
			wantError: "terminationGracePeriodSeconds 12: want at least 15",
		},
		{
			name: "writable log mount", file: "daemonset.yaml",
			old: "mountPath: /var/log/pods\n              readOnly: true", new: "mountPath: /var/log/pods",
			wantError: "source include /var/log/pods/*/*/*.log: volume pods must be mounted readOnly",
		},
		{
			name: "extra capability", file: "daemonset.yaml",
			old: "add: [DAC_READ_SEARCH]", new: "add: [DAC_READ_SEARCH, SYS_ADMIN]",
			wantError: "SYS_ADMIN is not needed",
		},
		{
			name: "writable root filesystem", file: "daemonset.yaml",
			old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false",
			wantError: "readOnlyRootFilesystem must be true",
		},
		{
			name: "readiness probe on the liveness path", file: "daemonset.yaml",
			old: "path: /readyz", new: "path: /healthz",
			wantError: "readinessProbe: path /healthz, want /readyz",
		},
		{
			name: "probe on another port", file: "daemonset.yaml",
			old: "containerPort: 8686", new: "containerPort: 9090",
			wantError: "port admin, want the admin port 8686",
		},
		{
			name: "no memory limit", file: "daemonset.yaml",
			old: "              cpu: \"1\"\n              memory: 512Mi\n", new: "              cpu: \"1\"\n",
			wantError: "resources.limits.memory is required",
		},
		{
			name: "node name not from the downward API", file: "daemonset.yaml",
			old: "fieldPath: spec.nodeName", new: "fieldPath: metadata.name",
			wantError: "K8S_NODE_NAME must come from the downward API",
		},
		{
			name: "no toleration", file: "daemonset.yaml",
			old: "      tolerations:\n        - operator: Exists\n", new: "",
			wantError: "tolerations",
		},
		{
			name: "checkpoints not on a volume", file: "daemonset.yaml",
			old: "            - name: state\n              mountPath: /var/lib/logpump\n", new: "",
			wantError: "state_dir /var/lib/logpump: want a writable volume",
		},
		{
			name: "sidecar without restartPolicy", file: "sidecar/deployment.yaml",
			old: "          restartPolicy: Always\n", new: "",
			wantError: "restartPolicy must be Always",
		},
		{
			name: "sidecar config map missing", file: "sidecar/deployment.yaml",
			old: "name: app-logpump", new: "name: app-logpump-v2",
			wantError: "ConfigMap app-logpump-v2 is not among the manifests",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			// The workload with its config maps.
			for _, f := range []string{"configmap.yaml", "sidecar/configmap.yaml", tt.file} {
				data, err := os.ReadFile(filepath.Join("..", f))
				if err != nil {
					t.Fatal(err)
				}
				if f == tt.file && tt.old != "" {
					if !strings.Contains(string(data), tt.old) {
						t.Fatalf("%s does not contain %q; update the test", f, tt.old)
					}
					data = []byte(strings.Replace(string(data), tt.old, tt.new, 1))
				}
				if err := os.WriteFile(filepath.Join(dir, strings.ReplaceAll(f, "/", "_")), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := load([]string{dir})
			if err == nil {
				err = checkWorkloads(objs)
			}
			switch {
			case tt.wantError == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantError != "" && err == nil:
				t.Fatalf("got no error, want one containing %q", tt.wantError)
			case tt.wantError != "" && !strings.Contains(err.Error(), tt.wantError):
				t.Fatalf("got error\n%v\nwant one containing %q", err, tt.wantError)
			}
		})
	}
}
