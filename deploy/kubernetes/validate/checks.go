package main

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	// configKey is the ConfigMap key holding a logpump configuration.
	configKey = "config.yaml"
	// readCap is the one capability a logpump container may add: it reads
	// files whatever their mode.
	readCap corev1.Capability = "DAC_READ_SEARCH"
	// stopMargin is how much longer than shutdown_timeout a pod's grace
	// period must be: the drain deadline, then the checkpoint flush and exit.
	stopMargin = 5 * time.Second
)

// workload is a pod template found in a manifest.
type workload struct {
	where, kind, namespace string
	spec                   *corev1.PodSpec
}

// checkWorkloads checks every DaemonSet, Deployment and Pod that runs a
// logpump container (one whose image is named logpump). A logpump container:
//   - loads a configuration from a ConfigMap among the manifests (the keys
//     read here are checked; "logpump validate" checks the whole file, see
//     -extract);
//   - may add no capability but DAC_READ_SEARCH, drops all others, cannot
//     escalate privileges and has a read-only root filesystem;
//   - has CPU and memory requests and limits;
//   - has a liveness probe on /healthz and a readiness probe on /readyz, on
//     the port of the configured admin address;
//   - mounts every directory its sources read, read-only, and its state_dir
//     writable;
//   - runs in a pod whose grace period exceeds shutdown_timeout by stopMargin;
//   - as an init container, is a native sidecar (restartPolicy: Always).
//
// A DaemonSet must also tolerate tainted nodes, take the node name from the
// downward API, and mount the node's log directories from hostPath.
func checkWorkloads(objs []object) error {
	configs := map[string]*corev1.ConfigMap{}
	var loads []workload
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.ConfigMap:
			configs[v.Namespace+"/"+v.Name] = v
		case *appsv1.DaemonSet:
			loads = append(loads, workload{o.where, o.kind, v.Namespace, &v.Spec.Template.Spec})
		case *appsv1.Deployment:
			loads = append(loads, workload{o.where, o.kind, v.Namespace, &v.Spec.Template.Spec})
		case *corev1.Pod:
			loads = append(loads, workload{o.where, o.kind, v.Namespace, &v.Spec})
		}
	}
	var errs []error
	for _, w := range loads {
		if err := w.check(configs); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", w.where, w.kind, err))
		}
	}
	return errors.Join(errs...)
}

func (w workload) check(configs map[string]*corev1.ConfigMap) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	found := 0
	for i := range w.spec.InitContainers {
		c := &w.spec.InitContainers[i]
		if !isLogpump(c) {
			continue
		}
		found++
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			fail("init container %s: restartPolicy must be Always (a native sidecar)", c.Name)
		}
		errs = append(errs, w.checkContainer(c, configs)...)
	}
	for i := range w.spec.Containers {
		c := &w.spec.Containers[i]
		if isLogpump(c) {
			found++
			errs = append(errs, w.checkContainer(c, configs)...)
		}
	}
	if w.kind == "DaemonSet" {
		if found == 0 {
			fail("no logpump container")
		}
		errs = append(errs, w.checkNodeAgent()...)
	}
	return errors.Join(errs...)
}

func isLogpump(c *corev1.Container) bool {
	image := c.Image
	if i := strings.LastIndexAny(image, ":@"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return path.Base(image) == "logpump"
}

// checkNodeAgent checks what a DaemonSet needs to read every pod's logs.
func (w workload) checkNodeAgent() []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !slices.ContainsFunc(w.spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Operator == corev1.TolerationOpExists && t.Key == ""
	}) {
		fail("tolerations: want one with operator Exists and no key, so that every node runs the agent")
	}
	for _, dir := range []string{"/var/log/pods", "/var/log/containers"} {
		v := w.volumeAt(dir)
		if v == nil || v.HostPath == nil || v.HostPath.Path != dir {
			fail("%s: want a hostPath volume of the node's %s mounted there", dir, dir)
		}
	}
	for i := range w.spec.Containers {
		c := &w.spec.Containers[i]
		if isLogpump(c) && !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "K8S_NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
				e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		}) {
			fail("container %s: K8S_NODE_NAME must come from the downward API (spec.nodeName)", c.Name)
		}
	}
	return errs
}

// volumeAt returns the volume mounted at dir by a logpump container.
func (w workload) volumeAt(dir string) *corev1.Volume {
	for _, c := range slices.Concat(w.spec.InitContainers, w.spec.Containers) {
		if !isLogpump(&c) {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == dir {
				return w.volume(m.Name)
			}
		}
	}
	return nil
}

func (w workload) volume(name string) *corev1.Volume {
	for i := range w.spec.Volumes {
		if w.spec.Volumes[i].Name == name {
			return &w.spec.Volumes[i]
		}
	}
	return nil
}

