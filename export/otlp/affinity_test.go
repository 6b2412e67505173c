package otlp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// testEndpoints returns n endpoints named as addresses of a resolved name.
func testEndpoints(n int) []*endpoint[struct{}] {
	eps := make([]*endpoint[struct{}], n)
	for i := range eps {
		key := fmt.Sprintf("gateway:4317\x0010.0.0.%d:4317", i+1)
		eps[i] = &endpoint[struct{}]{name: key, key: key, hash: hashString(fnvOffset, key)}
	}
	return eps
}

func keyHash(i int) uint64 {
	res := &event.Resource{Attrs: []event.KeyValue{{Key: "k8s.pod.uid", Value: event.String(fmt.Sprintf("pod-%d", i))}}}
	h, _ := affinityKey([]string{"k8s.pod.uid"}, res)
	return h
}

// TestRendezvousMovesOnlyTheLeaversKeys: over 100,000 keys and 5
// endpoints, each key has one owner; each endpoint owns a fifth (±1 %);
// when one goes down (or is removed) exactly the keys it owned move, spread
// evenly over the others, and the others keep theirs; when it is back
// every key is where it was.
func TestRendezvousMovesOnlyTheLeaversKeys(t *testing.T) {
	const keys, n = 100_000, 5
	b := &balancer[struct{}]{now: time.Now}
	eps := testEndpoints(n)
	idx := func(ep *endpoint[struct{}]) int { return slices.Index(eps, ep) }
	before := make([]int, keys)
	share := make([]int, n)
	for k := range keys {
		o := idx(b.owner(eps, keyHash(k), nil))
		if again := idx(b.owner(eps, keyHash(k), nil)); again != o {
			t.Fatalf("key %d: owner %d, then %d", k, o, again)
		}
		before[k] = o
		share[o]++
	}
	checkShares(t, share, keys, n)

	for _, how := range []string{"down", "removed"} {
		t.Run(how, func(t *testing.T) {
			const gone = 2
			set := eps
			if how == "down" {
				eps[gone].downUntil.Store(time.Now().Add(time.Hour).UnixNano())
				defer eps[gone].downUntil.Store(0)
			} else {
				set = slices.Delete(slices.Clone(eps), gone, gone+1)
			}
			moved, owned := 0, 0
			share := make([]int, n)
			for k := range keys {
				o := idx(b.owner(set, keyHash(k), nil))
				if o == gone {
					t.Fatalf("key %d still on the endpoint gone", k)
				}
				if before[k] == gone {
					owned++
				}
				if o != before[k] {
					moved++
					if before[k] != gone {
						t.Fatalf("key %d moved from %d, which is still there, to %d", k, before[k], o)
					}
					share[o]++
				}
			}
			if moved != owned {
				t.Fatalf("%d keys moved, the endpoint gone owned %d", moved, owned)
			}
			// The moved keys spread over the four others: a quarter each.
			share = slices.Delete(share, gone, gone+1)
			checkShares(t, share, moved, n-1)
		})
	}
	for k := range keys {
		if o := idx(b.owner(eps, keyHash(k), nil)); o != before[k] {
			t.Fatalf("back: key %d on %d, was on %d", k, o, before[k])
		}
	}
}

// checkShares fails unless each of the n counts is total/n within 1 %
// of total (or 5 % of the share, for small totals).
func checkShares(t *testing.T, share []int, total, n int) {
	t.Helper()
	want := float64(total) / float64(n)
	tol := max(0.01*float64(total), 0.05*want)
	for i, got := range share {
		if math.Abs(float64(got)-want) > tol {
			t.Errorf("endpoint %d owns %d of %d keys, want %.0f ± %.0f (shares %v)", i, got, total, want, tol, share)
		}
	}
}

// TestAffinityKeyRule: the key is the values of the attributes, in their
// order; a resource with none of them has no key.
func TestAffinityKeyRule(t *testing.T) {
	attrs := []string{"k8s.namespace.name", "k8s.pod.name"}
	res := func(kv ...string) *event.Resource {
		r := &event.Resource{}
		for i := 0; i < len(kv); i += 2 {
			r.Attrs = append(r.Attrs, event.KeyValue{Key: kv[i], Value: event.String(kv[i+1])})
		}
		return r
	}
	a, okA := affinityKey(attrs, res("k8s.namespace.name", "shop", "k8s.pod.name", "web-1", "host.name", "n1"))
	b, okB := affinityKey(attrs, res("host.name", "n2", "k8s.pod.name", "web-1", "k8s.namespace.name", "shop"))
	if !okA || !okB || a != b {
		t.Errorf("same values, other attributes: keys %x %v, %x %v; want equal", a, okA, b, okB)
	}
	c, _ := affinityKey(attrs, res("k8s.namespace.name", "shopweb-1"))
	d, _ := affinityKey(attrs, res("k8s.pod.name", "shopweb-1"))
	if c == a || c == d {
		t.Errorf("values moved between attributes share a key")
	}
	if _, ok := affinityKey(attrs, res("service.name", "x")); ok {
		t.Errorf("a resource without the attributes has a key")
	}
	if _, ok := affinityKey(attrs, nil); ok {
		t.Errorf("no resource has a key")
	}
}

func TestAffinityOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		keys []string
	}{
		{"no attributes", Options{Endpoints: []string{"http://a:4317", "http://b:4317"}, Affinity: &AffinityOptions{}}, []string{"affinity.resource_attributes"}},
		{"empty and twice", Options{Endpoints: []string{"http://a:4317", "http://b:4317"}, Affinity: &AffinityOptions{ResourceAttributes: []string{"k8s.pod.uid", "", "k8s.pod.uid"}}}, []string{"affinity.resource_attributes.1", "affinity.resource_attributes.2"}},
		{"one endpoint", Options{Endpoint: "http://a:4317", Affinity: &AffinityOptions{ResourceAttributes: []string{"k8s.pod.uid"}}}, []string{"affinity"}},
		{"good", Options{Endpoints: []string{"http://a:4317"}, Affinity: &AffinityOptions{ResourceAttributes: []string{"k8s.pod.uid"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.QueueOptions = export.DefaultQueueOptions()
			_, err := Resolve(ProtocolGRPC, o, func(string) string { return "" })
			var got []string
			for _, e := range unjoin(err) {
				fe, ok := e.(*config.FieldError)
				if !ok {
					t.Fatalf("error %v is not a FieldError", e)
				}
				got = append(got, fe.Key)
			}
			if !slices.Equal(got, tc.keys) {
				t.Errorf("errors at %v (%v), want %v", got, err, tc.keys)
			}
		})
	}
}

// keyReceiver is a restartable OTLP receiver (gRPC or HTTP) on a fixed
// loopback address that records, per k8s.pod.uid (or "" without one), the
// seq attributes it received.
type keyReceiver struct {
	backend
	mu   sync.Mutex
	seqs map[string][]int64
}

func newKeyReceiver(t *testing.T, protocol string) *keyReceiver {
	t.Helper()
	r := &keyReceiver{backend: backend{t: t, protocol: protocol, addr: "127.0.0.1:0"}, seqs: map[string][]int64{}}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.kill)
	return r
}

func (r *keyReceiver) take(req *collogspb.ExportLogsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range req.ResourceLogs {
		key := ""
		for _, kv := range rl.GetResource().GetAttributes() {
			if kv.Key == "k8s.pod.uid" {
				key = kv.Value.GetStringValue()
			}
		}
		r.seqs[key] = append(r.seqs[key], seqs([]*collogspb.ExportLogsServiceRequest{{ResourceLogs: []*logspb.ResourceLogs{rl}}})...)
	}
}

func (r *keyReceiver) start() error {
	lis, err := net.Listen("tcp", r.addr)
	if err != nil {
		return err
	}
	r.addr = lis.Addr().String()
	r.backend.mu.Lock()
	defer r.backend.mu.Unlock()
	if r.protocol == ProtocolGRPC {
		//lint:ignore SA1019 the test server decompresses with its own implementation.
		srv := grpc.NewServer(grpc.RPCDecompressor(&countingDecompressor{name: "gzip"}))
		collogspb.RegisterLogsServiceServer(srv, &logsServer{reply: func(req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
			r.take(req)
			return &collogspb.ExportLogsServiceResponse{}, nil
		}})
		go srv.Serve(lis)
		r.stop = srv.Stop
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		body, _ := io.ReadAll(hr.Body)
		var req collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.take(&req)
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(lis)
	r.stop = func() { srv.Close() }
	return nil
}

// snapshot returns the receiver's seqs by key and forgets them.
func (r *keyReceiver) snapshot() map[string][]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seqs
	r.seqs = map[string][]int64{}
	return s
}

