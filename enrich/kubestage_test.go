package enrich

import (
	"bytes"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/stages/stagetest"
	"github.com/logpump/logpump/parse"
)

// scripted is a Metadata whose pod answer is chosen per lookup: the stage
// looks a pod log up once per batch, so script(n) is what the watch knows at
// the n-th batch of a pod log.
type scripted struct {
	script func(n int) *PodMeta
	n      int
}

func (s *scripted) Pod(*PodLog) *PodMeta {
	p := s.script(s.n)
	s.n++
	return p
}
func (s *scripted) Namespace(string) *ObjectMeta { return nil }
func (s *scripted) Node() *ObjectMeta            { return nil }

// annotated is the pod web-1 (UID uid-1) with annotations.
func annotated(kv ...string) *PodMeta {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &PodMeta{UID: "uid-1", Namespace: "shop", Name: "web-1", Annotations: m}
}

// counts records the stage's drop and error counts by reason.
type counts map[string]int

func (c counts) add(reason string, n int) { c[reason] += n }

// annotationStage builds the stage over script with the parsers json and
// logfmt, and multiline joining by preset or start pattern.
func annotationStage(t *testing.T, script func(n int) *PodMeta, log *bytes.Buffer, dropped, errored counts) func(in ...*event.Batch) []*event.Batch {
	t.Helper()
	md := &scripted{script: script}
	now := func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }
	s, err := KubernetesMetadata(KubernetesOptions{Metadata: &MetadataOptions{}}, "node-a", MetadataEnv{
		Watch:   func() (Metadata, func()) { return md, func() {} },
		Log:     slog.New(slog.NewTextHandler(log, nil)),
		Dropped: dropped.add, Errored: errored.add,
		Parser: func(name string) (*parse.Parser, error) {
			switch name {
			case "json":
				return parse.NewJSONParser(parse.JSONOptions{}, now, nil)
			case "logfmt":
				return parse.NewLogfmtParser(parse.LogfmtOptions{}, now, nil)
			}
			return nil, fmt.Errorf("unknown parser %q", name)
		},
		Multiline: func(v string) (*parse.Joining, error) {
			o := parse.MultilineOptions{Start: v}
			if parse.IsMultilinePreset(v) {
				o = parse.MultilineOptions{Preset: v}
			} else if _, err := regexp.Compile(v); err != nil {
				return nil, err
			}
			return parse.NewJoining(o, now)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return func(in ...*event.Batch) []*event.Batch { return stagetest.Run(s, in...) }
}

const (
	nginxPath   = "/var/log/pods/shop_web-1_uid-1/nginx/0.log"
	sidecarPath = "/var/log/pods/shop_web-1_uid-1/sidecar/0.log"
)

// seqLines returns n lines "seq=<i>" from first on.
func seqLines(first, n int) []string {
	var ls []string
	for i := first; i < first+n; i++ {
		ls = append(ls, fmt.Sprintf("seq=%d", i))
	}
	return ls
}

// seqs lists the sequence numbers of the records in bs, in order.
func seqs(bs []*event.Batch) []int {
	var got []int
	for _, b := range bs {
		for _, r := range b.Records {
			var n int
			if _, err := fmt.Sscanf(r.Body.Str, "seq=%d", &n); err == nil {
				got = append(got, n)
			}
		}
	}
	return got
}

func seqRange(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// TestAnnotationExclude: a pod's records pass while the pod is unknown,
// are dropped (counted, acknowledged) once the exclude annotation is seen, a
// container's "false" overrides the pod's "true", and removing the
// annotation on the running stage brings the records back. Every line is
// accounted for by sequence number.
func TestAnnotationExclude(t *testing.T) {
	excluded := annotated("logpump.io/exclude", "true", "logpump.io/exclude-sidecar", "false")
	// Lookups: nginx b0, nginx b1, sidecar b2, nginx b3, nginx b4.
	script := func(n int) *PodMeta {
		switch n {
		case 0:
			return nil // not known yet
		case 1, 2:
			return excluded
		default:
			return annotated() // annotation removed
		}
	}
	dropped, errored := counts{}, counts{}
	var log bytes.Buffer
	run := annotationStage(t, script, &log, dropped, errored)
	acks := stagetest.NewAcks()
	nginx := stagetest.File{Path: nginxPath, Ino: 1}
	sidecar := stagetest.File{Path: sidecarPath, Ino: 2}
	b0, _ := acks.Batch(nginx, 0, seqLines(0, 3)...)
	b1, _ := acks.Batch(nginx, b0.End, seqLines(3, 4)...)
	b2, _ := acks.Batch(sidecar, 0, seqLines(100, 2)...)
	b3, _ := acks.Batch(nginx, b1.End, seqLines(7, 2)...)
	b4, _ := acks.Batch(nginx, b3.End, seqLines(9, 1)...)
	out := run(b0, b1, b2, b3, b4)

	if diff := cmp.Diff(append(append(seqRange(0, 3), 100, 101), seqRange(7, 10)...), seqs(out)); diff != "" {
		t.Errorf("records passed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(counts{"excluded": 4}, dropped); diff != "" {
		t.Errorf("drops (-want +got):\n%s", diff)
	}
	if len(errored) != 0 || log.Len() != 0 {
		t.Errorf("errors %v, log %q; want none", errored, log.String())
	}
	stagetest.Release(out)
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4}, acks.AckedIDs()); diff != "" {
		t.Errorf("acknowledged batches (-want +got):\n%s", diff)
	}
}

// TestAnnotationParser: the parser annotation applies to the batches after
// it is seen, per container over pod, "none" turns it off, and an unknown
// parser is reported once and leaves the records unparsed (never dropped),
// counted as invalid_annotation.
func TestAnnotationParser(t *testing.T) {
	line := `{"seq":1,"msg":"hi"}`
	script := func(n int) *PodMeta {
		switch n {
		case 0:
			return nil
		case 1:
			return annotated("logpump.io/parser", "json")
		case 2:
			return annotated("logpump.io/parser", "json", "logpump.io/parser-nginx", "none")
		default: // a new version of the pod each time, same bad value
			return annotated("logpump.io/parser", "yaml")
		}
	}
	dropped, errored := counts{}, counts{}
	var log bytes.Buffer
	run := annotationStage(t, script, &log, dropped, errored)
	acks := stagetest.NewAcks()
	nginx := stagetest.File{Path: nginxPath, Ino: 1}
	var in []*event.Batch
	var off int64
	for range 5 {
		b, _ := acks.Batch(nginx, off, line, line)
		off = b.End
		in = append(in, b)
	}
	out := run(in...)
	var got []string
	for _, b := range out {
		if len(b.Records) != 2 {
			t.Fatalf("batch has %d records, want 2 (none dropped)", len(b.Records))
		}
		r := b.Records[0]
		v, _ := event.Lookup(r.Attrs, "msg")
		got = append(got, fmt.Sprintf("msg=%q parse_error=%v", v.Str, r.Flags&event.ParseError != 0))
	}
	want := []string{
		`msg="" parse_error=false`, // pod not known yet: unchanged
		`msg="hi" parse_error=false`,
		`msg="" parse_error=false`, // parser-nginx: none
		`msg="" parse_error=false`, // unknown parser: unparsed
		`msg="" parse_error=false`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if n := strings.Count(log.String(), "invalid pod annotation"); n != 1 {
		t.Errorf("invalid annotation reported %d times, want once:\n%s", n, log.String())
	}
	for _, w := range []string{"logpump.io/parser", "yaml", "unknown parser", "pod=web-1"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("report %q does not name %q", log.String(), w)
		}
	}
	if diff := cmp.Diff(counts{"invalid_annotation": 4}, errored); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if len(dropped) != 0 {
		t.Errorf("drops %v, want none", dropped)
	}
	stagetest.Release(out)
	if len(acks.AckedIDs()) != 5 {
		t.Errorf("acknowledged %v, want all 5", acks.AckedIDs())
	}
}

// TestAnnotationMultiline: the multiline annotation joins a container's
// lines across batches with a start pattern, the joined event is parsed by
// the parser annotation as a whole, and the batch an event started in is
// acknowledged only when the event is.
func TestAnnotationMultiline(t *testing.T) {
	pod := annotated("logpump.io/multiline-nginx", `^\{`, "logpump.io/parser", "json")
	script := func(int) *PodMeta { return pod }
	dropped, errored := counts{}, counts{}
	var log bytes.Buffer
	run := annotationStage(t, script, &log, dropped, errored)
	acks := stagetest.NewAcks()
	nginx := stagetest.File{Path: nginxPath, Ino: 1}
	b0, id0 := acks.Batch(nginx, 0, `{"seq":1,`, `"msg":"a"}`, `{"seq":2,`)
	b1, id1 := acks.Batch(nginx, b0.End, `"msg":"b"}`, `{"seq":3,"msg":"c"}`)
	event2 := b0.Records[2].Offset
	out := run(b0, b1)
	var got []string
	for _, b := range out {
		for _, r := range b.Records {
			v, _ := event.Lookup(r.Attrs, "msg")
			got = append(got, v.Str)
		}
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, got); diff != "" {
		t.Errorf("joined and parsed messages (-want +got):\n%s", diff)
	}
	if log.Len() != 0 || len(errored) != 0 || len(dropped) != 0 {
		t.Errorf("log %q, errors %v, drops %v; want none", log.String(), errored, dropped)
	}
	// Release everything but the batch holding event 2: b0 must wait.
	var held *event.Batch
	for _, b := range out {
		if b != b0 && b != b1 && len(b.Records) == 1 && b.Records[0].Offset == event2 {
			held = b
			continue
		}
		b.Done()
	}
	if held == nil {
		t.Fatal("event 2, spanning b0 and b1, was not emitted in a batch of its own")
	}
	if acks.Acked(id0) {
		t.Error("b0 acknowledged before the event that started in it")
	}
	held.Done()
	if !acks.Acked(id0) || !acks.Acked(id1) {
		t.Errorf("acknowledged %v, want both batches", acks.AckedIDs())
	}
}

// TestAnnotationMultilineInvalid: a bad pattern is reported once and the
// lines pass one by one.
func TestAnnotationMultilineInvalid(t *testing.T) {
	pod := annotated("logpump.io/multiline", `(`)
	dropped, errored := counts{}, counts{}
	var log bytes.Buffer
	run := annotationStage(t, func(int) *PodMeta { return pod }, &log, dropped, errored)
	acks := stagetest.NewAcks()
	b0, _ := acks.Batch(stagetest.File{Path: nginxPath, Ino: 1}, 0, seqLines(0, 3)...)
	b1, _ := acks.Batch(stagetest.File{Path: nginxPath, Ino: 1}, b0.End, seqLines(3, 3)...)
	out := run(b0, b1)
	if diff := cmp.Diff(seqRange(0, 6), seqs(out)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if n := strings.Count(log.String(), "invalid pod annotation"); n != 1 {
		t.Errorf("reported %d times, want once: %s", n, log.String())
	}
	if errored["invalid_annotation"] != 6 {
		t.Errorf("errors %v, want 6 invalid_annotation", errored)
	}
	stagetest.Release(out)
}

func TestAnnotationsOptions(t *testing.T) {
	no := false
	tests := []struct {
		o    KubernetesOptions
		on   bool
		pfx  string
		fail string
	}{
		{KubernetesOptions{}, false, "", ""},
		{KubernetesOptions{Metadata: &MetadataOptions{}}, true, "logpump.io", ""},
		{KubernetesOptions{Metadata: &MetadataOptions{}, Annotations: &AnnotationOptions{Prefix: "example.com"}}, true, "example.com", ""},
		{KubernetesOptions{Metadata: &MetadataOptions{}, Annotations: &AnnotationOptions{Enabled: &no}}, false, "", ""},
		{KubernetesOptions{Annotations: &AnnotationOptions{}}, false, "", "need metadata"},
		{KubernetesOptions{Annotations: &AnnotationOptions{Enabled: &no}}, false, "", ""},
		{KubernetesOptions{Metadata: &MetadataOptions{}, Annotations: &AnnotationOptions{Prefix: "logpump.io/x"}}, true, "logpump.io/x", "annotations.prefix"},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if tt.fail == "" && err != nil || tt.fail != "" && (err == nil || !strings.Contains(err.Error(), tt.fail)) {
			t.Errorf("Validate(%+v) = %v, want error %q", tt.o, err, tt.fail)
		}
		if on, pfx := tt.o.annotationsOn(); on != tt.on || pfx != tt.pfx {
			t.Errorf("annotationsOn(%+v) = %v %q, want %v %q", tt.o, on, pfx, tt.on, tt.pfx)
		}
	}
}

// BenchmarkKubernetesAnnotationsNone measures the stage on a pod with
// metadata but no steering annotation: the path every unannotated pod takes.
func BenchmarkKubernetesAnnotationsNone(b *testing.B) {
	md := fixed{&PodMeta{UID: "uid-1", Annotations: map[string]string{"owner": "x"}}}
	s, _ := KubernetesMetadata(KubernetesOptions{Metadata: &MetadataOptions{}}, "node-a",
		MetadataEnv{Watch: func() (Metadata, func()) { return md, func() {} }})
	stagetest.Bench(b, s, []string{"GET /api/orders 200 12ms"}, 1000)
}

// TestAnnotationMultilineStreams: stdout and stderr lines of one container
// (log.iostream, set by the container parser) are joined separately, even
// when they interleave.
func TestAnnotationMultilineStreams(t *testing.T) {
	pod := annotated("logpump.io/multiline", "java")
	dropped, errored := counts{}, counts{}
	var log bytes.Buffer
	run := annotationStage(t, func(int) *PodMeta { return pod }, &log, dropped, errored)
	acks := stagetest.NewAcks()
	lines := []string{"out 1", "err 1", "\tat err.frame(A.java:1)", "\tat out.frame(B.java:2)", "err 2", "out 2"}
	streams := []string{"stdout", "stderr", "stderr", "stdout", "stderr", "stdout"}
	b, _ := acks.Batch(stagetest.File{Path: nginxPath, Ino: 1}, 0, lines...)
	for i := range b.Records {
		b.Records[i].Attrs = append(b.Records[i].Attrs, event.KeyValue{Key: "log.iostream", Value: event.String(streams[i])})
	}
	out := run(b)
	var got []string
	for _, o := range out {
		for _, r := range o.Records {
			got = append(got, r.Body.Str)
		}
	}
	want := []string{"out 1\n\tat out.frame(B.java:2)", "err 1\n\tat err.frame(A.java:1)", "err 2", "out 2"}
	if diff := cmp.Diff(want, got, cmpSorted()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	stagetest.Release(out)
	if len(acks.AckedIDs()) != 1 {
		t.Error("the batch was not acknowledged once its events were")
	}
}

func cmpSorted() cmp.Option {
	return cmp.Transformer("sort", func(in []string) []string {
		out := append([]string(nil), in...)
		slices.Sort(out)
		return out
	})
}
