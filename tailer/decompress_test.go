package tailer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
	"github.com/ulikunitz/xz"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata (bzip2 files, made with the bzip2 command)")

// formats are the compression formats read; ext is logrotate's suffix.
var formats = []struct {
	f   format
	ext string
	cmd string // the command that compresses to stdout: cmd -c
}{
	{formatGzip, ".gz", "gzip"},
	{formatZstd, ".zst", "zstd"},
	{formatXz, ".xz", "xz"},
	{formatBzip2, ".bz2", "bzip2"},
}

// seqLines returns n sequence-numbered lines of stream (tailertest's).
func seqLines(t testing.TB, stream string, n int) []byte {
	t.Helper()
	w, err := tailertest.NewWriter(filepath.Join(testenv.TempDir(t), "plain"), stream, 40)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var plain []byte
	for range n {
		plain = w.AppendLine(plain)
	}
	return plain
}

// compress returns plain compressed in f by the Go encoders. The standard
// library has no bzip2 encoder: bzip2 data is the golden file
// testdata/compressed/name.bz2, written by the bzip2 command with -update.
func compress(t testing.TB, f format, name string, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch f {
	case formatGzip:
		zw := gzip.NewWriter(&buf)
		zw.Write(plain)
		zw.Close()
	case formatZstd:
		zw, err := zstd.NewWriter(&buf) // streamed: no content size in the header
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(plain)
		zw.Close()
	case formatXz:
		zw, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(plain)
		zw.Close()
	case formatBzip2:
		golden := filepath.Join("testdata", "compressed", name+".bz2")
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, compressCmd(t, "bzip2", plain, "-1"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -update with the bzip2 command installed writes it)", err)
		}
		return b
	}
	return buf.Bytes()
}

