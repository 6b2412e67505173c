package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// affinityConfig tails kubelet pod logs, takes each pod's identity from
// its path (the kubernetes processor) and sends to three receivers with
// affinity on k8s.pod.uid. %[1]s is the state directory, %[2]s the root the
// pod logs are under, %[3]s the receivers' gRPC endpoints.
const affinityConfig = `state_dir: %[1]s
shutdown_timeout: 10s
resource: {service.name: affinity-node}
checkpoints: {flush_interval: 1s, max_in_flight: 16MiB}
sources:
  pods:
    type: file
    include: [%[2]s/var/log/pods/*/*/*.log]
    start_at: beginning
processors:
  pod: {type: kubernetes, node_name: node-a}
exporters:
  gateways:
    type: otlp_grpc
    endpoints: [%[3]s]
    affinity: {resource_attributes: [k8s.pod.uid]}
    tls: {insecure: true}
    batch: {max_records: 1000, timeout: 200ms}
    queue: {size: 64, in_flight: 2}
    retry: {initial_interval: 100ms, max_interval: 2s}
pipelines:
  k8s:
    sources: [pods]
    processors: [pod]
    exporters: [gateways]
`

// affinityTally counts, by sequence number, the lines three receivers
// accepted, and which receivers each pod's lines reached since the last
// reset.
type affinityTally struct {
	mu     sync.Mutex
	copies []uint8           // by sequence number
	where  map[string]uint8  // pod uid -> mask of receivers, this phase
	per    map[string][3]int // pod uid -> records per receiver, this phase
	bad    []string
}