func (w workload) checkContainer(c *corev1.Container, configs map[string]*corev1.ConfigMap) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("container %s: "+format, append([]any{c.Name}, args...)...))
	}

	sc := c.SecurityContext
	switch {
	case sc == nil:
		fail("securityContext is required")
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			fail("securityContext.readOnlyRootFilesystem must be true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			fail("securityContext.allowPrivilegeEscalation must be false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			fail("securityContext.privileged must not be true")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			fail("securityContext.capabilities.drop must include ALL")
		} else {
			for _, add := range sc.Capabilities.Add {
				if add != readCap {
					fail("securityContext.capabilities.add: %s is not needed to read logs", add)
				}
			}
		}
	}

	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			fail("resources.requests.%s is required", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			fail("resources.limits.%s is required", res)
		}
	}

	cfg, err := w.mountedConfig(c, configs)
	if err != nil {
		fail("%v", err)
		return errs
	}

	_, adminPort, err := net.SplitHostPort(cfg.Admin.Address)
	if err != nil {
		fail("config admin.address %q: want host:port for the probes", cfg.Admin.Address)
	}
	for _, p := range []struct {
		what, path string
		probe      *corev1.Probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			fail("%s: want an httpGet probe of %s", p.what, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			fail("%s: path %s, want %s", p.what, p.probe.HTTPGet.Path, p.path)
		}
		if got := portNumber(c, p.probe.HTTPGet.Port); got != adminPort {
			fail("%s: port %s, want the admin port %s", p.what, p.probe.HTTPGet.Port.String(), adminPort)
		}
	}

	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if w.spec.TerminationGracePeriodSeconds != nil {
		grace = *w.spec.TerminationGracePeriodSeconds
	}
	if want := cfg.ShutdownTimeout + stopMargin; time.Duration(grace)*time.Second < want {
		fail("terminationGracePeriodSeconds %d: want at least %v (shutdown_timeout %v + %v to flush checkpoints)",
			grace, want.Seconds(), cfg.ShutdownTimeout, stopMargin)
	}

	if m := mountFor(c, cfg.StateDir); m == nil || m.MountPath != cfg.StateDir || m.ReadOnly {
		fail("state_dir %s: want a writable volume mounted there", cfg.StateDir)
	}
	for _, read := range []struct {
		what  string
		paths []string
	}{{"source include", cfg.Includes}, {"journald directory", cfg.Journals}} {
		for _, p := range read.paths {
			m := mountFor(c, p)
			switch {
			case m == nil:
				fail("%s %s: no volume mounted there", read.what, p)
			case !m.ReadOnly:
				fail("%s %s: volume %s must be mounted readOnly", read.what, p, m.Name)
			}
		}
	}
	for _, e := range cfg.Exporters {
		errs = append(errs, w.checkExporterSecrets(c, e)...)
	}
	return errs
}

// secretHeader matches header names whose values are credentials.
var secretHeader = regexp.MustCompile(`(?i)authorization|token|key|secret|password|auth|credential|cookie`)

// envRef matches a value that is, or ends with, one environment reference
// (a scheme such as "Bearer " may precede it).
var envRef = regexp.MustCompile(`^[A-Za-z]* ?\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}$`)

// checkExporterSecrets checks that an exporter's credentials stay out of
// its ConfigMap: TLS files are read from a Secret mounted read-only, and a
// header carrying a credential names an environment variable set from a
// Secret.
func (w workload) checkExporterSecrets(c *corev1.Container, e exporterConfig) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("container %s: exporter %s: "+format, append([]any{c.Name, e.Name}, args...)...))
	}
	for _, key := range slices.Sorted(maps.Keys(e.TLS)) {
		file := e.TLS[key]
		m := mountFor(c, file)
		if m == nil {
			fail("tls.%s %s: no volume mounted there", key, file)
			continue
		}
		v := w.volume(m.Name)
		switch {
		case v == nil || v.Secret == nil:
			fail("tls.%s %s: volume %s is not a Secret", key, file, m.Name)
		case !m.ReadOnly:
			fail("tls.%s %s: volume %s must be mounted readOnly", key, file, m.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.Headers)) {
		if !secretHeader.MatchString(name) {
			continue
		}
		ref := envRef.FindStringSubmatch(e.Headers[name])
		if ref == nil {
			fail("header %s: a credential written into the ConfigMap; take it from a Secret as ${VARIABLE}", name)
			continue
		}
		if !slices.ContainsFunc(c.Env, func(v corev1.EnvVar) bool {
			return v.Name == ref[1] && v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil
		}) {
			fail("header %s: environment variable %s must come from a Secret (valueFrom.secretKeyRef)", name, ref[1])
		}
	}
	return errs
}

