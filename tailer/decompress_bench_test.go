package tailer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// logData returns 10 MiB of 120-byte log lines, varied like a real log
// (times, levels, ids), so that compression ratios are realistic.
func logData() []byte {
	levels := []string{"INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"}
	paths := []string{"/api/v1/users", "/api/v1/orders", "/healthz", "/static/app.js", "/login"}
	var data []byte
	x := uint32(2463534242)
	for i := 0; len(data) < 10<<20; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		start := len(data)
		data = append(data, "2024-05-17T12:"...)
		data = append(data, byte('0'+i/60000%6), byte('0'+i/6000%10), ':', byte('0'+i/1000%6), byte('0'+i/100%10), '.')
		data = strconv.AppendInt(data, int64(100+i%900), 10)
		data = append(data, "Z "...)
		data = append(data, levels[x%uint32(len(levels))]...)
		data = append(data, " req="...)
		data = strconv.AppendUint(data, uint64(x), 16)
		data = append(data, " path="...)
		data = append(data, paths[(x>>8)%uint32(len(paths))]...)
		data = append(data, " status=200 dur_ms="...)
		data = strconv.AppendInt(data, int64(x>>20%500), 10)
		data = append(data, " msg=request served"...)
		for len(data)-start < 119 {
			data = append(data, '.')
		}
		data = append(data[:start+119], '\n')
	}
	return data
}

// benchFile writes plain compressed in f to a file: by the command at its
// default level (what logrotate's compresscmd makes, from a pipe) when
// installed, else by the Go encoder.
func benchFile(b *testing.B, f format, cmd string, plain []byte) *os.File {
	b.Helper()
	var data []byte
	if _, err := exec.LookPath(cmd); err == nil {
		data = compressCmd(b, cmd, plain)
	} else if f == formatBzip2 {
		b.Skip("bzip2 not installed")
	} else {
		data = compress(b, f, "", plain)
	}
	path := filepath.Join(b.TempDir(), "f"+strings.TrimPrefix(cmd, "x"))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	fd, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fd.Close() })
	b.Logf("%s: %d bytes, ratio %.1f", f, len(data), float64(len(plain))/float64(len(data)))
	return fd
}

// BenchmarkDecompress reads a 10 MiB log of 120-byte lines, compressed in
// each format, through gzReader in 64 KiB reads (each iteration starts over
// from offset 0, reusing the reader: the steady state of a reader).
func BenchmarkDecompress(b *testing.B) {
	plain := logData()
	lines := bytes.Count(plain, []byte{'\n'})
	o := DefaultOptions()
	for _, ft := range formats {
		b.Run(ft.f.String(), func(b *testing.B) {
			g := newGzReader(benchFile(b, ft.f, ft.cmd, plain), &o, devIno{})
			p := make([]byte, 64<<10)
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				off := int64(0)
				for {
					n, err := g.ReadAt(p, off)
					off += int64(n)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if off != int64(len(plain)) || !g.complete {
					b.Fatalf("read %d bytes, complete %v; want %d", off, g.complete, len(plain))
				}
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*lines), "allocs/line")
		})
	}
}

// BenchmarkDecompressHeld measures what holding an open reader costs: 8
// readers of each format, each having read its first 64 KiB (its decoder
// state allocated), heap and RSS growth per reader.
func BenchmarkDecompressHeld(b *testing.B) {
	plain := logData()
	o := DefaultOptions()
	const k = 8
	for _, ft := range formats {
		b.Run(ft.f.String(), func(b *testing.B) {
			fd := benchFile(b, ft.f, ft.cmd, plain)
			p := make([]byte, 64<<10)
			var heap, rss float64
			for b.Loop() {
				b.StopTimer()
				debug.FreeOSMemory()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				rss0 := residentBytes()
				b.StartTimer()
				held := make([]*gzReader, k)
				for i := range held {
					held[i] = newGzReader(fd, &o, devIno{})
					if _, err := held[i].ReadAt(p, 0); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap += float64(after.HeapAlloc) - float64(before.HeapAlloc)
				rss += float64(residentBytes() - rss0)
				runtime.KeepAlive(held)
				b.StartTimer()
			}
			b.ReportMetric(heap/float64(b.N*k), "heap-B/reader")
			b.ReportMetric(rss/float64(b.N*k), "rss-B/reader")
		})
	}
}

// residentBytes returns the process's resident set size (Linux; 0
// elsewhere).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
