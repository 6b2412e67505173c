package parse

import (
	"path/filepath"
	"testing"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

// Benchmarks run each parser over its committed sample, 1000 records per
// batch, and report ns/event and allocs/event. json_workload.log holds lines
// of bench/workload's json format, the shape the agent is profiled with.
func BenchmarkParse(b *testing.B) {
	ts := &TimeOptions{Field: "time"}
	sev := &SeverityOptions{Field: "level"}
	benches := []struct {
		name, input string
		stage       func() (pipe.Stage, error)
	}{
		{"json", "json.log", func() (pipe.Stage, error) {
			return JSON(JSONOptions{Options{Timestamp: ts, Severity: sev, BodyField: "msg"}}, fixedNow, nil)
		}},
		{"json_workload", "json_workload.log", func() (pipe.Stage, error) {
			return JSON(JSONOptions{Options{Timestamp: &TimeOptions{Field: "ts"}, Severity: sev, BodyField: "msg"}}, fixedNow, nil)
		}},
		{"json_body", "json.log", func() (pipe.Stage, error) {
			return JSON(JSONOptions{Options{Target: "body"}}, fixedNow, nil)
		}},
		{"logfmt", "logfmt.log", func() (pipe.Stage, error) {
			return Logfmt(LogfmtOptions{Options{Timestamp: ts, Severity: sev, BodyField: "msg"}}, fixedNow, nil)
		}},
		{"regex", "nginx.log", func() (pipe.Stage, error) {
			return Regex(RegexOptions{Pattern: `^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<bytes>\d+)`}, fixedNow, nil)
		}},
		{"key_value", "keyvalue.log", func() (pipe.Stage, error) { return KeyValue(KeyValueOptions{}, fixedNow, nil) }},
		{"csv", "csv.log", func() (pipe.Stage, error) {
			return CSV(CSVOptions{Header: []string{"time", "level", "service", "msg"}, Options: Options{Timestamp: ts, Severity: &SeverityOptions{Field: "level"}, BodyField: "msg"}}, fixedNow, nil)
		}},
		{"klog", "klog.log", func() (pipe.Stage, error) { return Klog(KlogOptions{}, fixedNow, nil) }},
		{"cri", "cri.log", func() (pipe.Stage, error) { return CRI(ContainerOptions{}, fixedNow, nil) }},
		{"docker", "docker.log", func() (pipe.Stage, error) { return Docker(ContainerOptions{}, fixedNow, nil) }},
		{"container", "container.log", func() (pipe.Stage, error) { return Container(ContainerOptions{}, fixedNow, nil) }},
		{"multiline_java", "java.log", func() (pipe.Stage, error) { return Multiline(MultilineOptions{Preset: "java"}, fixedNow) }},
		{"multiline_ruby", "ruby.log", func() (pipe.Stage, error) { return Multiline(MultilineOptions{Preset: "ruby"}, fixedNow) }},
		{"multiline_dotnet", "dotnet.log", func() (pipe.Stage, error) { return Multiline(MultilineOptions{Preset: "dotnet"}, fixedNow) }},
		{"multiline_nodejs", "nodejs.log", func() (pipe.Stage, error) { return Multiline(MultilineOptions{Preset: "nodejs"}, fixedNow) }},
		{"multiline_php", "php.log", func() (pipe.Stage, error) { return Multiline(MultilineOptions{Preset: "php"}, fixedNow) }},
		{"syslog", "syslog.log", func() (pipe.Stage, error) { return Syslog(SyslogOptions{}, fixedNow, nil) }},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			s, err := bb.stage()
			if err != nil {
				b.Fatal(err)
			}
			lines := stagetest.FileLines(b, filepath.Join("testdata", bb.input))
			b.Run("valid", func(b *testing.B) { stagetest.Bench(b, s, validLines(s, lines), 1000) })
			b.Run("sample", func(b *testing.B) { stagetest.Bench(b, s, lines, 1000) })
		})
	}
}

// validLines keeps the lines the stage parses without error: the "valid"
// benchmarks measure the steady state, the "sample" ones include the
// samples' deliberately broken lines (whose errors cost allocations inside
// fastjson and fmt).
func validLines(s pipe.Stage, lines []string) []string {
	var ok []string
	acks := stagetest.NewAcks()
	for _, l := range lines {
		b, _ := acks.Batch(stagetest.File{Path: "/x", Ino: 1}, 0, l)
		out := stagetest.Run(s, b)
		bad := false
		for _, o := range out {
			for _, r := range o.Records {
				bad = bad || r.Flags&event.ParseError != 0
			}
		}
		stagetest.Release(out)
		if !bad {
			ok = append(ok, l)
		}
	}
	return ok
}