// mountedConfig loads the configuration the container reads: the ConfigMap
// mounted at the directory of its -config argument.
func (w workload) mountedConfig(c *corev1.Container, configs map[string]*corev1.ConfigMap) (*agentConfig, error) {
	file := "/etc/logpump/config.yaml"
	args := slices.Concat(c.Command, c.Args)
	if i := slices.Index(args, "-config"); i >= 0 && i+1 < len(args) {
		file = args[i+1]
	}
	m := mountFor(c, file)
	if m == nil {
		return nil, fmt.Errorf("config %s: no volume mounted there", file)
	}
	v := w.volume(m.Name)
	if v == nil || v.ConfigMap == nil {
		return nil, fmt.Errorf("config %s: volume %s is not a ConfigMap", file, m.Name)
	}
	cm := configs[w.namespace+"/"+v.ConfigMap.Name]
	if cm == nil {
		return nil, fmt.Errorf("config %s: ConfigMap %s is not among the manifests", file, v.ConfigMap.Name)
	}
	key := strings.TrimPrefix(file, m.MountPath+"/")
	text, ok := cm.Data[key]
	if !ok {
		return nil, fmt.Errorf("config %s: ConfigMap %s has no key %s", file, cm.Name, key)
	}
	cfg, err := parseConfig(text)
	if err != nil {
		return nil, fmt.Errorf("config %s in ConfigMap %s: %w", file, cm.Name, err)
	}
	return cfg, nil
}

// agentConfig holds the keys of a logpump configuration the manifests
// depend on.
type agentConfig struct {
	StateDir        string
	ShutdownTimeout time.Duration
	Admin           struct{ Address string }
	Includes        []string // of file sources, sorted
	Journals        []string // directories of journald sources, sorted
	Exporters       []exporterConfig
}

// exporterConfig holds the files and headers of an exporter: its TLS files
// come from a Secret, and its secret headers from the environment.
type exporterConfig struct {
	Name    string
	TLS     map[string]string // key (ca_file...) to path
	Headers map[string]string
}

func parseConfig(text string) (*agentConfig, error) {
	var raw struct {
		StateDir        string `json:"state_dir"`
		ShutdownTimeout string `json:"shutdown_timeout"`
		Admin           struct {
			Address string `json:"address"`
		} `json:"admin"`
		Sources map[string]struct {
			Type      string   `json:"type"`
			Include   []string `json:"include"`
			Directory string   `json:"directory"`
		} `json:"sources"`
		Exporters map[string]struct {
			Headers map[string]string `json:"headers"`
			TLS     struct {
				CAFile   string `json:"ca_file"`
				CertFile string `json:"cert_file"`
				KeyFile  string `json:"key_file"`
			} `json:"tls"`
		} `json:"exporters"`
	}
	// Other keys are the agent's to check ("logpump validate").
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	cfg := &agentConfig{StateDir: raw.StateDir, ShutdownTimeout: 10 * time.Second}
	cfg.Admin.Address = raw.Admin.Address
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/logpump"
	}
	if raw.ShutdownTimeout != "" {
		d, err := time.ParseDuration(raw.ShutdownTimeout)
		if err != nil {
			return nil, fmt.Errorf("shutdown_timeout: %w", err)
		}
		cfg.ShutdownTimeout = d
	}
	for _, src := range raw.Sources {
		switch src.Type {
		case "file":
			cfg.Includes = append(cfg.Includes, src.Include...)
		case "journald":
			if src.Directory != "" {
				cfg.Journals = append(cfg.Journals, src.Directory)
			}
		}
	}
	slices.Sort(cfg.Includes)
	slices.Sort(cfg.Journals)
	for _, name := range slices.Sorted(maps.Keys(raw.Exporters)) {
		e := raw.Exporters[name]
		ec := exporterConfig{Name: name, TLS: map[string]string{}, Headers: e.Headers}
		for key, file := range map[string]string{"ca_file": e.TLS.CAFile, "cert_file": e.TLS.CertFile, "key_file": e.TLS.KeyFile} {
			if file != "" {
				ec.TLS[key] = file
			}
		}
		cfg.Exporters = append(cfg.Exporters, ec)
	}
	return cfg, nil
}

// mountFor returns the mount of c that holds file, the deepest one if they nest.
func mountFor(c *corev1.Container, file string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = m
			}
		}
	}
	return best
}

func portNumber(c *corev1.Container, p intstr.IntOrString) string {
	if p.Type == intstr.Int {
		return strconv.Itoa(p.IntValue())
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return strconv.Itoa(int(cp.ContainerPort))
		}
	}
	return "(unknown port name " + p.StrVal + ")"
}
