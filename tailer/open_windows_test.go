package tailer

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/logpump/logpump/internal/testenv"
)

// On Windows the agent holds followed files open sharing delete access: an
// application renames or deletes a file the agent has open (rotation is not
// blocked), the agent keeps reading the unread end through its handle, and
// identity (volume serial and file index) follows the file across the
// rename and tells a new file at the old name apart.
func TestWindowsOpenFileDoesNotBlockRotation(t *testing.T) {
	dir := testenv.TempDir(t)
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path, []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		t.Fatal(err)
	}
	id := fileID(fd, st)
	if id == (devIno{}) {
		t.Fatal("fileID: zero identity")
	}
	if _, got, err := statID(path); err != nil || got != id {
		t.Fatalf("statID(%s) = %v, %v; want %v (the open file's)", path, got, err, id)
	}

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatalf("rename while the agent holds the file: %v", err)
	}
	if _, got, err := statID(rotated); err != nil || got != id {
		t.Errorf("statID(%s) after rename = %v, %v; want %v", rotated, got, err, id)
	}
	if err := os.WriteFile(path, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, got, err := statID(path); err != nil || got == id {
		t.Errorf("statID of the new file = %v, %v; want an identity other than %v", got, err, id)
	}

	if err := os.Remove(rotated); err != nil {
		t.Fatalf("delete while the agent holds the file: %v", err)
	}
	st, err = fd.Stat()
	if err != nil {
		t.Fatalf("stat through the handle after delete: %v", err)
	}
	switch {
	case !unlinked(fd, st) && testenv.Wine():
		// Wine unlinks at once and reports neither a pending delete nor
		// zero links; Windows reports DeletePending.
		t.Log("under Wine: a deleted file's handle does not say it was deleted (needs a real Windows)")
	case !unlinked(fd, st):
		t.Error("unlinked = false for a deleted file")
	}
	buf := make([]byte, 64)
	n, err := preader{fd}.ReadAt(buf, 0)
	if err != io.EOF || string(buf[:n]) != "one\ntwo\n" {
		t.Errorf("ReadAt after delete = %q, %v; want %q, io.EOF", buf[:n], err, "one\ntwo\n")
	}
}

// Patterns are walked from their volume's root.
func TestWindowsGlobFromVolumeRoot(t *testing.T) {
	dir := testenv.TempDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "a", "b", "x.log")
	if err := os.WriteFile(want, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := &globber{cache: map[string]*listing{}, dirs: map[string]struct{}{}}
	var got []string
	g.expand(filepath.Join(dir, "**", "*.log"), func(p string, _ bool, _ linkKind) {
		if _, err := os.Stat(p); err == nil {
			got = append(got, p)
		}
	})
	if len(got) != 1 || got[0] != want {
		t.Errorf("expand = %q, want [%q]", got, want)
	}
}
