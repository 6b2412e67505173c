package workload

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestLineSizes(t *testing.T) {
	for _, tt := range []struct {
		f        Format
		min, max float64
	}{{Plain, 110, 130}, {JSON, 185, 215}, {CRI, 145, 175}} {
		if got := AvgLineBytes(tt.f, 10000); got < tt.min || got > tt.max {
			t.Errorf("%s: mean line %.1f B, want %v..%v", tt.f, got, tt.min, tt.max)
		}
	}
}

func TestJSONLinesHaveSixFields(t *testing.T) {
	for seq := range uint64(1000) {
		line := Append(nil, JSON, seq)
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d: %v: %s", seq, err, line)
		}
		if len(m) != 6 || m["seq"] != float64(seq) {
			t.Fatalf("line %d: fields %v", seq, m)
		}
	}
}

func TestCRILinesAreFull(t *testing.T) {
	for seq := range uint64(100) {
		f := bytes.Fields(Append(nil, CRI, seq))
		if len(f) < 4 || (string(f[1]) != "stdout" && string(f[1]) != "stderr") || string(f[2]) != "F" {
			t.Fatalf("line %d: %q", seq, f)
		}
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	size, err := WriteFile(path, Plain, 10, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if int64(len(b)) != size || len(lines) != 5 || !bytes.Contains(lines[0], []byte(" seq=10 ")) {
		t.Fatalf("size %d (file %d), %d lines: %q", size, len(b), len(lines), lines)
	}
}