// TestAffinityKeepsKeysOnTheirEndpoint: requests mixing 40 pods (and
// records of no pod) are split so that every pod's records reach one
// receiver, none missing or twice; the records of no pod are spread. When
// one receiver is stopped, its pods move and the others' stay; when it is
// back, its pods return to it.
func TestAffinityKeepsKeysOnTheirEndpoint(t *testing.T) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			var rs []*keyReceiver
			var eps []string
			for range 3 {
				r := newKeyReceiver(t, protocol)
				rs, eps = append(rs, r), append(eps, r.endpoint())
			}
			o := DefaultOptions()
			o.Endpoints = eps
			o.Compression = "gzip"
			if protocol == ProtocolHTTP {
				o.Compression = "none"
			}
			o.Timeout = 10 * time.Second // a receiver that is up never times out, even on a loaded machine
			o.Retry.InitialInterval = 50 * time.Millisecond
			o.Retry.MaxInterval = 100 * time.Millisecond
			o.Affinity = &AffinityOptions{ResourceAttributes: []string{"k8s.pod.uid"}}
			c := newClient(t, protocol, o)

			const pods = 40
			resources := make([]*event.Resource, pods+1)
			for i := range pods {
				resources[i] = &event.Resource{Attrs: []event.KeyValue{
					{Key: "service.name", Value: event.String("web")},
					{Key: "k8s.pod.uid", Value: event.String("pod-" + strconv.Itoa(i))}}}
			}
			resources[pods] = &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("host")}}}
			seq := int64(0)
			// phase sends requests of 8 batches of 5 records, each batch
			// of a resource in turn, and returns where each key went.
			phase := func(requests int) map[string]int {
				t.Helper()
				first := seq
				for range requests {
					var batches []*event.Batch
					for range 8 {
						b := event.NewBatch()
						b.Resource = resources[int(seq/5)%len(resources)]
						for range 5 {
							seq++
							b.Records = append(b.Records, event.Record{Body: event.String("line"), Attrs: []event.KeyValue{{Key: "seq", Value: event.Int(seq)}}})
						}
						batches = append(batches, b)
					}
					if err := c.Send(context.Background(), batches); err != nil {
						t.Fatalf("send: %v", err)
					}
				}
				where := map[string]int{}
				var got []int64
				for i, r := range rs {
					for key, s := range r.snapshot() {
						got = append(got, s...)
						if key == "" {
							where[""] |= 1 << i
							continue
						}
						if w, ok := where[key]; ok && w != i {
							t.Errorf("pod %s on receivers %d and %d", key, w, i)
						}
						where[key] = i
					}
				}
				sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
				if len(got) != int(seq-first) || got[0] != first+1 || got[len(got)-1] != seq {
					t.Fatalf("received %d records, want %d (%d..%d)", len(got), seq-first, first+1, seq)
				}
				for i := 1; i < len(got); i++ {
					if got[i] != got[i-1]+1 {
						t.Fatalf("record %d missing or twice (after %d)", got[i-1]+1, got[i-1])
					}
				}
				return where
			}

			stable := phase(40)
			if len(stable) != pods+1 {
				t.Fatalf("%d keys received, want %d", len(stable)-1, pods)
			}
			owned := make([]int, 3)
			for key, i := range stable {
				if key != "" {
					owned[i]++
				}
			}
			if slices.Contains(owned, 0) {
				t.Fatalf("pods per receiver %v: one got none", owned)
			}
			if w := stable[""]; w&(w-1) == 0 {
				t.Errorf("records without a pod all went to one receiver (mask %b)", w)
			}
			if again := phase(10); !equalKeys(stable, again) {
				t.Errorf("pods moved while the receivers were stable:\n%v\n%v", stable, again)
			}

			const gone = 1
			rs[gone].kill()
			moved := phase(20)
			for key, i := range moved {
				if key == "" {
					continue
				}
				switch {
				case i == gone:
					t.Errorf("pod %s reached the stopped receiver", key)
				case stable[key] != gone && i != stable[key]:
					t.Errorf("pod %s moved from receiver %d, which is up, to %d", key, stable[key], i)
				}
			}

			if err := rs[gone].start(); err != nil {
				t.Fatal(err)
			}
			// Send until the stopped receiver is probed back and up.
			for i := 0; ; i++ {
				phase(1)
				if st := c.(interface{ Endpoints() []EndpointStats }).Endpoints(); st[gone].State == EndpointUp {
					break
				}
				if i > 1000 {
					t.Fatal("the receiver back was never probed")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if back := phase(20); !equalKeys(stable, back) {
				t.Errorf("pods not back where they were:\n%v\n%v", stable, back)
			}
		})
	}
}

// equalKeys reports whether every pod of a is on the same receiver in b.
func equalKeys(a, b map[string]int) bool {
	for key, i := range b {
		if key != "" && a[key] != i {
			return false
		}
	}
	return true
}

