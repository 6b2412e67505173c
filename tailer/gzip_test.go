package tailer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// compressedLines returns n sequence-numbered lines of stream, compressed
// in f (see compress).
func compressedLines(t *testing.T, f format, stream string, n int) []byte {
	t.Helper()
	return compress(t, f, fmt.Sprintf("%s%d", stream, n), seqLines(t, stream, n))
}

// Compressed catch-up: compressed files never read as text (archives,
// rotations while stopped) are read once, decompressed: one present at the
// start, one appearing while running, one written in two steps (a cut
// stream reads as "no more yet"). A restart reads none of them again. With
// the default (compression: none) they are skipped, and so are files not
// named *.gz with compression: gzip.
func TestCompressedCatchUp(t *testing.T) {
	tests := []struct {
		format format
		mode   string
		ext    string
		read   bool
	}{
		{formatGzip, CompressionAuto, ".gz", true},
		{formatGzip, CompressionGzip, ".gz", true},
		{formatGzip, CompressionNone, ".gz", false},
		{formatZstd, CompressionAuto, ".zst", true},
		{formatXz, CompressionAuto, ".xz", true},
		{formatBzip2, CompressionAuto, ".bz2", true},
		{formatZstd, CompressionGzip, ".zst", false},
		{formatXz, CompressionNone, ".xz", false},
	}
	for _, tt := range tests {
		t.Run(tt.format.String()+"/"+tt.mode, func(t *testing.T) {
			dir, state := testenv.TempDir(t), testenv.TempDir(t)
			writeFile(t, filepath.Join(dir, "old.log"+tt.ext), string(compressedLines(t, tt.format, "old", 3000)))
			opts := testOptions(filepath.Join(dir, "*"))
			opts.Compression = tt.mode
			count := tailertest.NewCounter()
			h := startTailer(t, opts, state, count)
			time.Sleep(2 * opts.ScanInterval)
			writeFile(t, filepath.Join(dir, "new.log"+tt.ext), string(compressedLines(t, tt.format, "new", 2000)))
			cut := compressedLines(t, tt.format, "cut", 5000)
			f, err := os.Create(filepath.Join(dir, "cut.log"+tt.ext))
			if err != nil {
				t.Fatal(err)
			}
			f.Write(cut[:len(cut)/2])
			time.Sleep(3 * opts.ScanInterval)
			f.Write(cut[len(cut)/2:])
			f.Close()
			want := map[string]int{"old": 3000, "new": 2000, "cut": 5000}
			if !tt.read {
				time.Sleep(5 * opts.ScanInterval)
				h.stop()
				if n := count.Count(); n != 0 || len(count.Other()) != 0 {
					t.Fatalf("compression: %s read %d lines of %s files", tt.mode, n+len(count.Other()), tt.format)
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

// With start_at: end on a first run, compressed files present are skipped
// and checkpointed at their end (from the trailer or frame headers, else by
// decompressing them); one appearing while running is read. A restart reads
// neither again.
func TestCompressedStartAtEnd(t *testing.T) {
	for _, ft := range formats {
		t.Run(ft.f.String(), func(t *testing.T) {
			dir, state := testenv.TempDir(t), testenv.TempDir(t)
			writeFile(t, filepath.Join(dir, "old.log"+ft.ext), string(compressedLines(t, ft.f, "old", 3000)))
			opts := testOptions(filepath.Join(dir, "*"))
			opts.Compression = CompressionAuto
			opts.StartAt = StartEnd
			count := tailertest.NewCounter()
			h := startTailer(t, opts, state, count)
			time.Sleep(2 * opts.ScanInterval)
			writeFile(t, filepath.Join(dir, "new.log"+ft.ext), string(compressedLines(t, ft.f, "new", 2000)))
			h.waitCount(2000)
			time.Sleep(3 * opts.ScanInterval)
			h.stop()
			expect(t, count, map[string]int{"new": 2000}, 0)

			// start_at: beginning, so that a file without a checkpoint
			// would be read.
			opts.StartAt = StartBeginning
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
	for _, ft := range formats {
		t.Run(ft.f.String(), func(t *testing.T) {
			dir := testenv.TempDir(t)
			data := compress(t, ft.f, "unterminated", []byte("w=z seq=0 x\nw=z seq=1 x\nw=z seq=2 no newline"))
			writeFile(t, filepath.Join(dir, "a.log"+ft.ext), string(data))
			opts := testOptions(filepath.Join(dir, "*"))
			opts.Compression = CompressionAuto
			count := tailertest.NewCounter()
			h := startTailer(t, opts, testenv.TempDir(t), count)
			h.waitCount(3)
			h.stop()
			expect(t, count, map[string]int{"z": 3}, 0)
			if count.Flags()&event.Unterminated == 0 {
				t.Errorf("last line not flagged unterminated")
			}
		})
	}
}

// logrotate's compress creates the .gz, then writes it: gzip holds its input
// until a block is full, so a .gz found early has a header and nothing to
// decompress yet (and so do the other formats). It waits, and once written
// it is found to hold what was read of app.log (still followed) and read
// from that offset: nothing comes twice. The compressed file is looked at
// exactly when it is empty, a header, and complete (see quietEnv).
func TestCompressedCopyBeforeItsFirstBlock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("quietEnv reports events as the inotify watcher does (directory + \"/\" + name), which is not the path a Windows scan finds")
	}
	for _, ft := range formats {
		mode := CompressionAuto
		if ft.f == formatGzip {
			mode = CompressionGzip
		}
		t.Run(ft.f.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newQuietEnv(t, func(o *Options) { o.Compression = mode })
				data, err := os.ReadFile(e.path)
				if err != nil {
					t.Fatal(err)
				}
				comp := string(compress(t, ft.f, "app500", data))
				name := "app.log.1" + ft.ext
				path := filepath.Join(e.dir, name)
				writeFile(t, path, "")
				e.event(name, opCreate)
				writeFile(t, path, comp[:10]) // the header alone
				e.event(name, opWrite)
				if n := e.count.Count(); n != 500 {
					t.Fatalf("%d lines once the %s's header was written, want 500", n, ft.ext)
				}
				writeFile(t, path, comp)
				e.event(name, opWrite)
				time.Sleep(e.opts.RotateWait)
				synctest.Wait()
				e.finish(1)
			})
		})
	}
}
