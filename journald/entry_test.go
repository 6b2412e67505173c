package journald

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/event"
)

// A line as journalctl --output=json --all prints it (systemd 252).
const sampleLine = `{"_RUNTIME_SCOPE":"system","_PID":"24137","MESSAGE":"hello 0","_COMM":"python3","PRIORITY":"4","SYSLOG_IDENTIFIER":"lpt","__MONOTONIC_TIMESTAMP":"10535628022","_TRANSPORT":"journal","__REALTIME_TIMESTAMP":"1796635588558626","_BOOT_ID":"3b5085cc255f49849a3501840128c3ab","__CURSOR":"s=8462d7469e0b49a38daf041c30464d5d;i=3;b=3b5085cc255f49849a3501840128c3ab;m=273f8ecf6;t=66207d20bff22;x=e96b30f61fb1b178"}`

type decoded struct {
	Body     event.Value
	Time     int64
	Severity event.Severity
	SevText  string
	Attrs    []event.KeyValue
	Flags    event.Flags
	Cursor   string
}

func decodeLine(d *decoder, line string) decoded {
	var b event.Batch
	has := d.entry(&b, []byte(line), 7)
	r := b.Records[0]
	got := decoded{Body: r.Body, Time: r.Time, Severity: r.Severity, SevText: r.SeverityText, Attrs: r.Attrs, Flags: r.Flags}
	if has {
		got.Cursor = string(d.cursor)
	}
	return got
}