// ring is a consistent-hash ring with virtual nodes, the alternative to
// rendezvous hashing measured by BenchmarkAffinityOwner.
type ring struct {
	points []uint64
	owners []int
}

func newRing(eps []*endpoint[struct{}], vnodes int) *ring {
	r := &ring{}
	type pt struct {
		h uint64
		o int
	}
	var pts []pt
	for i, ep := range eps {
		for v := range vnodes {
			pts = append(pts, pt{mix64(ep.hash ^ mix64(uint64(v)+1)), i})
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].h < pts[j].h })
	for _, p := range pts {
		r.points, r.owners = append(r.points, p.h), append(r.owners, p.o)
	}
	return r
}

func (r *ring) owner(key uint64) int {
	k := mix64(key)
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= k })
	if i == len(r.points) {
		i = 0
	}
	return r.owners[i]
}

// BenchmarkAffinityOwner measures the lookup of a key's owner with
// rendezvous hashing and with a ring of 100 virtual nodes per endpoint, and
// reports the spread of 100,000 keys: the largest share of an endpoint
// over the fair one (1 is perfect).
func BenchmarkAffinityOwner(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		eps := testEndpoints(n)
		spread := func(owner func(uint64) int) float64 {
			share := make([]int, n)
			for k := range 100_000 {
				share[owner(keyHash(k))]++
			}
			return float64(slices.Max(share)) / (100_000 / float64(n))
		}
		lb := &balancer[struct{}]{now: time.Now}
		b.Run(fmt.Sprintf("rendezvous/%d", n), func(b *testing.B) {
			for i := range b.N {
				lb.owner(eps, uint64(i)*0x9e3779b97f4a7c15, nil)
			}
			b.StopTimer()
			b.ReportMetric(spread(func(k uint64) int { return slices.Index(eps, lb.owner(eps, k, nil)) }), "max/fair")
		})
		r := newRing(eps, 100)
		b.Run(fmt.Sprintf("ring100/%d", n), func(b *testing.B) {
			for i := range b.N {
				r.owner(uint64(i) * 0x9e3779b97f4a7c15)
			}
			b.StopTimer()
			b.ReportMetric(spread(r.owner), "max/fair")
		})
	}
}

// TestAffinityThroughQueue: a queue in front of an affinity client, with
// batches large enough to be encoded ahead and small ones, of 40 pods and
// of no pod, to three gRPC receivers. Without failures every pod reaches
// one receiver; with receivers failing a quarter of their calls, parts go
// to the next owner. Either way no record is missing, duplicates are
// bounded by the retries, and every batch is acknowledged once.
func TestAffinityThroughQueue(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprintf("failing=%v", failing), func(t *testing.T) {
			tally, eps := startPodReceivers(t, 3, func(call int64) bool { return failing && call%4 == 1 })
			o := DefaultOptions()
			o.Endpoints = eps
			o.Retry.InitialInterval = 5 * time.Millisecond
			o.Retry.MaxInterval = 20 * time.Millisecond
			o.Batch.MaxRecords = 200
			o.Batch.Timeout = 5 * time.Millisecond
			o.Affinity = &AffinityOptions{ResourceAttributes: []string{"k8s.pod.uid"}}
			c := newClient(t, ProtocolGRPC, o)
			if _, ok := c.(export.PartEncoder); !ok {
				t.Fatal("the affinity client does not encode batches ahead")
			}
			q := export.NewQueue("otlp", c, o.QueueOptions, nil)
			q.Start()
			resources := make([]*event.Resource, 41)
			for i := range 40 {
				resources[i] = &event.Resource{Attrs: []event.KeyValue{{Key: "k8s.pod.uid", Value: event.String(fmt.Sprintf("pod-%d", i))}}}
			}
			resources[40] = &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("host")}}}
			const batches = 400
			acked := make([]atomic.Int32, batches)
			seq, total := int64(0), 0
			var pool event.Pool
			for id := range batches {
				b := pool.Get()
				b.Resource = resources[id%len(resources)]
				n := 10
				if id%3 == 0 {
					n = export.PartRecords + 18
				}
				for range n {
					r := b.Next()
					r.Body = event.String(b.CopyString("line"))
					r.Attrs = append(r.Attrs, event.KeyValue{Key: "seq", Value: event.Int(seq)})
					seq++
				}
				total += n
				b.SetAck(func() { acked[id].Add(1) })
				if err := q.Enqueue(t.Context(), b); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			tally.mu.Lock()
			defer tally.mu.Unlock()
			checkSequence(t, total, seqs(tally.accepted), q.Stats(), o.Batch.MaxRecords)
			if failing {
				if !slices.ContainsFunc(c.(sender).Endpoints(), func(e EndpointStats) bool { return e.Errors > 0 }) {
					t.Error("no call failed: the receivers were meant to fail some")
				}
			} else {
				if len(tally.pods) != 40 {
					t.Errorf("%d pods received, want 40", len(tally.pods))
				}
				for pod, m := range tally.pods {
					if m&(m-1) != 0 {
						t.Errorf("pod %s reached receivers %03b", pod, m)
					}
				}
			}
			for id := range acked {
				if n := acked[id].Load(); n != 1 {
					t.Fatalf("batch %d acknowledged %d times, want 1", id, n)
				}
			}
		})
	}
}

