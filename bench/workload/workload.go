// Package workload writes the log lines logpump's benchmarks feed to an
// agent. Every line carries a unique sequence number, so a sink can tell a
// lost line from a duplicated one by counting numbers instead of trusting
// totals.
//
// Three formats are produced:
//   - plain: a ~120-byte text line with "seq=N" near its start;
//   - json: a ~200-byte object with six fields (ts, level, service, seq,
//     duration_ms, msg);
//   - cri: a containerd/CRI-O line ("<RFC3339Nano> <stream> F <plain line>").
//
// The other fields vary with the sequence number through a small
// deterministic mixer, so the same N lines are written on every run and the
// content compresses like logs rather than like a repeated constant.
package workload

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Format names a line shape.
type Format string

// The formats the generator writes.
const (
	Plain Format = "plain"
	JSON  Format = "json"
	CRI   Format = "cri"
)

// ParseFormat returns the Format called name.
func ParseFormat(name string) (Format, error) {
	switch f := Format(name); f {
	case Plain, JSON, CRI:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want plain, json or cri)", name)
}

// base is the timestamp of line 0; line i is i microseconds later, so
// timestamps rise with the sequence number.
var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var (
	levels   = []string{"INFO", "INFO", "INFO", "INFO", "DEBUG", "WARN", "INFO", "ERROR"}
	levelsLC = []string{"info", "info", "info", "info", "debug", "warn", "info", "error"}
	services = []string{"checkout", "catalog", "payments", "search", "accounts", "shipping"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths    = []string{"/api/v1/items/", "/api/v1/orders/", "/api/v2/users/", "/healthz?probe=", "/static/img/"}
	statuses = []int{200, 200, 200, 200, 201, 204, 304, 404, 500}
	regions  = []string{"eu-west-1", "us-east-2", "ap-south-1"}
)

// mix is splitmix64: cheap, deterministic, well spread.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func pick[T any](r uint64, s []T) T { return s[r%uint64(len(s))] }

// Append appends line seq of format f to b, without the trailing newline,
// and returns the extended slice.
func Append(b []byte, f Format, seq uint64) []byte {
	switch f {
	case JSON:
		return appendJSON(b, seq)
	case CRI:
		return appendCRI(b, seq)
	default:
		return appendPlain(b, seq)
	}
}

// appendPlain writes e.g.
// 2026-01-02T03:04:05.000042Z INFO  checkout seq=42 GET /api/v1/items/48213 status=200 bytes=5312 dur_ms=12 user=u7731
func appendPlain(b []byte, seq uint64) []byte {
	r := mix(seq)
	b = base.Add(time.Duration(seq)*time.Microsecond).AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	lv := pick(r, levels)
	b = append(b, lv...)
	for range 6 - len(lv) {
		b = append(b, ' ')
	}
	b = append(b, pick(r>>3, services)...)
	return appendSeqRequest(b, seq, r)
}

// appendSeqRequest writes " seq=42 GET /api/v1/items/48213 status=200 bytes=5312 dur_ms=12 user=u7731".
func appendSeqRequest(b []byte, seq, r uint64) []byte {
	b = append(b, " seq="...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ' ')
	b = appendRequest(b, r)
	b = append(b, " user=u"...)
	return strconv.AppendUint(b, (r>>40)%100000, 10)
}

// appendRequest writes "GET /api/v1/items/48213 status=200 bytes=5312 dur_ms=12".
func appendRequest(b []byte, r uint64) []byte {
	b = append(b, pick(r>>6, methods)...)
	b = append(b, ' ')
	b = append(b, pick(r>>9, paths)...)
	b = strconv.AppendUint(b, (r>>12)%100000, 10)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(pick(r>>29, statuses)), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendUint(b, (r>>33)%20000, 10)
	b = append(b, " dur_ms="...)
	b = strconv.AppendUint(b, (r>>48)%900, 10)
	return b
}

// appendJSON writes e.g.
// {"ts":"2026-01-02T03:04:05.000042Z","level":"info","service":"checkout","seq":42,"duration_ms":12.5,"msg":"GET /api/v1/items/48213 returned 200 with 5312 bytes for user u7731 in region eu-west-1"}
func appendJSON(b []byte, seq uint64) []byte {
	r := mix(seq)
	b = append(b, `{"ts":"`...)
	b = base.Add(time.Duration(seq)*time.Microsecond).AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","level":"`...)
	b = append(b, pick(r, levelsLC)...)
	b = append(b, `","service":"`...)
	b = append(b, pick(r>>3, services)...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendUint(b, (r>>48)%900, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, (r>>58)%10, 10)
	b = append(b, `,"msg":"`...)
	b = append(b, pick(r>>6, methods)...)
	b = append(b, ' ')
	b = append(b, pick(r>>9, paths)...)
	b = strconv.AppendUint(b, (r>>12)%100000, 10)
	b = append(b, " returned "...)
	b = strconv.AppendInt(b, int64(pick(r>>29, statuses)), 10)
	b = append(b, " with "...)
	b = strconv.AppendUint(b, (r>>33)%20000, 10)
	b = append(b, " bytes for user u"...)
	b = strconv.AppendUint(b, (r>>40)%100000, 10)
	b = append(b, " in region "...)
	b = append(b, pick(r>>17, regions)...)
	b = append(b, `"}`...)
	return b
}

// appendCRI writes a full ("F") CRI line whose message is the plain line:
// 2026-01-02T03:04:05.000042000Z stdout F 2026-01-02T03:04:05.000042Z INFO ...
// One line in ten goes to stderr.
func appendCRI(b []byte, seq uint64) []byte {
	b = base.Add(time.Duration(seq)*time.Microsecond).AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
	if mix(seq^0x5bd1e995)%10 == 0 {
		b = append(b, " stderr F "...)
	} else {
		b = append(b, " stdout F "...)
	}
	return appendPlain(b, seq)
}

// WriteFile writes lines first .. first+n-1 of format f to path, truncating
// it, and returns the number of bytes written.
func WriteFile(path string, f Format, first, n uint64) (int64, error) {
	file, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(file, 1<<20)
	var line []byte
	var size int64
	for seq := first; seq < first+n; seq++ {
		line = append(Append(line[:0], f, seq), '\n')
		size += int64(len(line))
		if _, err := w.Write(line); err != nil {
			file.Close()
			return size, fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		file.Close()
		return size, fmt.Errorf("write %s: %w", path, err)
	}
	return size, file.Close()
}

// AvgLineBytes is the mean length, newline included, of the first n lines
// of format f.
func AvgLineBytes(f Format, n uint64) float64 {
	var total int
	var line []byte
	for seq := range n {
		line = Append(line[:0], f, seq)
		total += len(line) + 1
	}
	return float64(total) / float64(n)
}
