package tailer

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/tailer/tailertest"
)

// gzipLines returns n sequence-numbered lines of stream, gzip-compressed.
func gzipLines(t *testing.T, stream string, n int) []byte {
	t.Helper()
	w, err := tailertest.NewWriter(filepath.Join(t.TempDir(), "plain"), stream, 40)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var plain []byte
	for range n {
		plain = w.AppendLine(plain)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(plain)
	zw.Close()
	return buf.Bytes()
}

// Compressed catch-up: gzip files never read as text (archives, rotations
// while stopped) are read once, decompressed: one present at the start, one
// appearing while running, one written in two steps (a cut stream reads as
// "no more yet"). A restart reads none of them again. With the default
// (compression: none) they are skipped.
func TestCompressedCatchUp(t *testing.T) {
	for _, mode := range []string{CompressionAuto, CompressionGzip, CompressionNone} {
		t.Run(mode, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			writeFile(t, filepath.Join(dir, "old.log.gz"), string(gzipLines(t, "old", 3000)))
			opts := testOptions(filepath.Join(dir, "*"))
			opts.Compression = mode
			count := tailertest.NewCounter()
			h := startTailer(t, opts, state, count)
			time.Sleep(2 * opts.ScanInterval)
			writeFile(t, filepath.Join(dir, "new.log.gz"), string(gzipLines(t, "new", 2000)))
			cut := gzipLines(t, "cut", 5000)
			f, err := os.Create(filepath.Join(dir, "cut.log.gz"))
			if err != nil {
				t.Fatal(err)
			}
			f.Write(cut[:len(cut)/2])
			time.Sleep(3 * opts.ScanInterval)
			f.Write(cut[len(cut)/2:])
			f.Close()
			want := map[string]int{"old": 3000, "new": 2000, "cut": 5000}
			if mode == CompressionNone {
				time.Sleep(5 * opts.ScanInterval)
				h.stop()
				if n := count.Count(); n != 0 || len(count.Other()) != 0 {
					t.Fatalf("compression: none read %d lines of gzip files", n+len(count.Other()))
				}
				return
			}
			h.waitCount(10000)
			time.Sleep(3 * opts.ScanInterval)
			h.stop()
			expect(t, count, want, 0)
			if other := count.Other(); len(other) > 0 {
				t.Errorf("%d records are not lines written: first %q", len(other), other[0])
			}

			// A restart reads none of them again.
			count2 := tailertest.NewCounter()
			h2 := startTailer(t, opts, state, count2)
			time.Sleep(5 * opts.ScanInterval)
			h2.stop()
			if n := count2.Count(); n != 0 {
				t.Errorf("after a restart %d lines of compressed files were read again", n)
			}
		})
	}
}

// The last line of a compressed file without a newline is emitted, flagged
// unterminated, once the stream is complete.
func TestCompressedLastLineUnterminated(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("w=z seq=0 x\nw=z seq=1 x\nw=z seq=2 no newline"))
	zw.Close()
	writeFile(t, filepath.Join(dir, "a.log.gz"), buf.String())
	opts := testOptions(filepath.Join(dir, "*"))
	opts.Compression = CompressionAuto
	count := tailertest.NewCounter()
	h := startTailer(t, opts, t.TempDir(), count)
	h.waitCount(3)
	h.stop()
	expect(t, count, map[string]int{"z": 3}, 0)
	if count.Flags()&event.Unterminated == 0 {
		t.Errorf("last line not flagged unterminated")
	}
}

// logrotate's compress creates the .gz, then writes it: gzip holds its input
// until a block is full, so a .gz found early has a header and nothing to
// decompress yet. It waits, and once written it is found to hold what was
// read of app.log (still followed) and read from that offset: nothing comes
// twice. The .gz is looked at exactly when it is empty, a header, and
// complete (see quietEnv).
func TestCompressedCopyBeforeItsFirstBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newQuietEnv(t, func(o *Options) { o.Compression = CompressionGzip })
		data, err := os.ReadFile(e.path)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		gz := e.path + ".1.gz"
		writeFile(t, gz, "")
		e.event("app.log.1.gz", opCreate)
		writeFile(t, gz, buf.String()[:10]) // the gzip header alone
		e.event("app.log.1.gz", opWrite)
		if n := e.count.Count(); n != 500 {
			t.Fatalf("%d lines once the .gz's header was written, want 500", n)
		}
		writeFile(t, gz, buf.String())
		e.event("app.log.1.gz", opWrite)
		time.Sleep(e.opts.RotateWait)
		synctest.Wait()
		e.finish(1)
	})
}
