package jfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/logpump/logpump/journald/journaldtest"
)

const remote = journaldtest.RemoteBinary

func needRemote(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(remote); err != nil {
		if os.Getenv("LOGPUMP_REQUIRE_JOURNALD") != "" {
			t.Fatalf("systemd-journal-remote not installed: %v", err)
		}
		t.Skipf("systemd-journal-remote not installed: %v", err)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skipf("journalctl not installed: %v", err)
	}
}

// writeRemote writes entries (export format, one map of fields each) into
// the journal file path with systemd-journal-remote, env added.
func writeRemote(t testing.TB, path string, env []string, entries func(w *bytes.Buffer)) {
	t.Helper()
	var export bytes.Buffer
	entries(&export)
	cmd := exec.Command(remote, "-o", path, "-")
	cmd.Stdin = &export
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v: %s", err, out)
	}
}

// exportField writes one field in export format (binary form when the
// value holds a newline or is not text).
func exportField(w *bytes.Buffer, k string, v []byte) {
	if !bytes.ContainsAny(v, "\n") && utf8.Valid(v) {
		fmt.Fprintf(w, "%s=%s\n", k, v)
		return
	}
	w.WriteString(k + "\n")
	var n [8]byte
	for i := range 8 {
		n[i] = byte(uint64(len(v)) >> (8 * i))
	}
	w.Write(n[:])
	w.Write(v)
	w.WriteByte('\n')
}

const bootA = "0123456789abcdef0123456789abcdef"

// numbered writes n entries numbered from first: SEQ=i, MESSAGE, and a
// field repeated twice every 7th entry, a binary field every 11th.
func numbered(first, n int, msg func(i int) string) func(w *bytes.Buffer) {
	return func(w *bytes.Buffer) {
		for i := first; i < first+n; i++ {
			fmt.Fprintf(w, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_HOSTNAME=host-%d\nSYSLOG_IDENTIFIER=test\nPRIORITY=%d\nSEQ=%d\n",
				1700000000000000+int64(i), 1000+i, bootA, i%3, i%8, i)
			exportField(w, "MESSAGE", []byte(msg(i)))
			if i%7 == 0 {
				w.WriteString("TWICE=one\nTWICE=two\n")
			}
			if i%11 == 0 {
				exportField(w, "BIN", []byte{0xff, 0, 'x', byte(i)})
			}
			w.WriteByte('\n')
		}
	}
}

// journalctlEntries returns what journalctl -o json prints for args, one
// map per entry.
func journalctlEntries(t testing.TB, args ...string) []map[string]any {
	t.Helper()
	out, err := exec.Command("journalctl", append([]string{"--output=json", "--all", "--no-pager", "--quiet"}, args...)...).Output()
	if err != nil {
		t.Fatalf("journalctl %v: %v", args, err)
	}
	var list []map[string]any
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		list = append(list, m)
	}
	return list
}

// nativeEntries reads j from its start (or after the cursor) into maps
// shaped as journalctl's JSON: values as strings, byte arrays (as
// []any of float64) when not printable text, arrays for repeated fields.
func nativeEntries(t testing.TB, j *Journal) []map[string]any {
	t.Helper()
	var list []map[string]any
	var e Entry
	for {
		f, ok := j.Next(&e)
		if !ok {
			return list
		}
		m := map[string]any{
			"__CURSOR":              e.Cursor(),
			"__REALTIME_TIMESTAMP":  fmt.Sprint(e.Realtime),
			"__MONOTONIC_TIMESTAMP": fmt.Sprint(e.Monotonic),
			"_BOOT_ID":              e.BootID.String(),
		}
		for _, off := range e.Items {
			p, err := f.Data(off)
			if err != nil {
				t.Fatalf("data at %d: %v", off, err)
			}
			k, v, _ := bytes.Cut(p, []byte("="))
			if string(k) == "_BOOT_ID" {
				continue
			}
			var val any = string(v)
			if !printable(v) {
				var arr []any
				for _, c := range v {
					arr = append(arr, float64(c))
				}
				val = arr
			}
			if old, ok := m[string(k)]; ok {
				if l, ok := old.([]any); ok && !isBytes(l) {
					m[string(k)] = append(l, val)
				} else {
					m[string(k)] = []any{old, val}
				}
				continue
			}
			m[string(k)] = val
		}
		list = append(list, m)
	}
}

func isBytes(l []any) bool {
	_, ok := l[0].(float64)
	return ok
}

func printable(v []byte) bool {
	if !utf8.Valid(v) {
		return false
	}
	for _, c := range v {
		if c < ' ' && c != '\n' && c != '\t' || c == 127 {
			return false
		}
	}
	return true
}

// compare reports the first difference between journalctl's entries and
// the native reader's.
func compare(t testing.TB, want, got []map[string]any) {
	t.Helper()
	for i := range min(len(want), len(got)) {
		w, g := want[i], got[i]
		for _, k := range []string{"__SEQNUM", "__SEQNUM_ID"} {
			delete(w, k)
		}
		if fmt.Sprint(sorted(w)) != fmt.Sprint(sorted(g)) {
			t.Fatalf("entry %d differs:\njournalctl %v\nnative     %v", i, sorted(w), sorted(g))
		}
	}
	if len(want) != len(got) {
		t.Fatalf("journalctl printed %d entries, the native reader read %d", len(want), len(got))
	}
}

