package parse

import (
	"path/filepath"
	"regexp"
	"strings"
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
		{"preset_nginx_error", "nginx_error.log", func() (pipe.Stage, error) { return Regex(RegexOptions{Preset: "nginx_error"}, fixedNow, nil) }},
		{"preset_apache_error", "apache_error.log", func() (pipe.Stage, error) { return Regex(RegexOptions{Preset: "apache_error"}, fixedNow, nil) }},
		{"preset_haproxy_http", "haproxy.log", func() (pipe.Stage, error) { return Regex(RegexOptions{Preset: "haproxy_http"}, fixedNow, nil) }},
		{"preset_postgres", "postgres.log", func() (pipe.Stage, error) { return Regex(RegexOptions{Preset: "postgres"}, fixedNow, nil) }},
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

// BenchmarkPresetGrokStyle measures the choice behind the regex presets:
// a hand-written pattern against one composed grok-style from general named
// parts (%{IPORHOST:remote_addr}, %{HTTPDATE:time}, ...), as a grok
// library builds it, on the same access log lines.
func BenchmarkPresetGrokStyle(b *testing.B) {
	parts := map[string]string{
		"IPV4":     `(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)`,
		"IPV6":     `(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}`,
		"HOSTNAME": `\b[0-9A-Za-z][0-9A-Za-z-]{0,62}(?:\.[0-9A-Za-z][0-9A-Za-z-]{0,62})*\.?\b`,
		"USER":     `[a-zA-Z0-9._@-]+`,
		"HTTPDATE": `\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}`,
		"WORD":     `\b\w+\b`,
		"NOTSPACE": `\S+`,
		"NUMBER":   `[+-]?\d+(?:\.\d+)?`,
		"QS":       `"(?:[^"\\]|\\.)*"`,
		"DATA":     `.*?`,
	}
	parts["IPORHOST"] = `(?:%{IPV4}|%{IPV6}|%{HOSTNAME})`
	grok := `^%{IPORHOST:remote_addr} %{USER:ident} %{USER:remote_user} \[%{HTTPDATE:time}\] ` +
		`"(?:%{WORD:method} %{NOTSPACE:path}(?: HTTP/%{NUMBER:protocol})?|%{DATA})" %{NUMBER:status} ` +
		`(?:%{NUMBER:body_bytes_sent}|-)(?: %{QS:http_referer} %{QS:http_user_agent})?`
	ref := regexp.MustCompile(`%\{(\w+)(?::(\w+))?\}`)
	for strings.Contains(grok, "%{") {
		grok = ref.ReplaceAllStringFunc(grok, func(m string) string {
			sub := ref.FindStringSubmatch(m)
			if sub[2] != "" {
				return "(?P<" + sub[2] + ">" + parts[sub[1]] + ")"
			}
			return "(?:" + parts[sub[1]] + ")"
		})
	}
	lines := stagetest.FileLines(b, filepath.Join("testdata", "nginx.log"))
	for _, bb := range []struct {
		name string
		o    RegexOptions
	}{
		{"preset", RegexOptions{Preset: "nginx_access", Options: Options{Timestamp: &TimeOptions{Field: "time", Layout: "%d/%b/%Y:%H:%M:%S %z"}}}},
		{"grok_style", RegexOptions{Pattern: grok, Options: Options{Timestamp: &TimeOptions{Field: "time", Layout: "%d/%b/%Y:%H:%M:%S %z"}}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			s, err := Regex(bb.o, fixedNow, nil)
			if err != nil {
				b.Fatal(err)
			}
			stagetest.Bench(b, s, validLines(s, lines), 1000)
		})
	}
}