// TestAffinitySplitsWhatIsTooLarge: receivers that take messages of 8 KiB
// at most get each owner's call in pieces (each key alone, then halves),
// every record once and each pod on one receiver; a record larger than
// that on its own is rejected, and counted.
func TestAffinitySplitsWhatIsTooLarge(t *testing.T) {
	tally, eps := startPodReceivers(t, 3, nil, grpc.MaxRecvMsgSize(8<<10))
	o := DefaultOptions()
	o.Endpoints = eps
	o.Compression = "none"
	o.Affinity = &AffinityOptions{ResourceAttributes: []string{"k8s.pod.uid"}}
	c := newClient(t, ProtocolGRPC, o)
	var batches []*event.Batch
	seq := int64(0)
	for p := range 12 {
		b := event.NewBatch()
		b.Resource = &event.Resource{Attrs: []event.KeyValue{{Key: "k8s.pod.uid", Value: event.String(fmt.Sprintf("pod-%d", p))}}}
		for range 40 {
			body := strings.Repeat("x", 100)
			if seq == 77 {
				body = strings.Repeat("y", 10<<10) // too large alone
			}
			b.Records = append(b.Records, event.Record{Body: event.String(body), Attrs: []event.KeyValue{{Key: "seq", Value: event.Int(seq)}}})
			seq++
		}
		batches = append(batches, b)
	}
	err := c.Send(t.Context(), batches)
	var pe *export.PartialError
	if !errors.As(err, &pe) || pe.Rejected != 1 {
		t.Fatalf("Send: %v; want 1 record rejected", err)
	}
	tally.mu.Lock()
	defer tally.mu.Unlock()
	count := make([]int, seq)
	for _, s := range seqs(tally.accepted) {
		count[s]++
	}
	for s, n := range count {
		if want := 1 - b2i(s == 77); n != want {
			t.Errorf("record %d received %d times, want %d", s, n, want)
		}
	}
	for pod, m := range tally.pods {
		if m&(m-1) != 0 {
			t.Errorf("pod %s reached receivers %03b", pod, m)
		}
	}
	if len(tally.accepted) <= 3 {
		t.Errorf("%d requests accepted: nothing was split", len(tally.accepted))
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// podTally is what receivers started by startPodReceivers accepted: the
// requests, and the receivers each k8s.pod.uid reached (a mask).
type podTally struct {
	mu       sync.Mutex
	accepted []*collogspb.ExportLogsServiceRequest
	pods     map[string]uint8
}

// startPodReceivers starts n gRPC receivers (with opts) recording in a
// podTally and returns it with their endpoints. fail, when not nil, makes
// a receiver answer Unavailable to the call of that number (from 1).
func startPodReceivers(t *testing.T, n int, fail func(call int64) bool, opts ...grpc.ServerOption) (*podTally, []string) {
	tally := &podTally{pods: map[string]uint8{}}
	var eps []string
	for i := range n {
		var calls atomic.Int64
		s := &logsServer{reply: func(req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
			if fail != nil && fail(calls.Add(1)) {
				return nil, status.Error(codes.Unavailable, "restarting")
			}
			tally.mu.Lock()
			defer tally.mu.Unlock()
			tally.accepted = append(tally.accepted, req)
			for _, rl := range req.ResourceLogs {
				for _, kv := range rl.GetResource().GetAttributes() {
					if kv.Key == "k8s.pod.uid" {
						tally.pods[kv.Value.GetStringValue()] |= 1 << i
					}
				}
			}
			return &collogspb.ExportLogsServiceResponse{}, nil
		}}
		eps = append(eps, "http://"+startGRPC(t, s, opts...))
	}
	return tally, eps
}
