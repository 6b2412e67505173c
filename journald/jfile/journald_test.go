package jfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/journald/journaldtest"
)

// follower reads a journal as the source does: every entry until none is
// left, then Refresh and Scan, again.
type follower struct {
	j     *Journal
	got   []map[string]any
	seen  map[int]int
	skips []string
}

func (f *follower) poll(t *testing.T) {
	t.Helper()
	if err := f.j.Scan(); err != nil {
		t.Fatal(err)
	}
	f.j.Refresh()
	for _, m := range nativeEntries(t, f.j) {
		f.got = append(f.got, m)
		if s, ok := m["SEQ"].(string); ok {
			n, _ := strconv.Atoi(s)
			f.seen[n]++
		}
	}
}

// until polls until every SEQ in [0, n) was read.
func (f *follower) until(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		f.poll(t)
		var missing []int
		for i := range n {
			if f.seen[i] == 0 {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s %d of entries 0-%d not read: %v", len(missing), n-1, missing[:min(len(missing), 20)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJournaldFilesSameAsJournalctl: 50,000 numbered entries written by a
// real journald (compact layout; 20,000 in the regular one; large messages compressed)
// are read once each while journald writes them, rotates its file and the
// archive is deleted (vacuum) before the reader is through it; every entry
// journalctl still prints is read the same, field by field.
func TestJournaldFilesSameAsJournalctl(t *testing.T) {
	for _, tc := range []struct {
		name    string
		compact string
		n       int
	}{{"compact", "1", 50_000}, {"regular", "0", 20_000}} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			if testing.Short() {
				n = 5000
			}
			// Rotations at 40 % and 70 %, the vacuum at 80 %.
			r1, r2, vac := n*4/10, n*7/10, n*8/10
			j := journaldtest.StartEnv(t, "SYSTEMD_JOURNAL_COMPACT="+tc.compact)
			send := func(from, to int) {
				for i := from; i < to; i++ {
					msg := "seq " + strconv.Itoa(i)
					if i%5000 == 1 {
						msg += strings.Repeat(" large", 64<<10/6) // 64 KiB: compressed
					}
					j.Send(t, "MESSAGE", msg, "SYSLOG_IDENTIFIER", "lptest", "SEQ", strconv.Itoa(i), "PRIORITY", strconv.Itoa(i%8))
				}
			}
			send(0, 10)
			j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", 10)
			f := &follower{j: Directories(j.Dir(t)), seen: map[int]int{}}
			defer f.j.Close()
			if err := f.j.Scan(); err != nil {
				t.Fatal(err)
			}
			if c := f.j.files[0].f.Header().Compact(); c != (tc.compact == "1") {
				t.Fatalf("journald wrote compact=%v with SYSTEMD_JOURNAL_COMPACT=%s", c, tc.compact)
			}
			f.j.OnSkip = func(path string, err error) { t.Errorf("skipped %s: %v", path, err) }
			f.until(t, 10)
			send(10, r1)
			f.poll(t) // part read, part not
			j.Rotate(t)
			send(r1, r2)
			f.poll(t)
			j.Rotate(t)
			// Vacuum: every archived file deleted, the second one before
			// the reader is through it.
			send(r2, vac)
			j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", vac)
			before := journalctlEntries(t, "--namespace="+j.Namespace)
			archived, _ := filepath.Glob(filepath.Join(j.Dir(t), "*@*.journal"))
			if len(archived) != 2 {
				t.Fatalf("archived files %v, want 2", archived)
			}
			for _, a := range archived {
				if err := os.Remove(a); err != nil {
					t.Fatal(err)
				}
			}
			send(vac, n)
			f.until(t, n)
			f.poll(t)
			dups, outside := 0, 0
			for s, c := range f.seen {
				if c > 1 {
					dups += c - 1
				}
				if s < 0 || s >= n {
					outside++
				}
			}
			if dups != 0 || outside != 0 {
				t.Errorf("%d entries read twice, %d outside 0-%d", dups, outside, n-1)
			}
			// What journalctl printed before the vacuum, then what it
			// prints after it, is what was read, field by field.
			want := before
			known := map[any]bool{}
			for _, e := range before {
				known[e["__CURSOR"]] = true
			}
			for _, e := range journalctlEntries(t, "--namespace="+j.Namespace) {
				if !known[e["__CURSOR"]] {
					want = append(want, e)
				}
			}
			compare(t, want, f.got)
			if d := f.j.dec.n; d[0]+d[1]+d[2] < n/5000 {
				t.Errorf("%v payloads decompressed (zstd, xz, lz4), want the %d large messages at least", d, n/5000)
			}
			t.Logf("%d entries read, %d compared with journalctl", len(f.got), len(want))
		})
	}
}

