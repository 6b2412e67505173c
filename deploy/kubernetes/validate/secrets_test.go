package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// edited writes deploy/kubernetes's configmap.yaml and daemonset.yaml to a
// temporary directory after the replacements (old, new pairs) and returns
// the directory.
func edited(t *testing.T, edits map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"configmap.yaml", "daemonset.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		pairs := edits[f]
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(text, pairs[i]) {
				t.Fatalf("%s does not contain %q; update the test", f, pairs[i])
			}
			text = strings.Replace(text, pairs[i], pairs[i+1], 1)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("got error %v, want none", err)
	case want != "" && err == nil:
		t.Fatalf("got no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("got error\n%v\nwant one containing %q", err, want)
	}
}

const (
	plainTLS  = "tls: {insecure: true}"
	envAnchor = "            - name: GOMEMLIMIT\n"
	mounts    = "          volumeMounts:\n"
	volumes   = "      volumes:\n"
)

// TestExporterSecrets: an exporter's credentials stay out of the ConfigMap
// (headers name a variable set from a Secret; TLS files come from a Secret
// volume) and journal directories are mounted read-only.
func TestExporterSecrets(t *testing.T) {
	tokenEnv := "            - name: TOKEN\n              valueFrom:\n                secretKeyRef: {name: otlp, key: token}\n"
	tlsMount := "            - {name: tls, mountPath: /etc/tls, readOnly: true}\n"
	tlsVolume := "        - name: tls\n          secret: {secretName: otlp-tls}\n"
	tests := []struct {
		name  string
		edits map[string][]string
		want  string
	}{
		{
			name: "token from a Secret",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, `headers: {authorization: "Bearer ${TOKEN:?unset}", x-tenant: a}`},
				"daemonset.yaml": {envAnchor, tokenEnv + envAnchor},
			},
		},
		{
			name: "token written into the ConfigMap",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, `headers: {authorization: "Bearer abc123"}`},
			},
			want: "header authorization: a credential written into the ConfigMap",
		},
		{
			name: "api key in a header of its own",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, `headers: {x-api-key: "abc123"}`},
			},
			want: "header x-api-key: a credential",
		},
		{
			name: "token variable not from a Secret",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, `headers: {authorization: "Bearer ${TOKEN}"}`},
				"daemonset.yaml": {envAnchor, "            - {name: TOKEN, value: abc123}\n" + envAnchor},
			},
			want: "environment variable TOKEN must come from a Secret",
		},
		{
			name: "TLS files from a Secret",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, "tls: {ca_file: /etc/tls/ca.crt, cert_file: /etc/tls/tls.crt, key_file: /etc/tls/tls.key}"},
				"daemonset.yaml": {mounts, mounts + tlsMount, volumes, volumes + tlsVolume},
			},
		},
		{
			name: "TLS file not mounted",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, "tls: {ca_file: /etc/tls/ca.crt}"},
			},
			want: "tls.ca_file /etc/tls/ca.crt: no volume mounted there",
		},
		{
			name: "TLS key from a ConfigMap",
			edits: map[string][]string{
				"configmap.yaml": {plainTLS, "tls: {ca_file: /etc/logpump/ca.crt}"},
			},
			want: "tls.ca_file /etc/logpump/ca.crt: volume config is not a Secret",
		},
		{
			name: "journal not mounted",
			edits: map[string][]string{
				"configmap.yaml": {"    processors:\n", "      journal: {type: journald, directory: /var/log/journal}\n    processors:\n"},
			},
			want: "journald directory /var/log/journal: no volume mounted there",
		},
		{
			name: "journal mounted writable",
			edits: map[string][]string{
				"configmap.yaml": {"    processors:\n", "      journal: {type: journald, directory: /var/log/journal}\n    processors:\n"},
				"daemonset.yaml": {mounts, mounts + "            - {name: journal, mountPath: /var/log/journal}\n",
					volumes, volumes + "        - {name: journal, hostPath: {path: /var/log/journal, type: Directory}}\n"},
			},
			want: "journald directory /var/log/journal: volume journal must be mounted readOnly",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := load([]string{edited(t, tt.edits)})
			if err == nil {
				err = checkWorkloads(objs)
			}
			wantErr(t, err, tt.want)
		})
	}
}

// TestAgainstReference: a DaemonSet weaker than deploy/kubernetes's is
// named.
func TestAgainstReference(t *testing.T) {
	ref, err := loadReference(filepath.Join("..", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edits []string
		want  string
	}{
		{name: "the reference itself"},
		{name: "another checkpoint directory", edits: []string{"path: /var/lib/logpump", "path: /data/logpump"}},
		{name: "more capabilities", edits: []string{"add: [DAC_READ_SEARCH]", "add: [DAC_READ_SEARCH, SYS_PTRACE]"},
			want: "container securityContext differs"},
		{name: "no seccomp profile", edits: []string{"          type: RuntimeDefault\n", "          type: Unconfined\n"},
			want: "pod securityContext differs"},
		{name: "looser liveness probe", edits: []string{"failureThreshold: 6", "failureThreshold: 60"},
			want: "livenessProbe differs"},
		{name: "shorter grace period", edits: []string{"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 20"},
			want: "terminationGracePeriodSeconds 20, below the reference's 30"},
		{name: "pod logs writable", edits: []string{"mountPath: /var/log/pods\n              readOnly: true", "mountPath: /var/log/pods"},
			want: "/var/log/pods: mounted writable"},
		{name: "pod logs from another node directory", edits: []string{"path: /var/log/pods", "path: /srv/pods"},
			want: "hostPath /srv/pods, the reference's is /var/log/pods"},
		{name: "node name missing", edits: []string{"            - name: K8S_NODE_NAME\n              valueFrom:\n                fieldRef:\n                  fieldPath: spec.nodeName\n", ""},
			want: "env K8S_NODE_NAME: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := load([]string{edited(t, map[string][]string{"daemonset.yaml": tt.edits})})
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, checkAgainst(objs, ref), tt.want)
		})
	}
}
