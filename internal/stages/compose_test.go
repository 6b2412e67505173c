package stages

import (
	"flag"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages/stagetest"
	"github.com/logpump/logpump/route"
)

var update = flag.Bool("update", false, "rewrite golden files")

// composeConfig is the processors section of the composition test: the
// chain a Kubernetes node runs for a Java service that logs JSON.
const composeConfig = `
container: {type: container}
stacktraces: {type: multiline, preset: java}
json:
  type: json
  body_field: msg
  timestamp: {field: time}
  severity: {field: level}
no_health: {type: filter, drop: 'body endsWith "/healthz 200"'}
pod: {type: kubernetes, node_name: node-a}
pii: {type: redact, presets: [email, credit_card]}
`

// TestCompose runs container -> multiline -> json -> filter -> kubernetes ->
// redact -> route over a CRI pod log, split into batches of every size from
// 1 to 5 lines, and compares what each exporter receives with
// testdata/compose_EXPORTER.golden. Every input batch must be acknowledged
// once each exporter released its part, and not before.
func TestCompose(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(composeConfig), &doc); err != nil {
		t.Fatal(err)
	}
	procs := map[string]config.Component{}
	if err := config.Decode(&doc, "processors", &procs); err != nil {
		t.Fatal(err)
	}
	order := []string{"container", "stacktraces", "json", "no_health", "pod", "pii"}
	env := Env{Now: func() time.Time { return time.Date(2024, 5, 1, 12, 0, 10, 0, time.UTC) }}
	drops := map[string]int{}
	env.Dropped = func(p, reason string, n int) { drops[p+"/"+reason] += n }
	var chain []pipe.Stage
	for _, name := range order {
		c := procs[name]
		c.Key = "processors." + name
		s, err := Build(c, env)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, s)
	}
	stage := pipe.Chain(chain...)

	lines := stagetest.FileLines(t, filepath.Join("testdata", "checkout.log"))
	res := &event.Resource{Attrs: []event.KeyValue{{Key: "host.name", Value: event.String("node-a")}}}
	file := stagetest.File{Path: "/var/log/pods/shop_checkout-6d5f7c9b8-q7x2p_5b2e8c1d-7a3f-4e9b-8c6d-0f1a2b3c4d5e/checkout/0.log", Ino: 11, Resource: res}
	var firstRun map[string]string
	for size := 1; size <= 5; size++ {
		clear(drops)
		table, err := route.New([]route.Rule{
			{When: `severity >= ERROR`, Exporters: []string{"alerts"}, Continue: true},
			{Exporters: []string{"main"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		acks := stagetest.NewAcks()
		var in []*event.Batch
		var off int64
		for i := 0; i < len(lines); i += size {
			b, _ := acks.Batch(file, off, lines[i:min(i+size, len(lines))]...)
			off = b.End
			in = append(in, b, stagetest.Tick())
		}
		perExporter := map[string][]*event.Batch{}
		var held []*event.Batch
		for b := range stage(slices.Values(in)) {
			for _, d := range table.Split(b) {
				perExporter[d.Exporter] = append(perExporter[d.Exporter], d.Batch)
				held = append(held, d.Batch)
			}
		}
		got := map[string]string{}
		for exp, bs := range perExporter {
			got[exp] = stagetest.RenderByOffset(bs)
		}
		var dropped []string
		for k, n := range drops {
			dropped = append(dropped, k+": "+strconv.Itoa(n))
		}
		slices.Sort(dropped)
		got["drops"] = strings.Join(dropped, "\n") + "\n"
		wantBatches := (len(lines) + size - 1) / size
		if len(held) > 0 && len(acks.AckedIDs()) == wantBatches {
			t.Errorf("batch size %d: every batch acknowledged before the exporters released theirs", size)
		}
		stagetest.Release(held)
		if n := len(acks.AckedIDs()); n != wantBatches {
			t.Errorf("batch size %d: %d of %d batches acknowledged", size, n, wantBatches)
		}
		if size == 1 {
			firstRun = got
			for _, name := range []string{"main", "alerts", "drops"} {
				stagetest.Golden(t, filepath.Join("testdata", "compose_"+name+".golden"), got[name], *update)
			}
			continue
		}
		for name, text := range got {
			if text != firstRun[name] {
				t.Errorf("batch size %d: %s differs from batch size 1:\n%s", size, name, text)
			}
		}
	}
}