func sorted(m map[string]any) []string {
	var l []string
	for k, v := range m {
		l = append(l, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(l)
	return l
}

// seqs returns the SEQ field of each entry.
func seqs(list []map[string]any) []string {
	var s []string
	for _, m := range list {
		s = append(s, fmt.Sprint(m["SEQ"]))
	}
	return s
}

func TestRemoteFileSameAsJournalctl(t *testing.T) {
	needRemote(t)
	for _, tc := range []struct {
		name    string
		env     []string
		compact bool
	}{
		{"compact", []string{"SYSTEMD_JOURNAL_COMPACT=1"}, true},
		{"regular", []string{"SYSTEMD_JOURNAL_COMPACT=0"}, false},
		{"regular-unkeyed", []string{"SYSTEMD_JOURNAL_COMPACT=0", "SYSTEMD_JOURNAL_KEYED_HASH=0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "remote.journal")
			writeRemote(t, path, tc.env, numbered(0, 2000, func(i int) string {
				if i%100 == 0 {
					return strings.Repeat(fmt.Sprintf("large %d ", i), 8000) // compressed
				}
				return fmt.Sprintf("message %d\nsecond line", i)
			}))
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Header().Compact() != tc.compact {
				t.Errorf("compact = %v, want %v (flags %#x)", f.Header().Compact(), tc.compact, f.Header().Incompatible)
			}
			f.Close()
			want := journalctlEntries(t, "--file="+path)
			j := Files(path)
			defer j.Close()
			if err := j.Scan(); err != nil {
				t.Fatal(err)
			}
			got := nativeEntries(t, j)
			compare(t, want, got)
			if len(got) != 2000 {
				t.Fatalf("read %d entries, want 2000", len(got))
			}
			if n := j.files[0].f.dec.n[0]; n < 20 {
				t.Errorf("%d zstd payloads decompressed, want the 20 large messages at least", n)
			}
		})
	}
}

// BenchmarkJournal reads 100,000 entries of a file written by
// systemd-journal-remote: each entry's location and every field's data.
func BenchmarkJournal(b *testing.B) {
	needRemote(b)
	const n = 100_000
	path := filepath.Join(b.TempDir(), "bench.journal")
	writeRemote(b, path, nil, numbered(0, n, func(i int) string { return fmt.Sprintf("GET /api/v1/items/%d 200 12ms", i) }))
	b.ReportAllocs()
	var e Entry
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		j := Files(filepath.Join(filepath.Dir(path), "bench*.journal")) // journal-remote starts new files
		if err := j.Scan(); err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			f, ok := j.Next(&e)
			if !ok {
				break
			}
			for _, off := range e.Items {
				if _, err := f.Data(off); err != nil {
					b.Fatal(err)
				}
			}
			got++
		}
		j.Close()
		if got != n {
			b.Fatalf("read %d entries, want %d", got, n)
		}
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*n), "allocs/entry")
	b.ReportMetric(0, "ns/op")
}

// TestSeekTail: after SeekTail only entries written later are read, and
// the last location is the file's last entry, in both layouts and across
// several entry arrays.
func TestSeekTail(t *testing.T) {
	needRemote(t)
	for _, compact := range []string{"0", "1"} {
		path := filepath.Join(t.TempDir(), "tail.journal")
		writeRemote(t, path, []string{"SYSTEMD_JOURNAL_COMPACT=" + compact}, numbered(0, 3000, func(i int) string { return fmt.Sprint("m ", i) }))
		all := journalctlEntries(t, "--file="+path)
		j := Files(path)
		if err := j.Scan(); err != nil {
			t.Fatal(err)
		}
		j.SeekTail()
		last, ok := j.Last()
		if !ok || last.Cursor() != all[len(all)-1]["__CURSOR"] {
			t.Errorf("compact=%s: last %v (%v), want the cursor of the last entry %v", compact, last.Cursor(), ok, all[len(all)-1]["__CURSOR"])
		}
		if got := nativeEntries(t, j); len(got) != 0 {
			t.Errorf("compact=%s: %d entries after SeekTail, want none", compact, len(got))
		}
		j.Close()
	}
}

// TestDirectoryLayout: a directory is read as journalctl --directory reads
// it: its own files and those of subdirectories named by a machine ID (a
// host's /var/log/journal), not those of a namespace's directory.
func TestDirectoryLayout(t *testing.T) {
	needRemote(t)
	dir := t.TempDir()
	const mid = "0123456789abcdef0123456789abcdef"
	for i, p := range []string{mid + "/system.journal", mid + ".ns/system.journal", "top.journal", mid + "/user-1000.journal~", "other/x.journal"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		name, tilde := strings.CutSuffix(p, "~") // as journald names a file archived after a crash
		writeRemote(t, filepath.Join(dir, name), nil, numbered(i*10, 3, func(n int) string { return fmt.Sprint("m ", n) }))
		if tilde {
			os.Rename(filepath.Join(dir, name), filepath.Join(dir, p))
		}
	}
	want := journalctlEntries(t, "--directory="+dir)
	j := Directories(dir)
	defer j.Close()
	if err := j.Scan(); err != nil {
		t.Fatal(err)
	}
	got := nativeEntries(t, j)
	compare(t, want, got)
	if s := seqs(got); !slices.Equal(s, []string{"0", "1", "2", "20", "21", "22", "30", "31", "32"}) {
		t.Errorf("read %v: want the machine's files and the top one", s)
	}
}
