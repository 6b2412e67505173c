package tailer

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/logpump/logpump/event"
)

// benchData returns about 8 MiB of 120-byte lines.
func benchData(b *testing.B) []byte {
	var data []byte
	line := bytes.Repeat([]byte("x"), 119)
	for len(data) < 8<<20 {
		data = append(data, line...)
		data = append(data, '\n')
	}
	return data
}

// BenchmarkReadLines reads lines into pooled batches the way the tailer
// does (arena copy, record per line, file attributes); bufio.Scanner over the
// same bytes is the baseline.
func BenchmarkReadLines(b *testing.B) {
	data := benchData(b)
	r := bytes.NewReader(data)
	b.Run("tailer", func(b *testing.B) {
		lr := newLineReader("utf-8", 1<<20)
		lr.use(devIno{1, 1})
		var pool event.Pool
		attrs := fileAttrs(&Options{IncludeFilePath: true, IncludeFileName: true}, "/var/log/app.log")
		lim := limits{records: 1000, bytes: 1 << 20}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		lines := bytes.Count(data, []byte{'\n'})
		defer func() { b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line") }()
		for b.Loop() {
			var c cursor
			for {
				bt := pool.Get()
				res, err := lr.read(r, &c, bt, lim, false, 1, attrs)
				if err != nil {
					b.Fatal(err)
				}
				bt.Done()
				if res.eof {
					break
				}
			}
		}
	})
	b.Run("bufio.Scanner", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		lines := bytes.Count(data, []byte{'\n'})
		defer func() { b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line") }()
		for b.Loop() {
			r.Seek(0, io.SeekStart)
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			n := 0
			for sc.Scan() {
				n += len(sc.Bytes())
			}
		}
	})
}