// TestSeekToJournalctlCursor: the cursor journalctl prints for an entry is
// the native reader's for it, and seeking it goes on with the next entry.
func TestSeekToJournalctlCursor(t *testing.T) {
	j := journaldtest.Start(t)
	for i := range 100 {
		j.Send(t, "MESSAGE", fmt.Sprint("seq ", i), "SYSLOG_IDENTIFIER", "lptest", "SEQ", strconv.Itoa(i))
	}
	j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", 100)
	want := journalctlEntries(t, "--namespace="+j.Namespace, "SEQ=41")
	if len(want) != 1 {
		t.Fatalf("journalctl SEQ=41: %d entries", len(want))
	}
	loc, err := ParseCursor(want[0]["__CURSOR"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Cursor(); got != want[0]["__CURSOR"] {
		t.Errorf("cursor %q printed again as %q", want[0]["__CURSOR"], got)
	}
	jr := Directories(j.Dir(t))
	defer jr.Close()
	if err := jr.Scan(); err != nil {
		t.Fatal(err)
	}
	if !jr.Seek(loc) {
		t.Fatal("Seek did not find the entry of journalctl's cursor")
	}
	got := nativeEntries(t, jr)
	if s := seqs(got); len(s) != 58 || s[0] != "42" || s[57] != "99" {
		t.Errorf("after the cursor of 41 read %v, want 42-99", s)
	}
	// A cursor of an entry no longer held (a seqnum beyond a vacuum's
	// reach: 0 of a later seqnum) is not found; reading starts after it.
	loc.Seqnum = 0
	jr2 := Directories(j.Dir(t))
	defer jr2.Close()
	jr2.Scan()
	if jr2.Seek(loc) {
		t.Error("Seek found an entry for a cursor the journal does not hold")
	}
}

// TestUserJournalsInterleaved: entries journald splits between
// system.journal and user-1000.journal (by the sender's uid) are read in
// the order written, as journalctl prints them.
func TestUserJournalsInterleaved(t *testing.T) {
	j := journaldtest.Start(t)
	const n = 300
	for i := range n {
		uid := 0
		if i%3 == 1 {
			uid = 1000
		}
		j.SendAs(t, uid, "MESSAGE", fmt.Sprint("seq ", i), "SYSLOG_IDENTIFIER", "lptest", "SEQ", strconv.Itoa(i))
	}
	j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", n)
	if _, err := os.Stat(filepath.Join(j.Dir(t), "user-1000.journal")); err != nil {
		t.Fatalf("journald wrote no user journal: %v", err)
	}
	jr := Directories(j.Dir(t))
	defer jr.Close()
	if err := jr.Scan(); err != nil {
		t.Fatal(err)
	}
	got := nativeEntries(t, jr)
	compare(t, journalctlEntries(t, "--namespace="+j.Namespace), got)
	var seq []string
	for _, s := range seqs(got) {
		if s != "<nil>" {
			seq = append(seq, s)
		}
	}
	for i, s := range seq {
		if s != strconv.Itoa(i) {
			t.Fatalf("entry %d is SEQ %s: not in the order written", i, s)
		}
	}
	if len(seq) != n {
		t.Fatalf("%d entries, want %d", len(seq), n)
	}
}
