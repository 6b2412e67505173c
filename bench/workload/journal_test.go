package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	testBoot    = "0123456789abcdef0123456789abcdef"
	testMachine = "fedcba9876543210fedcba9876543210"
)

func TestJournalEntries(t *testing.T) {
	var msgBytes int
	const n = 10000
	for seq := range uint64(n) {
		e := AppendJournalEntry(nil, seq, testBoot, testMachine)
		body, ok := bytes.CutSuffix(e, []byte("\n\n"))
		if !ok {
			t.Fatalf("entry %d does not end in an empty line: %q", seq, e)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(body), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok || k == "" {
				t.Fatalf("entry %d: line %q is not NAME=value", seq, line)
			}
			fields[k] = v
		}
		for _, k := range []string{"__REALTIME_TIMESTAMP", "_BOOT_ID", "_SYSTEMD_UNIT", "_PID", "_COMM", "_HOSTNAME", "PRIORITY", "SYSLOG_IDENTIFIER", "MESSAGE"} {
			if fields[k] == "" {
				t.Fatalf("entry %d lacks %s: %q", seq, k, e)
			}
		}
		if !strings.Contains(fields["MESSAGE"], " seq="+strconv.FormatUint(seq, 10)+" ") {
			t.Fatalf("entry %d: MESSAGE %q", seq, fields["MESSAGE"])
		}
		msgBytes += len(fields["MESSAGE"])
	}
	if mean := float64(msgBytes) / n; mean < 110 || mean > 160 {
		t.Errorf("mean MESSAGE %.1f B, want 110..160", mean)
	}
	if _, err := WriteJournalExport(&bytes.Buffer{}, 0, 1, "abc", testMachine); err == nil {
		t.Error("a short boot ID was accepted")
	}
}

// TestJournalRemote: systemd-journal-remote stores every entry written, and
// journalctl reads them back in order with their sequence numbers.
func TestJournalRemote(t *testing.T) {
	remote := "/lib/systemd/systemd-journal-remote"
	if _, err := os.Stat(remote); err != nil {
		t.Skip("systemd-journal-remote not installed (apt-get install systemd-journal-remote)")
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("journalctl not installed")
	}
	dir := t.TempDir()
	var export bytes.Buffer
	const first, n = 5, 300
	if _, err := WriteJournalExport(&export, first, n, testBoot, testMachine); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(remote, "--output="+filepath.Join(dir, "bench.journal"), "-")
	cmd.Stdin = &export
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", remote, err, out)
	}
	out, err := exec.Command("journalctl", "--directory="+dir, "--output=json", "--no-pager").Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	want := uint64(first)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journalctl printed %q: %v", sc.Text(), err)
		}
		msg, _ := e["MESSAGE"].(string)
		if !strings.Contains(msg, " seq="+strconv.FormatUint(want, 10)+" ") || e["_SYSTEMD_UNIT"] == nil || e["_BOOT_ID"] != testBoot {
			t.Fatalf("entry %d: %v", want, e)
		}
		want++
	}
	if got := want - first; got != n {
		t.Fatalf("journalctl read %d entries, want %d", got, n)
	}
}
