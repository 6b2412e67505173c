package jfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// remoteFile writes a small journal file with systemd-journal-remote and
// returns its bytes.
func remoteFile(t testing.TB, n int, env ...string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.journal")
	writeRemote(t, path, env, numbered(0, n, func(i int) string {
		if i == 2 {
			return strings.Repeat("compressed ", 200)
		}
		return fmt.Sprint("message ", i)
	}))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The file is allocated ahead; its objects end with the tail object.
	tail := binary.LittleEndian.Uint64(data[136:])
	end := tail + binary.LittleEndian.Uint64(data[tail+8:])
	return data[:min(uint64(len(data)), (end+7)&^7)]
}

// TestUnknownIncompatibleFlag: a file of a format this reader does not
// know is refused with an error naming the file and the flag.
func TestUnknownIncompatibleFlag(t *testing.T) {
	needRemote(t)
	data := remoteFile(t, 3)
	binary.LittleEndian.PutUint32(data[12:], binary.LittleEndian.Uint32(data[12:])|1<<7)
	path := filepath.Join(t.TempDir(), "new.journal")
	os.WriteFile(path, data, 0o644)
	_, err := Open(path)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Flags != 1<<7 || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "0x80") {
		t.Fatalf("Open: %v, want an UnsupportedError naming %s and flag 0x80", err, path)
	}
}

// TestDamagedFileIsSkipped: in a directory, a file that is not a journal
// and a file whose entry array points outside it are skipped (reported),
// and the good file's entries are read.
func TestDamagedFileIsSkipped(t *testing.T) {
	needRemote(t)
	dir := t.TempDir()
	good := remoteFile(t, 5)
	os.WriteFile(filepath.Join(dir, "good.journal"), good, 0o644)
	os.WriteFile(filepath.Join(dir, "garbage.journal"), []byte("not a journal file at all"), 0o644)
	bad := bytes.Clone(remoteFile(t, 5))
	arr := binary.LittleEndian.Uint64(bad[176:])
	binary.LittleEndian.PutUint64(bad[arr+24:], 1<<40) // first entry offset: beyond the file
	os.WriteFile(filepath.Join(dir, "bad.journal"), bad, 0o644)
	j := Directories(dir)
	defer j.Close()
	var skipped []string
	j.OnSkip = func(path string, err error) { skipped = append(skipped, filepath.Base(path)+": "+err.Error()) }
	if err := j.Scan(); err != nil {
		t.Fatal(err)
	}
	got := nativeEntries(t, j)
	if len(got) != 5 {
		t.Errorf("read %d entries, want the good file's 5", len(got))
	}
	if len(skipped) != 2 {
		t.Errorf("skipped %q, want garbage.journal and bad.journal", skipped)
	}
}

func TestDecompress(t *testing.T) {
	want := []byte(strings.Repeat("journal data compressed ", 100))
	d := &decompressor{}

	// journald writes xz streams without a check (LZMA_CHECK_NONE).
	for _, check := range []byte{xz.None, xz.CRC64} {
		var xb bytes.Buffer
		w, err := xz.WriterConfig{CheckSum: check}.NewWriter(&xb)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(want)
		w.Close()
		if got, err := d.xz(xb.Bytes()); err != nil || !bytes.Equal(got, want) {
			t.Errorf("xz (check %d): %q, %v", check, got, err)
		}
	}

	// LZ4: 8 bytes of size, then a block: literals "abcd", a match of
	// offset 4 and length 4+12 (overlapping), then the last literals.
	block := []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0, 0x30, 'x', 'y', 'z'}
	lz := binary.LittleEndian.AppendUint64(nil, 23)
	lz = append(lz, block...)
	if got, err := d.lz4(lz); err != nil || string(got) != "abcdabcdabcdabcdabcdxyz" {
		t.Errorf("lz4: %q, %v", got, err)
	}
	for _, bad := range [][]byte{
		binary.LittleEndian.AppendUint64(nil, 24),                          // no block
		append(binary.LittleEndian.AppendUint64(nil, 23), 0x4c, 'a', 9, 0), // literals beyond the block
		append(binary.LittleEndian.AppendUint64(nil, 8), 0x10, 'a', 9, 0),  // offset beyond the output
		append(binary.LittleEndian.AppendUint64(nil, 1<<40), 0x10, 'a'),    // size too large
	} {
		if got, err := d.lz4(bad); err == nil {
			t.Errorf("lz4 %x: %q, want an error", bad, got)
		}
	}
	if _, err := d.zstd([]byte("not zstd")); err == nil {
		t.Error("zstd of garbage: no error")
	}
}

// FuzzJournalFile: a damaged journal file (any bytes changed) never makes
// the reader panic or loop: reading it ends, with entries or an error.
func FuzzJournalFile(f *testing.F) {
	if _, err := os.Stat(remote); err == nil {
		f.Add(remoteFile(f, 4, "SYSTEMD_JOURNAL_COMPACT=1"), uint16(0), byte(0))
		f.Add(remoteFile(f, 4, "SYSTEMD_JOURNAL_COMPACT=0"), uint16(0), byte(0))
	}
	f.Add(append([]byte("LPKSHHRH"), make([]byte, 300)...), uint16(12), byte(0x10))
	f.Fuzz(func(t *testing.T, data []byte, at uint16, b byte) {
		if int(at) < len(data) {
			data[at] ^= b
		}
		path := filepath.Join(t.TempDir(), "f.journal")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tail := Files(path)
		tail.Scan()
		tail.SeekTail()
		tail.Close()
		j := Files(path)
		defer j.Close()
		j.Scan()
		var e Entry
		for range 10_000 {
			f, ok := j.Next(&e)
			if !ok {
				return
			}
			for _, off := range e.Items {
				f.Data(off)
			}
		}
		t.Fatal("more than 10,000 entries from a small file")
	})
}

// TestNewFileWithoutHeaderYet: a file journald has just created (no
// header yet) is not reported; once it has one it is read. A file that
// cannot be opened is reported once, not at every Scan.
func TestNewFileWithoutHeaderYet(t *testing.T) {
	needRemote(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "system.journal")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "garbage.journal"), []byte("not a journal file at all"), 0o644)
	j := Directories(dir)
	defer j.Close()
	var skipped []string
	j.OnSkip = func(path string, err error) { skipped = append(skipped, filepath.Base(path)) }
	for range 3 {
		if err := j.Scan(); err != nil {
			t.Fatal(err)
		}
	}
	if !j.Pending() || !slices.Equal(skipped, []string{"garbage.journal"}) {
		t.Fatalf("pending %v, skipped %v: want the new file pending, the garbage reported once", j.Pending(), skipped)
	}
	if err := os.WriteFile(path, remoteFile(t, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	j.Scan()
	if got := nativeEntries(t, j); len(got) != 3 || j.Pending() {
		t.Errorf("read %d entries once the header was written (pending %v), want 3", len(got), j.Pending())
	}
}