func TestEntry(t *testing.T) {
	s := event.String
	tests := []struct {
		name string
		line string
		want decoded
	}{{
		name: "journalctl line",
		line: sampleLine,
		want: decoded{
			Body: s("hello 0"), Time: 1796635588558626000, Severity: event.SeverityWarn, SevText: "warning",
			Attrs: []event.KeyValue{
				{Key: "_RUNTIME_SCOPE", Value: s("system")}, {Key: "_PID", Value: s("24137")},
				{Key: "_COMM", Value: s("python3")}, {Key: "SYSLOG_IDENTIFIER", Value: s("lpt")},
				{Key: "_TRANSPORT", Value: s("journal")}, {Key: "_BOOT_ID", Value: s("3b5085cc255f49849a3501840128c3ab")},
			},
			Cursor: "s=8462d7469e0b49a38daf041c30464d5d;i=3;b=3b5085cc255f49849a3501840128c3ab;m=273f8ecf6;t=66207d20bff22;x=e96b30f61fb1b178",
		},
	}, {
		name: "message with newlines and escapes",
		line: `{"MESSAGE":"a\nb\t\"c\" \u00e9","__CURSOR":"c1"}`,
		want: decoded{Body: s("a\nb\t\"c\" é"), Cursor: "c1"},
	}, {
		name: "binary message: UTF-8 bytes are a string",
		line: `{"MESSAGE":[104,105,27,91,48,109],"__CURSOR":"c2"}`,
		want: decoded{Body: s("hi\x1b[0m"), Cursor: "c2"},
	}, {
		name: "binary message that is not UTF-8 is kept and flagged",
		line: `{"MESSAGE":[104,255,105],"__CURSOR":"c3"}`,
		want: decoded{Body: s("h\xffi"), Flags: event.InvalidUTF8, Cursor: "c3"},
	}, {
		name: "binary field that is not UTF-8 is bytes",
		line: `{"MESSAGE":"m","BLOB":[0,255],"__CURSOR":"c4"}`,
		want: decoded{Body: s("m"), Attrs: []event.KeyValue{{Key: "BLOB", Value: event.Bytes("\x00\xff")}}, Cursor: "c4"},
	}, {
		name: "field present twice is an array",
		line: `{"MESSAGE":"m","TAG":["a",[98]],"__CURSOR":"c5"}`,
		want: decoded{Body: s("m"), Attrs: []event.KeyValue{{Key: "TAG", Value: event.Array([]event.KeyValue{{Value: s("a")}, {Value: s("b")}})}}, Cursor: "c5"},
	}, {
		name: "priority out of range and null field are left out",
		line: `{"MESSAGE":"m","PRIORITY":"9","BIG":null,"__SEQNUM":"4"}`,
		want: decoded{Body: s("m")},
	}, {
		name: "emerg and debug",
		line: `{"MESSAGE":"m","PRIORITY":"0"}`,
		want: decoded{Body: s("m"), Severity: event.SeverityFatal, SevText: "emerg"},
	}, {
		name: "not JSON: the line is the body, flagged",
		line: `-- cut --`,
		want: decoded{Body: s("-- cut --"), Flags: event.ParseError},
	}, {
		name: "not an object",
		line: `[1,2]`,
		want: decoded{Body: s("[1,2]"), Flags: event.ParseError},
	}}
	d := newDecoder(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeLine(d, tt.line)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestReaderSplitsAndBounds: lines come out whole whatever the reads'
// sizes; a line longer than max comes out once, cut, and every byte is
// counted.
func TestReaderSplitsAndBounds(t *testing.T) {
	long := strings.Repeat("x", 300)
	input := "a\n" + long + "\nbb\n" + long + long + "\nc\n"
	for _, chunk := range []int{1, 7, 64, 1000} {
		lines, n := split(t, input, chunk, 100)
		want := []string{"a", long[:100] + " (cut)", "bb", long[:100] + " (cut)", "c"}
		if d := cmp.Diff(want, lines); d != "" {
			t.Errorf("chunk %d (-want +got):\n%s", chunk, d)
		}
		if n != len(input) {
			t.Errorf("chunk %d: counted %d bytes, want %d", chunk, n, len(input))
		}
	}
}

// split feeds input through a pipe in writes of chunk bytes and returns
// the lines read and the bytes counted.
func split(t testing.TB, input string, chunk, max int) (lines []string, n int) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() {
		defer pw.Close()
		for i := 0; i < len(input); i += chunk {
			pw.Write([]byte(input[i:min(i+chunk, len(input))]))
		}
	}()
	rd := &reader{pr: pr, buf: make([]byte, 0, 16), max: max}
	for {
		err := rd.fill()
		for {
			line, k, truncated, ok := rd.next()
			if !ok {
				break
			}
			n += k
			if line == nil && !truncated {
				continue // the end of a cut line
			}
			s := string(line)
			if truncated {
				s += " (cut)"
			}
			lines = append(lines, s)
		}
		if err != nil {
			return lines, n
		}
	}
}

func FuzzEntry(f *testing.F) {
	f.Add(sampleLine)
	f.Add(`{"MESSAGE":[104,255,105],"X":["a",[98]],"__CURSOR":"c"}`)
	f.Add(`{"MESSAGE":"a\nb","PRIORITY":"3"}`)
	d := newDecoder(nil)
	f.Fuzz(func(t *testing.T, line string) {
		var b event.Batch
		d.entry(&b, []byte(line), 1)
		if len(b.Records) != 1 {
			t.Fatalf("%d records, want 1", len(b.Records))
		}
		r := b.Records[0]
		if r.Flags&event.ParseError != 0 && r.Body.Str != line {
			t.Errorf("unparsed line: body %q, want the line", r.Body.Str)
		}
		if r.Severity > event.SeverityFatal {
			t.Errorf("severity %d out of range", r.Severity)
		}
	})
}

func FuzzReader(f *testing.F) {
	f.Add("a\nbb\n"+strings.Repeat("x", 50)+"\nc", 3, 16)
	f.Fuzz(func(t *testing.T, input string, chunk, max int) {
		chunk = 1 + abs(chunk)%64
		max = 1 + abs(max)%64
		lines, n := split(t, input, chunk, max)
		complete := strings.LastIndexByte(input, '\n') + 1
		wantN, want := complete, 0
		if len(input)-complete >= max {
			// An unterminated tail already longer than max comes out cut.
			wantN, want = complete+max, 1
		}
		if n != wantN {
			t.Errorf("counted %d bytes, want %d", n, wantN)
		}
		for _, l := range strings.SplitAfter(input[:complete], "\n") {
			if l != "" {
				want++
			}
		}
		if len(lines) != want {
			t.Errorf("%d lines, want %d", len(lines), want)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// BenchmarkEntry decodes a typical journalctl line into a pooled batch.
func BenchmarkEntry(b *testing.B) {
	line := []byte(sampleLine)
	d := newDecoder(nil)
	var pool event.Pool
	batch := pool.Get()
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%250 == 0 {
			batch.Done()
			batch = pool.Get()
		}
		d.entry(batch, line, 1)
	}
	batch.Done()
}
