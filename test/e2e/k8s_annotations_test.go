package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logpump/logpump/test/e2e/kapi"
	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// annotate sets (value not nil) or removes (nil) annotations of a pod
// through the API, in one merge patch.
func annotate(t *testing.T, c *kapi.Cluster, p *testPod, kv map[string]*string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": kv}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Client.CoreV1().Pods(p.ns).Patch(ctx, p.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotate pod %s: %v", p.name, err)
	}
}

func str(s string) *string { return &s }

// writeCRI appends CRI lines with the given bodies to the pod's log.
func writeCRI(t *testing.T, root string, p *testPod, bodies ...string) {
	t.Helper()
	var b strings.Builder
	for i, body := range bodies {
		fmt.Fprintf(&b, "2026-12-07T12:00:00.%09dZ stdout F %s\n", i, body)
	}
	if err := os.MkdirAll(strings.TrimSuffix(p.path(root), "/0.log"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p.path(root), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// metricValue reads one sample of the agent's /metrics ("" labels: the
// first sample of the name whose labels contain every part of labels).
func metricValue(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return v
	}
	return 0
}

var apiListPods = regexp.MustCompile(`(?m)^apiserver_request_total\{([^}]*)\} (\d+)$`)

// apiLists is how many LIST requests of resource the API server answered.
func apiLists(t *testing.T, c *kapi.Cluster, resource string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	n := 0
	for _, m := range apiListPods.FindAllStringSubmatch(string(data), -1) {
		if strings.Contains(m[1], `resource="`+resource+`"`) && strings.Contains(m[1], `verb="LIST"`) {
			v, _ := strconv.Atoi(m[2])
			n += v
		}
	}
	return n
}

// TestK8sAnnotations runs the agent built with -tags k8smeta against a real
// API server (shipped RBAC) and steers one pod's records with annotations
// changed on the running agent: exclude on, exclude off, parser json,
// multiline with a start pattern, an unknown parser. Each phase's lines are
// counted by sequence number at the Collector receiver: an excluded phase
// delivers none and the agent counts every one of its lines as excluded;
// every other phase delivers each line exactly once, parsed or joined as
// the annotation says. A reload keeps the watch: the API server gets no
// second LIST of pods.
func TestK8sAnnotations(t *testing.T) {
	c := kapi.Start(t)
	kc := shippedRBAC(t, c)
	c.CreateNamespace(t, "shop")
	web := &testPod{ns: "shop", name: "web-7f9c8d6b5-x2kqz", container: "app", node: k8sNode,
		labels: map[string]string{"app": "web"}, owner: replicaSetOwner("web-7f9c8d6b5")}
	web.create(t, c)
	probe := &testPod{ns: "shop", name: "probe", container: "probe", node: k8sNode, labels: map[string]string{"version": "1"}}
	probe.create(t, c)

	e := newPodsEnv(t, c, kc)
	port := freeTCPPort(t)
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	base := string(cfg) + fmt.Sprintf("admin: {address: 127.0.0.1:%d}\n", port)
	if err := os.WriteFile(e.cfgPath, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	agent := e.start()
	defer agent.stop(10 * time.Second)

	version := 1
	// seen makes sure the agent's watch has every change made so far: the
	// probe's new label comes after them in the same watch.
	seen := func() {
		t.Helper()
		version++
		setLabel(t, c, probe, "version", strconv.Itoa(version))
		if err := e.waitProbe(t, probe, strconv.Itoa(version), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.waitProbe(t, probe, "1", nil); err != nil {
		t.Fatal(err)
	}
	// The configuration (k8sConfig) watches pods, namespaces and the node.
	resources := []string{"pods", "namespaces", "nodes"}
	listsBefore := map[string]int{}
	for _, r := range resources {
		listsBefore[r] = apiLists(t, c, r)
	}
	if listsBefore["pods"] < 1 {
		t.Fatalf("the API server counted %d LISTs of pods after the agent's watch started; want at least 1", listsBefore["pods"])
	}

	const n = 300
	lines := func(phase string) []string {
		var ls []string
		for i := range n {
			ls = append(ls, fmt.Sprintf("%s seq=%d", phase, i))
		}
		return ls
	}
	excluded := func() float64 {
		return metricValue(t, metrics, "logpump_processor_dropped_records_total", `processor="pod"`, `reason="excluded"`)
	}
	// records returns the sink's records of the web pod.
	records := func() []otlpsink.Record {
		var out []otlpsink.Record
		for _, r := range e.sink.Records() {
			if r.Resource["k8s.pod.name"] == web.name {
				out = append(out, r)
			}
		}
		return out
	}
	// count is how many copies of each seq of phase arrived, by body
	// prefix (plain lines) or by the parsed phase and seq attributes.
	count := func(phase string) map[int]int {
		got := map[int]int{}
		for _, r := range records() {
			if p, ok := r.Attributes["phase"]; ok && p == phase {
				if s, ok := r.Attributes["seq"].(int64); ok {
					got[int(s)]++
				}
				continue
			}
			var s int
			if _, err := fmt.Sscanf(r.Body, phase+" seq=%d", &s); err == nil {
				got[s]++
			}
		}
		return got
	}
	waitPhase := func(phase string) map[int]int {
		t.Helper()
		var got map[int]int
		if !waitUntil(2*time.Minute, func() bool { got = count(phase); return len(got) >= n }) {
			t.Fatalf("phase %s: %d of %d lines delivered in 2 minutes", phase, len(got), n)
		}
		return got
	}
	check := func(phase string, got map[int]int) {
		t.Helper()
		missing, dups := 0, 0
		for i := range n {
			switch c := got[i]; {
			case c == 0:
				missing++
			case c > 1:
				dups += c - 1
			}
		}
		summary(t, "k8s-annotations-"+phase, "written=%d missing=%d duplicates=%d", n, missing, dups)
		if missing > 0 || dups > 0 {
			t.Errorf("phase %s: %d missing, %d duplicated", phase, missing, dups)
		}
	}

	// Phase a: no annotation, every line passes.
	writeCRI(t, e.root, web, lines("a")...)
	check("a", waitPhase("a"))

	// Phase b: excluded. Phase c (exclusion lifted) is written after it
	// in the same file: once c arrives, every b line was read.
	annotate(t, c, web, map[string]*string{"logpump.io/exclude": str("true")})
	seen()
	writeCRI(t, e.root, web, lines("b")...)
	if !waitUntil(2*time.Minute, func() bool { return excluded() >= n }) {
		t.Fatalf("%v lines counted as excluded, want %d", excluded(), n)
	}
	annotate(t, c, web, map[string]*string{"logpump.io/exclude": nil})
	seen()
	writeCRI(t, e.root, web, lines("c")...)
	check("c", waitPhase("c"))
	if got := count("b"); len(got) != 0 {
		t.Errorf("%d lines of the excluded phase delivered", len(got))
	}
	if got := excluded(); got != n {
		t.Errorf("%v lines counted as excluded, want %d", got, n)
	}
	summary(t, "k8s-annotations-b", "written=%d excluded=%v delivered=%d", n, excluded(), len(count("b")))

	// Phase d: parser json for the container.
	annotate(t, c, web, map[string]*string{"logpump.io/parser-app": str("json")})
	seen()
	var js []string
	for i := range n {
		js = append(js, fmt.Sprintf(`{"phase":"d","seq":%d,"msg":"hello"}`, i))
	}
	writeCRI(t, e.root, web, js...)
	check("d", waitPhase("d"))

	// Phase e: multiline with a start pattern, the parser off: each event
	// is its first line and two frames.
	annotate(t, c, web, map[string]*string{"logpump.io/parser-app": str("none"), "logpump.io/multiline": str(`^e seq=`)})
	seen()
	var ml []string
	for i := range n {
		ml = append(ml, fmt.Sprintf("e seq=%d", i), "    at frame one", "    at frame two")
	}
	writeCRI(t, e.root, web, ml...)
	got := waitPhase("e")
	check("e", got)
	for _, r := range records() {
		if strings.HasPrefix(r.Body, "e seq=") && !strings.HasSuffix(r.Body, "\n    at frame one\n    at frame two") {
			t.Errorf("event not joined: %q", r.Body)
			break
		}
		if strings.HasPrefix(r.Body, "    at frame") {
			t.Errorf("a continuation line arrived alone: %q", r.Body)
			break
		}
	}

	// Phase f: an unknown parser: lines pass unparsed, reported once.
	annotate(t, c, web, map[string]*string{"logpump.io/multiline": nil, "logpump.io/parser-app": str("yaml")})
	seen()
	writeCRI(t, e.root, web, lines("f")...)
	check("f", waitPhase("f"))
	if n := strings.Count(readLog(t, e.env), "invalid pod annotation"); n != 1 {
		t.Errorf("the invalid annotation was reported %d times, want once", n)
	}

	// A reload that replaces the pipeline keeps the watch.
	reloaded := strings.Replace(base, "    processors: [cri, pod]", "    processors: [cri, pod, mark]", 1)
	reloaded = strings.Replace(reloaded, "processors:\n  cri:", "processors:\n  mark: {type: static, attributes: {reloaded: true}}\n  cri:", 1)
	if reloaded == base || !strings.Contains(reloaded, "mark: {type: static") {
		t.Fatal("the reloaded configuration is not the one meant")
	}
	if err := os.WriteFile(e.cfgPath, []byte(reloaded), 0o644); err != nil {
		t.Fatal(err)
	}
	watchesBefore := strings.Count(readLog(t, e.env), "watching kubernetes metadata")
	agent.signal(syscall.SIGHUP)
	if !waitUntil(time.Minute, func() bool { return strings.Contains(readLog(t, e.env), `"msg":"configuration reloaded"`) }) {
		t.Fatal("the reload was not applied")
	}
	writeCRI(t, e.root, web, lines("g")...)
	check("g", waitPhase("g"))
	for _, r := range resources {
		if after := apiLists(t, c, r); after != listsBefore[r] {
			t.Errorf("the API server answered %d LISTs of %s before the reload and %d after: a reload listed the cluster again", listsBefore[r], r, after)
		}
	}
	if n := strings.Count(readLog(t, e.env), "watching kubernetes metadata"); n != watchesBefore {
		t.Errorf("%d watches started before the reload, %d after; want none started by the reload", watchesBefore, n)
	}
}