// compressCmd returns plain compressed by cmd -c (a pipe, as logrotate's
// compresscmd), skipping the test when cmd is not installed.
func compressCmd(t testing.TB, cmd string, plain []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(cmd); err != nil {
		t.Skipf("%s not installed", cmd)
	}
	c := exec.Command(cmd, append([]string{"-c"}, args...)...)
	c.Stdin = bytes.NewReader(plain)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

// openReader writes data to a file and returns a gzReader over it and the
// file (open for appending).
func openReader(t testing.TB, data []byte) (*gzReader, *os.File) {
	t.Helper()
	path := filepath.Join(testenv.TempDir(t), "f")
	writeFile(t, path, string(data))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	o := DefaultOptions()
	return newGzReader(f, &o, devIno{}), w
}

// readFrom reads g from off to what it can decompress now, in chunks.
func readFrom(g *gzReader, off int64) ([]byte, error) {
	var got []byte
	p := make([]byte, 7000)
	for {
		n, err := g.ReadAt(p, off)
		got = append(got, p[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// encoded returns the ways each format's test data is made: the Go encoder
// and, when installed, the command (default level, from a pipe).
func encoded(t *testing.T, f format, cmd, name string, plain []byte) map[string][]byte {
	t.Helper()
	by := "go"
	if f == formatBzip2 {
		by = "golden"
	}
	enc := map[string][]byte{by: compress(t, f, name, plain)}
	if _, err := exec.LookPath(cmd); err == nil {
		enc[cmd] = compressCmd(t, cmd, plain)
	}
	return enc
}

// Each format read whole, from an offset in the middle, and before its
// position (decompressed again from the start).
func TestDecompressRead(t *testing.T) {
	name, plain := "d20000", seqLines(t, "d", 20000) // about 1.1 MB: several blocks in each format
	for _, ft := range formats {
		for enc, data := range encoded(t, ft.f, ft.cmd, name, plain) {
			t.Run(ft.f.String()+"/"+enc, func(t *testing.T) {
				g, _ := openReader(t, data)
				got, err := readFrom(g, 0)
				if err != nil || !bytes.Equal(got, plain) || !g.complete {
					t.Fatalf("whole: got %d bytes, complete %v, err %v; want %d bytes, complete", len(got), g.complete, err, len(plain))
				}
				if g.format != ft.f {
					t.Errorf("format %v, want %v", g.format, ft.f)
				}
				for _, off := range []int64{int64(len(plain)) / 2, 1, int64(len(plain)) - 3, int64(len(plain))} {
					got, err := readFrom(g, off)
					if want := plain[off:]; err != nil || !bytes.Equal(got, want) || !g.complete {
						t.Errorf("from %d: got %d bytes, complete %v, err %v; want %d bytes, complete", off, len(got), g.complete, err, len(want))
					}
				}
			})
		}
	}
}

// A stream cut short (the compressor still writing) reads as "no more yet":
// a prefix of the content, no error, not complete. Once the rest is
// appended the reading goes on from where it was and completes.
func TestDecompressCutShort(t *testing.T) {
	name, plain := "d20000", seqLines(t, "d", 20000)
	for _, ft := range formats {
		for enc, data := range encoded(t, ft.f, ft.cmd, name, plain) {
			t.Run(ft.f.String()+"/"+enc, func(t *testing.T) {
				var cuts []int
				for i := 1; i < 40; i++ { // headers
					cuts = append(cuts, i)
				}
				for i := 1; i < 16; i++ { // blocks
					cuts = append(cuts, len(data)*i/16)
				}
				for i := 1; i < 30; i++ { // trailers
					cuts = append(cuts, len(data)-i)
				}
				for _, cut := range cuts {
					g, w := openReader(t, data[:cut])
					got, err := readFrom(g, 0)
					if err != nil || !bytes.HasPrefix(plain, got) || g.complete {
						t.Fatalf("cut at %d of %d: got %d bytes (a prefix: %v), complete %v, err %v; want a prefix, not complete, no error",
							cut, len(data), len(got), bytes.HasPrefix(plain, got), g.complete, err)
					}
					if _, err := w.Write(data[cut:]); err != nil {
						t.Fatal(err)
					}
					rest, err := readFrom(g, int64(len(got)))
					if err != nil || !bytes.Equal(append(got, rest...), plain) || !g.complete {
						t.Fatalf("cut at %d of %d, completed: got %d+%d bytes, complete %v, err %v; want %d, complete",
							cut, len(data), len(got), len(rest), g.complete, err, len(plain))
					}
				}
			})
		}
	}
}

// A corrupt stream is an error, not "no more yet".
func TestDecompressCorrupt(t *testing.T) {
	name, plain := "d20000", seqLines(t, "d", 20000)
	for _, ft := range formats {
		for enc, data := range encoded(t, ft.f, ft.cmd, name, plain) {
			t.Run(ft.f.String()+"/"+enc, func(t *testing.T) {
				for _, at := range []int{len(data) / 3, len(data) / 2, len(data) - 6} {
					bad := bytes.Clone(data)
					bad[at] ^= 0x55
					g, _ := openReader(t, bad)
					got, err := readFrom(g, 0)
					if err == nil {
						t.Errorf("byte %d of %d changed: read %d bytes (complete %v), no error", at, len(data), len(got), g.complete)
					}
				}
			})
		}
	}
}

func TestFormatOf(t *testing.T) {
	tests := []struct {
		head string
		want format
	}{
		{"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", formatGzip},
		{"\x1f\x8b\x08", formatGzip},
		{"\x1f\x8b", formatNone}, // too short to tell yet
		{"\x28\xb5\x2f\xfd\x04\x58", formatZstd},
		{"\x28\xb5\x2f", formatNone},
		{"\xfd7zXZ\x00\x00\x04\xe6\xd6", formatXz},
		{"\xfd7zXZ", formatNone},
		{"BZh91AY&SY", formatBzip2},
		{"BZh1", formatBzip2},
		{"BZh9\x17\x72\x45\x38\x50\x90", formatBzip2}, // empty stream
		{"BZh", formatNone},
		{"BZh0", formatNone},
		{"BZh is a word in a log", formatNone},
		{"BZh9 and text", formatNone},
		{"2024-01-01 plain text\n", formatNone},
		{"", formatNone},
	}
	for _, tt := range tests {
		if got := formatOf([]byte(tt.head)); got != tt.want {
			t.Errorf("formatOf(%q) = %v, want %v", tt.head, got, tt.want)
		}
	}
	// Every encoder's output, and what the magic bytes of a text file say.
	name, plain := "m10", seqLines(t, "m", 10)
	for _, ft := range formats {
		for enc, data := range encoded(t, ft.f, ft.cmd, name, plain) {
			if got := formatOf(data[:min(len(data), magicLen)]); got != ft.f {
				t.Errorf("%s by %s: formatOf = %v", ft.f, enc, got)
			}
		}
	}
	if got := formatOf(plain[:magicLen]); got != formatNone {
		t.Errorf("text: formatOf = %v", got)
	}
}

// decompressedSize tells zstd frames' content sizes, and nothing it cannot
// tell cheaply.
func TestDecompressedSize(t *testing.T) {
	plain := seqLines(t, "s", 20000)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	one := enc.EncodeAll(plain, nil)
	tests := []struct {
		name   string
		data   []byte
		want   int64
		wantOK bool
	}{
		{"zstd frame with size", one, int64(len(plain)), true},
		{"zstd frames with sizes", append(bytes.Clone(one), enc.EncodeAll(plain[:1000], nil)...), int64(len(plain)) + 1000, true},
		{"zstd after a skippable frame", append([]byte("\x50\x2a\x4d\x18\x02\x00\x00\x00ab"), one...), 0, false}, // not known for zstd by its first bytes
		{"zstd frame cut short", one[:len(one)-1], 0, false},
		{"zstd streamed (no size)", compress(t, formatZstd, "", plain), 0, false},
		{"gzip", compress(t, formatGzip, "", plain), 0, false},
		{"xz", compress(t, formatXz, "", plain), 0, false},
		{"text", plain, 0, false},
	}
	for _, tt := range tests {
		g, _ := openReader(t, tt.data)
		got, ok := decompressedSize(g.f)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: decompressedSize = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

// size and readTo: from the trailer or headers when the format has the
// size, else by decompressing; nothing for a stream cut short.
func TestCompressedSize(t *testing.T) {
	plain := seqLines(t, "z", 5000)
	for _, ft := range formats {
		data := compress(t, ft.f, "z5000", plain)
		t.Run(ft.f.String(), func(t *testing.T) {
			g, _ := openReader(t, data)
			if got, ok := g.size(); got != int64(len(plain)) || !ok {
				t.Errorf("size = %d, %v; want %d, true", got, ok, len(plain))
			}
			wantTo := ft.f == formatGzip // the others are decompressed to know
			if got := readTo(g.f, int64(len(plain))); got != wantTo {
				t.Errorf("readTo(end) = %v, want %v", got, wantTo)
			}
			if readTo(g.f, 10) {
				t.Errorf("readTo(10) = true")
			}
			if ft.f == formatGzip {
				return // gzipSize reads the last 4 bytes of a stream cut short as its size
			}
			g, _ = openReader(t, data[:len(data)-20])
			if got, ok := g.size(); ok {
				t.Errorf("cut short: size = %d, true", got)
			}
		})
	}
}