func (a *affinityTally) add(sink int, r otlpsink.Record) {
	uid, _ := r.Resource["k8s.pod.uid"].(string)
	f := strings.Fields(r.Body)
	n := -1
	if len(f) == 2 {
		n, _ = strconv.Atoi(f[1])
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if uid == "" || n < 0 || n >= len(a.copies) || f[0] != uid {
		a.bad = append(a.bad, fmt.Sprintf("receiver %d: body %q of pod %q", sink, r.Body, uid))
		return
	}
	if a.copies[n] < 255 {
		a.copies[n]++
	}
	a.where[uid] |= 1 << sink
	c := a.per[uid]
	c[sink]++
	a.per[uid] = c
}

// arrived counts the distinct lines below n that arrived.
func (a *affinityTally) arrived(n int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	got := 0
	for _, c := range a.copies[:n] {
		if c > 0 {
			got++
		}
	}
	return got
}

// phase returns where each pod's lines went since the last call, and
// starts a new phase.
func (a *affinityTally) phase() (map[string]uint8, map[string][3]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, p := a.where, a.per
	a.where, a.per = map[string]uint8{}, map[string][3]int{}
	return w, p
}

// TestGatewayAffinity runs the agent over the logs of 32 pods (kubelet
// paths, the kubernetes processor) with three Collector receivers as one
// exporter's endpoints and affinity on k8s.pod.uid, and counts every line
// by its sequence number:
//   - 100,000 lines: every pod's lines reach one receiver, each receiver
//     gets some pods, none is missing;
//   - one receiver stopped, 32,000 more lines: its pods move to the other
//     two, the others' pods stay where they were, none is missing;
//   - the receiver started again and back (probed), 32,000 more lines:
//     every pod is where it was at first; none is missing over the run.
func TestGatewayAffinity(t *testing.T) {
	const pods, first, later = 32, 100_000, 32_000
	total := first + 2*later + 10_000 // room for the lines that wait for the probe
	tally := &affinityTally{copies: make([]uint8, total), where: map[string]uint8{}, per: map[string][3]int{}}
	e := newEnv(t, setup{gateways: 3, onRecordAt: tally.add})

	files := make([]*os.File, pods)
	uids := make([]string, pods)
	for i := range pods {
		uids[i] = fmt.Sprintf("%08d-aaaa-bbbb-cccc-%012d", i, i)
		dir := filepath.Join(e.dir, "var", "log", "pods", fmt.Sprintf("shop_web-%d_%s", i, uids[i]), "app")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, "0.log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files[i] = f
	}
	seq := 0
	// write appends n lines, round robin over the pods' files: "<uid> <seq>".
	write := func(n int) {
		t.Helper()
		bufs := make([][]byte, pods)
		for range n {
			i := seq % pods
			bufs[i] = fmt.Appendf(bufs[i], "%s %d\n", uids[i], seq)
			seq++
		}
		for i, b := range bufs {
			if _, err := files[i].Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	var eps []string
	for _, sk := range e.sinks {
		eps = append(eps, sk.GRPCEndpoint())
	}
	cfg := fmt.Sprintf(affinityConfig, e.stateDir, e.dir, strings.Join(eps, ", "))
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	waitAll := func(what string) {
		t.Helper()
		if !waitUntil(90*time.Second, func() bool { return tally.arrived(seq) == seq }) {
			t.Fatalf("%s: %d of %d lines arrived", what, tally.arrived(seq), seq)
		}
	}
	// owners checks that each pod's lines of the phase reached one
	// receiver and returns it.
	owners := func(what string) map[string]int {
		t.Helper()
		where, per := tally.phase()
		out := map[string]int{}
		for _, uid := range slices.Sorted(maps.Keys(where)) {
			m := where[uid]
			if m&(m-1) != 0 {
				t.Errorf("%s: pod %s reached several receivers: %v records each", what, uid, per[uid])
			}
			for i := range 3 {
				if m&(1<<i) != 0 {
					out[uid] = i
				}
			}
		}
		return out
	}
	share := func(o map[string]int) []int {
		n := make([]int, 3)
		for _, i := range o {
			n[i]++
		}
		return n
	}

	ctx := t.Context()
	write(first)
	p := e.start()
	waitAll("stable")
	stable := owners("stable")
	if len(stable) != pods {
		t.Fatalf("stable: lines of %d pods arrived, want %d", len(stable), pods)
	}
	stableShare := share(stable)
	if slices.Contains(stableShare, 0) {
		t.Fatalf("stable: pods per receiver %v: one receiver got none", stableShare)
	}

	const gone = 1
	if err := e.sinks[gone].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	write(later)
	waitAll("one receiver stopped")
	moved := owners("one receiver stopped")
	for uid, i := range moved {
		switch {
		case i == gone:
			t.Errorf("pod %s reached the stopped receiver", uid)
		case stable[uid] != gone && i != stable[uid]:
			t.Errorf("pod %s moved from receiver %d, which is up, to %d", uid, stable[uid], i)
		}
	}

	if err := e.sinks[gone].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// Lines trickle until the receiver is probed and takes lines again.
	before := e.sinks[gone].Stats().Records
	if !waitUntil(60*time.Second, func() bool {
		if seq+pods <= total-later {
			write(pods)
		}
		return e.sinks[gone].Stats().Records > before
	}) {
		t.Fatal("the restarted receiver got no line")
	}
	waitAll("receiver back")
	tally.phase()
	write(later)
	waitAll("after the receiver is back")
	back := owners("after the receiver is back")
	for uid, i := range back {
		if i != stable[uid] {
			t.Errorf("pod %s on receiver %d after the outage, was on %d", uid, i, stable[uid])
		}
	}
	p.stop(10 * time.Second)

	missing, dups := 0, 0
	for _, c := range tally.copies[:seq] {
		if c == 0 {
			missing++
		} else if c > 1 {
			dups += int(c) - 1
		}
	}
	summary(t, "affinity", "written=%d missing=%d duplicates=%d pods_per_receiver=%v moved_pods=%d",
		seq, missing, dups, stableShare, stableShare[gone])
	if len(tally.bad) > 0 {
		t.Errorf("%d unexpected records, first: %s", len(tally.bad), tally.bad[0])
	}
	if missing != 0 {
		t.Errorf("%d of %d lines missing", missing, seq)
	}
}
