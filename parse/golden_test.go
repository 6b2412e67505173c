package parse

import (
	"flag"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixedNow is the clock of the golden tests.
func fixedNow() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }

type dropCount map[string]int

func (d dropCount) add(reason string, n int) { d[reason] += n }

func must(t *testing.T) func(pipe.Stage, error) pipe.Stage {
	return func(s pipe.Stage, err error) pipe.Stage {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestGolden runs each parser over a committed sample, split into batches of
// every size from 1 to 4 lines (so joined events cross batch boundaries),
// and compares the records with testdata/NAME.golden. Every size must give
// the same records, and every input batch must be acknowledged once the
// outputs are released.
func TestGolden(t *testing.T) {
	ts := &TimeOptions{Field: "time"}
	sev := &SeverityOptions{Field: "level"}
	tests := []struct {
		name, input string
		stage       func(t *testing.T, drops DropFunc) pipe.Stage
	}{
		{"json", "json.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(JSON(JSONOptions{Options{Timestamp: ts, Severity: sev, BodyField: "msg"}}, fixedNow, d))
		}},
		{"json_body", "json.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(JSON(JSONOptions{Options{Target: "body", Severity: sev}}, fixedNow, d))
		}},
		{"json_epoch_drop", "json.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(JSON(JSONOptions{Options{Timestamp: &TimeOptions{Field: "ts", Layout: "epoch"}, OnError: "drop"}}, fixedNow, d))
		}},
		{"logfmt", "logfmt.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Logfmt(LogfmtOptions{Options{Timestamp: ts, Severity: sev, BodyField: "msg"}}, fixedNow, d))
		}},
		{"regex_nginx", "nginx.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{
				Pattern: `^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"`,
				Options: Options{Timestamp: &TimeOptions{Field: "time", Layout: "%d/%b/%Y:%H:%M:%S %z"}},
			}, fixedNow, d))
		}},
		{"key_value", "keyvalue.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(KeyValue(KeyValueOptions{}, fixedNow, d))
		}},
		{"key_value_separators", "keyvalue_sep.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(KeyValue(KeyValueOptions{PairSeparator: ";", KeySeparator: ":", Options: Options{Target: "body"}}, fixedNow, d))
		}},
		{"csv", "csv.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(CSV(CSVOptions{Header: []string{"time,level,service,msg"}, Options: Options{Timestamp: ts, Severity: sev, BodyField: "msg"}}, fixedNow, d))
		}},
		{"csv_lazy_drop", "csv.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(CSV(CSVOptions{Header: []string{"time", "level", "service", "msg"}, Lazy: true, Options: Options{OnError: "drop"}}, fixedNow, d))
		}},
		{"klog", "klog.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Klog(KlogOptions{}, fixedNow, d))
		}},
		{"preset_nginx_access", "nginx.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{Preset: "nginx_access"}, fixedNow, d))
		}},
		{"preset_apache_access", "apache_access.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{Preset: "apache_access"}, fixedNow, d))
		}},
		{"preset_nginx_error", "nginx_error.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{Preset: "nginx_error"}, fixedNow, d))
		}},
		{"preset_apache_error", "apache_error.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{Preset: "apache_error"}, fixedNow, d))
		}},
		{"preset_haproxy_http", "haproxy.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{Preset: "haproxy_http"}, fixedNow, d))
		}},
		{"preset_postgres", "postgres.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Regex(RegexOptions{Preset: "postgres"}, fixedNow, d))
		}},
		{"preset_mysql_slow", "mysql_slow.log", func(t *testing.T, d DropFunc) pipe.Stage {
			join := must(t)(Multiline(MultilineOptions{Start: `^# Time: `}, fixedNow))
			return pipe.Chain(join, must(t)(Regex(RegexOptions{Preset: "mysql_slow"}, fixedNow, d)))
		}},
		{"cri", "cri.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(CRI(ContainerOptions{}, fixedNow, d))
		}},
		{"docker", "docker.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Docker(ContainerOptions{}, fixedNow, d))
		}},
		{"container", "container.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Container(ContainerOptions{}, fixedNow, d))
		}},
		{"multiline_java", "java.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "java"}, fixedNow))
		}},
		{"multiline_python", "python.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "python"}, fixedNow))
		}},
		{"multiline_go", "gopanic.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "go"}, fixedNow))
		}},
		{"multiline_ruby", "ruby.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "ruby"}, fixedNow))
		}},
		{"multiline_dotnet", "dotnet.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "dotnet"}, fixedNow))
		}},
		{"multiline_nodejs", "nodejs.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "nodejs"}, fixedNow))
		}},
		{"multiline_php", "php.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Preset: "php"}, fixedNow))
		}},
		{"syslog", "syslog.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Syslog(SyslogOptions{}, fixedNow, d))
		}},
		{"multiline_start", "java.log", func(t *testing.T, d DropFunc) pipe.Stage {
			return must(t)(Multiline(MultilineOptions{Start: `^\d{4}-\d{2}-\d{2} `, MaxLines: 4}, fixedNow))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := stagetest.FileLines(t, filepath.Join("testdata", tt.input))
			var first string
			for size := 1; size <= 4; size++ {
				drops := dropCount{}
				acks := stagetest.NewAcks()
				f := stagetest.File{Path: "/var/log/app/" + tt.input, Ino: 7}
				var in []*event.Batch
				var off int64
				for i := 0; i < len(lines); i += size {
					part := lines[i:min(i+size, len(lines))]
					b, _ := acks.Batch(f, off, part...)
					off = b.End
					in = append(in, b, stagetest.Tick())
				}
				out := stagetest.Run(tt.stage(t, drops.add), in...)
				var sb strings.Builder
				sb.WriteString(stagetest.RenderByOffset(out))
				for reason, n := range drops {
					sb.WriteString("dropped " + reason + ": " + strconv.Itoa(n) + "\n")
				}
				got := sb.String()
				stagetest.Release(out)
				if n := len(acks.AckedIDs()); n != (len(lines)+size-1)/size {
					t.Errorf("batch size %d: %d of %d batches acknowledged", size, n, (len(lines)+size-1)/size)
				}
				if size == 1 {
					first = got
					stagetest.Golden(t, filepath.Join("testdata", tt.name+".golden"), got, *update)
				} else if got != first {
					t.Errorf("batch size %d gives different records than size 1:\n%s", size, got)
				}
			}
		})
	}
}
