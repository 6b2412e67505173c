package parse

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/pipe"
	"github.com/logpump/logpump/internal/stages/stagetest"
)

// fuzzStage feeds the fuzz input, split into lines and then into batches of
// batchSize lines with idle ticks between them, through a fresh run of the
// stage and checks what every parser promises whatever the input:
//   - it does not panic;
//   - it never yields more records than lines it was given;
//   - a record flagged ParseError still carries a line of the input, and
//     has the log.parse.error attribute;
//   - every input batch is acknowledged once the outputs are released.
//
// oneToOne parsers must also yield exactly one record per line.
func fuzzStage(t *testing.T, s pipe.Stage, data string, batchSize int, oneToOne bool) {
	lines := strings.Split(data, "\n")
	if batchSize < 1 {
		batchSize = 1
	}
	acks := stagetest.NewAcks()
	var in []*event.Batch
	var off int64
	n := 0
	for i := 0; i < len(lines); i += batchSize {
		b, _ := acks.Batch(stagetest.File{Path: "/var/log/fuzz.log", Ino: 3}, off, lines[i:min(i+batchSize, len(lines))]...)
		off = b.End
		in = append(in, b, stagetest.Tick())
		n++
	}
	out := stagetest.Run(s, in...)
	records := 0
	inputs := map[string]bool{}
	for _, l := range lines {
		inputs[l] = true
	}
	for _, b := range out {
		for i := range b.Records {
			r := &b.Records[i]
			records++
			if r.Flags&event.ParseError != 0 {
				if _, ok := event.Lookup(r.Attrs, AttrParseError); !ok {
					t.Errorf("record flagged ParseError has no %s attribute", AttrParseError)
				}
				if r.Body.Kind == event.KindString && !inputs[r.Body.Str] {
					t.Errorf("unparsed record's body %q is not an input line", r.Body.Str)
				}
			}
		}
	}
	if records > len(lines) {
		t.Errorf("%d records from %d lines", records, len(lines))
	}
	if oneToOne && records != len(lines) {
		t.Errorf("%d records from %d lines, want one per line", records, len(lines))
	}
	stagetest.Release(out)
	if got := len(acks.AckedIDs()); got != n {
		t.Errorf("%d of %d batches acknowledged", got, n)
	}
}

func addSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		lines := stagetest.FileLines(f, filepath.Join("testdata", name))
		f.Add(strings.Join(lines, "\n"), 2)
		for _, l := range lines {
			f.Add(l, 1)
		}
	}
}

func FuzzJSON(f *testing.F) {
	addSeeds(f, "json.log", "docker.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		for _, target := range []string{"attributes", "body"} {
			s, err := JSON(JSONOptions{Options{Target: target, Timestamp: &TimeOptions{Field: "time"}, Severity: &SeverityOptions{Field: "level"}}}, fixedNow, nil)
			if err != nil {
				t.Fatal(err)
			}
			fuzzStage(t, s, data, size%8, true)
		}
	})
}

func FuzzLogfmt(f *testing.F) {
	addSeeds(f, "logfmt.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		s, err := Logfmt(LogfmtOptions{Options{BodyField: "msg", Timestamp: &TimeOptions{Field: "time", Layout: "epoch"}}}, fixedNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		fuzzStage(t, s, data, size%8, true)
	})
}

func FuzzRegex(f *testing.F) {
	addSeeds(f, "nginx.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		s, err := Regex(RegexOptions{Pattern: `^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<req>[^"]*)" (?P<status>\d+)?`,
			Options: Options{Timestamp: &TimeOptions{Field: "time", Layout: "%d/%b/%Y:%H:%M:%S %z"}}}, fixedNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		fuzzStage(t, s, data, size%8, true)
	})
}

func FuzzSyslog(f *testing.F) {
	addSeeds(f, "syslog.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		s, err := Syslog(SyslogOptions{}, fixedNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		fuzzStage(t, s, data, size%8, true)
	})
}

func FuzzContainer(f *testing.F) {
	addSeeds(f, "cri.log", "docker.log", "container.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		s, err := Container(ContainerOptions{MaxBytes: 64}, fixedNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		fuzzStage(t, s, data, size%8, false)
	})
}

func FuzzMultiline(f *testing.F) {
	addSeeds(f, "java.log", "python.log", "gopanic.log", "ruby.log", "dotnet.log", "nodejs.log", "php.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		for _, o := range []MultilineOptions{{Preset: "java", MaxLines: 3}, {Indent: true, MaxBytes: 40}, {End: `;$`},
			{Preset: "ruby"}, {Preset: "dotnet", MaxLines: 4}, {Preset: "nodejs"}, {Preset: "php", MaxBytes: 64}} {
			s, err := Multiline(o, fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			fuzzStage(t, s, data, size%8, false)
		}
	})
}

func FuzzTime(f *testing.F) {
	for _, s := range []string{"2024-05-01T10:15:02.481Z", "2024-02-29 23:59:60.123456789+05:30", "1714558504.125", "-1", "2024-13-01T00:00:00Z"} {
		f.Add(s)
	}
	layouts := []string{"rfc3339", "epoch", "epoch_ms", "%Y-%m-%d %H:%M:%S", "Jan _2 15:04:05"}
	f.Fuzz(func(t *testing.T, s string) {
		for _, l := range layouts {
			p, err := NewTimeParser(l, "Europe/Berlin", fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = p.Parse(s)
		}
	})
}

func FuzzKeyValue(f *testing.F) {
	addSeeds(f, "keyvalue.log", "keyvalue_sep.log", "logfmt.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		for _, o := range []KeyValueOptions{{}, {PairSeparator: ";", KeySeparator: ":", Options: Options{Target: "body"}}, {PairSeparator: ", ", KeySeparator: "=>"}} {
			s, err := KeyValue(o, fixedNow, nil)
			if err != nil {
				t.Fatal(err)
			}
			fuzzStage(t, s, data, size%8, true)
		}
	})
}

func FuzzCSV(f *testing.F) {
	addSeeds(f, "csv.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		for _, o := range []CSVOptions{{Header: []string{"time", "level", "service", "msg"}, Options: Options{Timestamp: &TimeOptions{Field: "time"}}},
			{Header: []string{"a", "b"}, Delimiter: "\t", Lazy: true, Options: Options{Target: "body"}}} {
			s, err := CSV(o, fixedNow, nil)
			if err != nil {
				t.Fatal(err)
			}
			fuzzStage(t, s, data, size%8, true)
		}
	})
}

func FuzzKlog(f *testing.F) {
	addSeeds(f, "klog.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		s, err := Klog(KlogOptions{}, fixedNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		fuzzStage(t, s, data, size%8, true)
	})
}

func FuzzRegexPresets(f *testing.F) {
	addSeeds(f, "nginx.log", "apache_access.log", "nginx_error.log", "apache_error.log", "haproxy.log", "postgres.log", "mysql_slow.log")
	f.Fuzz(func(t *testing.T, data string, size int) {
		for _, name := range RegexPresets() {
			s, err := Regex(RegexOptions{Preset: name}, fixedNow, nil)
			if err != nil {
				t.Fatal(err)
			}
			fuzzStage(t, s, data, size%8, true)
		}
	})
}
