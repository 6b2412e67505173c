package journald_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/journald"
	"github.com/logpump/logpump/journald/journaldtest"
)

// reader runs one Source over the real journal until stopped, counting
// the entries it yields by their sequence number.
type reader struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}
	src    *journald.Source

	mu    sync.Mutex
	seen  map[int]int // sequence number -> times yielded
	first event.Record
	held  []*event.Batch // batches not acknowledged (ack false)
}

func start(t *testing.T, tr *checkpoint.Tracker, opts journald.Options, ack bool) *reader {
	t.Helper()
	src, err := journald.New("journal", opts, tr, &event.Resource{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{t: t, cancel: cancel, done: make(chan struct{}), src: src, seen: map[int]int{}}
	go func() {
		defer close(r.done)
		for b := range src.Batches(ctx) {
			r.mu.Lock()
			for _, rec := range b.Records {
				body, ok := strings.CutPrefix(rec.Body.Str, "seq ")
				if !ok {
					continue // journald's own entries ("Journal started")
				}
				body, _, _ = strings.Cut(body, "\n")
				n, err := strconv.Atoi(body)
				if err != nil {
					t.Errorf("body %q: %v", rec.Body.Str, err)
					continue
				}
				if len(r.seen) == 0 {
					r.first = rec
					r.first.Attrs = append([]event.KeyValue(nil), rec.Attrs...)
					for i := range r.first.Attrs {
						r.first.Attrs[i].Value.Str = strings.Clone(rec.Attrs[i].Value.Str)
					}
					r.first.Body.Str = strings.Clone(rec.Body.Str)
				}
				r.seen[n]++
			}
			if ack {
				b.Done()
			} else {
				r.held = append(r.held, b)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// stopAndSave stops r and saves the checkpoints, as a clean stop does.
func (r *reader) stopAndSave(tr *checkpoint.Tracker) {
	r.t.Helper()
	r.stop()
	if err := tr.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// readAll waits until r read [from, mid), sends [mid, to) while it runs,
// waits for those, stops it, and checks that it read [from, to) once each.
func (r *reader) readAll(j *journaldtest.Journald, from, mid, to int) {
	r.t.Helper()
	r.waitFor(from, mid)
	send(r.t, j, mid, to)
	r.waitFor(from, to)
	r.stop()
	r.check(from, to)
}

func (r *reader) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Fatal("Batches did not return within 10s of the cancel")
	}
}

// waitFor waits until the reader saw every sequence number in [from, to).
func (r *reader) waitFor(from, to int) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		missing := 0
		for i := from; i < to; i++ {
			if r.seen[i] == 0 {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("after 30s %d of the entries %d-%d were not read", missing, from, to-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check reports numbers outside [from, to), read more than once, or missing.
func (r *reader) check(from, to int) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	missing, dups, extra := 0, 0, 0
	for n, c := range r.seen {
		if n < from || n >= to {
			extra++
		}
		if c > 1 {
			dups += c - 1
		}
	}
	for i := from; i < to; i++ {
		if r.seen[i] == 0 {
			missing++
		}
	}
	if missing != 0 || dups != 0 || extra != 0 {
		r.t.Errorf("entries %d-%d: %d missing, %d duplicates, %d outside", from, to-1, missing, dups, extra)
	}
}

func send(t *testing.T, j *journaldtest.Journald, from, to int) {
	for i := from; i < to; i++ {
		j.Send(t, "MESSAGE", "seq "+strconv.Itoa(i), "PRIORITY", "4", "SYSLOG_IDENTIFIER", "lptest", "SEQ", strconv.Itoa(i))
	}
	j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", to)
}

// sendMore is send for a journal that does not hold entries 0 to from-1.
func sendMore(t *testing.T, j *journaldtest.Journald, from, to int) {
	before := j.Count(t, "SYSLOG_IDENTIFIER=lptest")
	for i := from; i < to; i++ {
		j.Send(t, "MESSAGE", "seq "+strconv.Itoa(i), "PRIORITY", "4", "SYSLOG_IDENTIFIER", "lptest", "SEQ", strconv.Itoa(i))
	}
	j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", before+to-from)
}

func newTracker(t *testing.T, dir string) *checkpoint.Tracker {
	t.Helper()
	tr := checkpoint.NewTracker(checkpoint.NewStore(dir), slog.New(slog.DiscardHandler), checkpoint.Options{})
	if err := tr.Load(); err != nil {
		t.Fatal(err)
	}
	return tr
}

func options(j *journaldtest.Journald, rd, startAt string) journald.Options {
	o := journald.DefaultOptions()
	o.Namespace, o.StartAt, o.Reader = j.Namespace, startAt, rd
	o.RestartDelay = 50 * time.Millisecond
	o.MaxBatchRecords = 64
	return o
}

// TestJournalReadOnceAcrossRestarts: every entry of a real journald is read
// once: those stored before the first start (start_at: beginning), those
// written while reading, and those written while the agent was stopped,
// which the next start reads from the saved cursor.
func TestJournalReadOnceAcrossRestarts(t *testing.T) {
	forReaders(t, testJournalReadOnceAcrossRestarts)
}

func testJournalReadOnceAcrossRestarts(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	dir := t.TempDir()
	send(t, j, 0, 300)

	tr := newTracker(t, dir)
	r := start(t, tr, options(j, rd, journald.StartBeginning), true)
	r.readAll(j, 0, 300, 1000)
	r.stopAndSave(tr)

	// Stopped: entries keep coming.
	send(t, j, 1000, 1500)

	// A new process: a tracker loaded from the state directory.
	r2 := start(t, newTracker(t, dir), options(j, rd, journald.StartBeginning), true)
	r2.readAll(j, 1000, 1500, 1600)

	got := r.first
	if got.Body.Str != "seq 0" || got.Severity != event.SeverityWarn || got.SeverityText != "warning" {
		t.Errorf("first record: body %q severity %v %q, want \"seq 0\" WARN \"warning\"", got.Body.Str, got.Severity, got.SeverityText)
	}
	if d := time.Since(time.Unix(0, got.Time)); d < 0 || d > time.Hour {
		t.Errorf("first record's time %v is not the time it was written", time.Unix(0, got.Time))
	}
	for _, want := range []event.KeyValue{
		{Key: "SYSLOG_IDENTIFIER", Value: event.String("lptest")},
		{Key: "SEQ", Value: event.String("0")},
		{Key: "_NAMESPACE", Value: event.String(j.Namespace)},
	} {
		if v, ok := event.Lookup(got.Attrs, want.Key); !ok || !v.Equal(want.Value) {
			t.Errorf("attribute %s = %v (%v), want %v", want.Key, v, ok, want.Value)
		}
	}
	for _, kv := range got.Attrs {
		if kv.Key == "MESSAGE" || kv.Key == "PRIORITY" || strings.HasPrefix(kv.Key, "__") {
			t.Errorf("attribute %s: the field is the body, severity or position, not an attribute", kv.Key)
		}
	}
}

// TestJournalUnacknowledgedIsReadAgain: entries yielded but never
// acknowledged are read again by the next start (at least once), and the
// acknowledged ones are not.
func TestJournalUnacknowledgedIsReadAgain(t *testing.T) {
	forReaders(t, testJournalUnacknowledgedIsReadAgain)
}

func testJournalUnacknowledgedIsReadAgain(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	dir := t.TempDir()
	send(t, j, 0, 200)

	tr := newTracker(t, dir)
	r := start(t, tr, options(j, rd, journald.StartBeginning), true)
	r.waitFor(0, 200)
	r.stopAndSave(tr)

	send(t, j, 200, 400)
	tr2 := newTracker(t, dir)
	r2 := start(t, tr2, options(j, rd, journald.StartBeginning), false) // never acknowledges
	r2.waitFor(200, 400)
	r2.stopAndSave(tr2)

	r3 := start(t, newTracker(t, dir), options(j, rd, journald.StartBeginning), true)
	r3.readAll(j, 200, 400, 400)
}

// TestJournalStartAtEnd: a journal read for the first time with start_at:
// end skips what it held, reads what comes after, and a restart before any
// new entry does not skip the entries written while it was stopped.
func TestJournalStartAtEnd(t *testing.T) { forReaders(t, testJournalStartAtEnd) }

func testJournalStartAtEnd(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	dir := t.TempDir()
	send(t, j, 0, 100)

	tr := newTracker(t, dir)
	r := start(t, tr, options(j, rd, journald.StartEnd), true)
	// The start position is saved before anything new is read.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, c, ok := tr.ResumeCursor(checkpoint.JournalKey("journal")); ok && c != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no start cursor after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stopAndSave(tr)
	send(t, j, 100, 150)

	r2 := start(t, newTracker(t, dir), options(j, rd, journald.StartEnd), true)
	r2.readAll(j, 100, 150, 200)
}

// TestJournalctlFailureIsRetried: when journalctl cannot read the journal
// (a namespace no journald serves yet) the source retries, and reads the
// journal once it exists.
func TestJournalctlFailureIsRetried(t *testing.T) { forReaders(t, testJournalctlFailureIsRetried) }

func testJournalctlFailureIsRetried(t *testing.T, rd string) {
	tr := newTracker(t, t.TempDir())
	opts := journald.DefaultOptions()
	opts.Reader = rd
	opts.Journalctl = "/nonexistent/journalctl"
	opts.Directory = "/nonexistent/journal"
	opts.RestartDelay = 10 * time.Millisecond
	r := start(t, tr, opts, true)
	deadline := time.Now().Add(10 * time.Second)
	for r.src.Stats().Restarts < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("journalctl missing: %d restarts after 10s, want 2", r.src.Stats().Restarts)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.stop()
}

// TestJournalMultilineMessage: a message holding newlines is one record.
func TestJournalMultilineMessage(t *testing.T) { forReaders(t, testJournalMultilineMessage) }

func testJournalMultilineMessage(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	j.Send(t, "MESSAGE", "seq 0\nsecond line\n\tthird", "SYSLOG_IDENTIFIER", "lptest")
	j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", 1)
	tr := newTracker(t, t.TempDir())
	r := start(t, tr, options(j, rd, journald.StartBeginning), true)
	r.waitFor(0, 1)
	r.stop()
	if got, want := r.first.Body.Str, "seq 0\nsecond line\n\tthird"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

// TestJournalEarlierBootIsRead: entries of the boot before a reboot written
// after the last acknowledged one are read after the restart, then the
// current boot's (journalctl --follow alone reads only the current boot:
// it would skip them).
func TestJournalEarlierBootIsRead(t *testing.T) { forReaders(t, testJournalEarlierBootIsRead) }

func testJournalEarlierBootIsRead(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	j.AddEarlierBoot(t, "0123456789abcdef0123456789abcdef", "lptest", "seq 0", "seq 1", "seq 2")
	out, err := exec.Command("journalctl", "--namespace="+j.Namespace, "--output=json", "--no-pager", "--quiet", "MESSAGE=seq 0").Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	var entry struct {
		Cursor string `json:"__CURSOR"`
	}
	if err := json.Unmarshal(out, &entry); err != nil || entry.Cursor == "" {
		t.Fatalf("no cursor for the earlier boot's first entry in %q: %v", out, err)
	}
	// Before the reboot the agent had acknowledged "seq 0".
	dir := t.TempDir()
	tr := newTracker(t, dir)
	tr.BeginCursor(checkpoint.JournalKey("journal"), "journal:"+j.Namespace, 100, entry.Cursor)
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	send(t, j, 3, 5) // the current boot, before the start
	r := start(t, newTracker(t, dir), options(j, rd, journald.StartEnd), true)
	r.readAll(j, 1, 5, 10)
}

// TestJournalVacuumedCursorResumesAtOldest: the entry after which reading
// resumes was vacuumed while the agent was stopped (journald rotated its
// file, journalctl --vacuum-files deleted the archive). Reading goes on at
// the oldest entry the journal still holds, none of those is skipped
// (journalctl --after-cursor would skip the first of them), and the gap is
// warned about and counted with the number of entries it held.
func TestJournalVacuumedCursorResumesAtOldest(t *testing.T) {
	forReaders(t, testJournalVacuumedCursorResumesAtOldest)
}

func testJournalVacuumedCursorResumesAtOldest(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	dir := t.TempDir()
	send(t, j, 0, 100)
	tr := newTracker(t, dir)
	r := start(t, tr, options(j, rd, journald.StartBeginning), true)
	r.waitFor(0, 100)
	r.stopAndSave(tr)
	r.check(0, 100)

	// Stopped: 100 entries more, then rotation and vacuum remove every
	// entry up to there, including the last one read.
	send(t, j, 100, 200)
	j.RotateAndVacuum(t)
	sendMore(t, j, 200, 300)

	r2 := start(t, newTracker(t, dir), options(j, rd, journald.StartBeginning), true)
	r2.waitFor(200, 300)
	r2.stop()
	r2.check(200, 300)
	st := r2.src.Stats()
	if st.Gaps != 1 || st.GapEntries < 100 {
		t.Errorf("gaps %d of %d entries, want 1 of at least 100 (entries 100-199 and journald's own)", st.Gaps, st.GapEntries)
	}
}

// TestJournalCursorOfAnotherJournal: a checkpoint holding the cursor of
// another journal (a directory replaced, a host restored from a backup)
// resumes at that journal's oldest entry: every entry is read, the first
// included, and the gap is counted, its size unknown.
func TestJournalCursorOfAnotherJournal(t *testing.T) {
	forReaders(t, testJournalCursorOfAnotherJournal)
}

func testJournalCursorOfAnotherJournal(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	other := journaldtest.Start(t)
	dir := t.TempDir()
	send(t, other, 0, 10)
	tr := newTracker(t, dir)
	r := start(t, tr, options(other, rd, journald.StartBeginning), true)
	r.waitFor(0, 10)
	r.stopAndSave(tr)

	sendMore(t, j, 10, 50)
	r2 := start(t, newTracker(t, dir), options(j, rd, journald.StartBeginning), true)
	r2.waitFor(10, 50)
	r2.stop()
	r2.check(10, 50)
	if st := r2.src.Stats(); st.Gaps != 1 || st.GapEntries != 0 {
		t.Errorf("gaps %d of %d entries, want 1 of an unknown number (0)", st.Gaps, st.GapEntries)
	}
}

// TestJournalFilesAndFields: files reads journal files named by a glob
// (here written by systemd-journal-remote), fields keeps only the
// attributes listed, and dmesg only the kernel's entries.
func TestJournalFilesAndFields(t *testing.T) { forReaders(t, testJournalFilesAndFields) }

func testJournalFilesAndFields(t *testing.T, rd string) {
	if _, err := os.Stat(journaldtest.RemoteBinary); err != nil {
		if os.Getenv("LOGPUMP_REQUIRE_JOURNALD") != "" {
			t.Fatalf("systemd-journal-remote: %v", err)
		}
		t.Skipf("systemd-journal-remote not installed: %v", err)
	}
	dir := t.TempDir()
	var export strings.Builder
	for i := range 3 {
		fmt.Fprintf(&export, "__REALTIME_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=web-%d\n_PID=%d\n_TRANSPORT=%s\nMESSAGE=seq %d\n\n",
			1_700_000_000_000_000+i, i, 100+i, map[bool]string{true: "kernel", false: "journal"}[i != 1], i)
	}
	cmd := exec.Command(journaldtest.RemoteBinary, "-o", filepath.Join(dir, "remote.journal"), "-")
	cmd.Stdin = strings.NewReader(export.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v: %s", err, out)
	}
	o := journald.DefaultOptions()
	o.Reader = rd
	o.Files, o.Fields, o.StartAt = []string{filepath.Join(dir, "*.journal")}, []string{"_HOSTNAME"}, journald.StartBeginning
	o.RestartDelay = 50 * time.Millisecond
	r := start(t, newTracker(t, t.TempDir()), o, true)
	r.waitFor(0, 3)
	r.stop()
	r.check(0, 3)
	if len(r.first.Attrs) != 1 || r.first.Attrs[0].Key != "_HOSTNAME" || r.first.Attrs[0].Value.Str != "web-0" {
		t.Errorf("attributes %v, want only _HOSTNAME=web-0", r.first.Attrs)
	}

	// dmesg: the kernel's entries only (0 and 2).
	o.Dmesg = true
	k := start(t, newTracker(t, t.TempDir()), o, true)
	k.waitFor(2, 3)
	k.stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen[0] != 1 || k.seen[1] != 0 || k.seen[2] != 1 {
		t.Errorf("dmesg read %v, want entries 0 and 2 (the kernel's) once each", k.seen)
	}
}

// forReaders runs test with the native reader and with journalctl.
func forReaders(t *testing.T, test func(t *testing.T, rd string)) {
	for _, rd := range []string{journald.ReaderNative, journald.ReaderJournalctl} {
		t.Run(rd, func(t *testing.T) { test(t, rd) })
	}
}

// TestJournalCursorSwitchesReader: a checkpoint written while reading
// through journalctl resumes in the native reader, and the other way round:
// every entry once, no gap.
func TestJournalCursorSwitchesReader(t *testing.T) {
	for _, tc := range [][2]string{{journald.ReaderJournalctl, journald.ReaderNative}, {journald.ReaderNative, journald.ReaderJournalctl}} {
		t.Run(tc[0]+"-then-"+tc[1], func(t *testing.T) {
			j := journaldtest.Start(t)
			dir := t.TempDir()
			send(t, j, 0, 100)
			tr := newTracker(t, dir)
			r := start(t, tr, options(j, tc[0], journald.StartBeginning), true)
			r.readAll(j, 0, 100, 200)
			r.stopAndSave(tr)

			send(t, j, 200, 300)
			r2 := start(t, newTracker(t, dir), options(j, tc[1], journald.StartBeginning), true)
			r2.readAll(j, 200, 300, 400)
			if st := r2.src.Stats(); st.Gaps != 0 {
				t.Errorf("%d gaps resuming at the other reader's cursor, want 0", st.Gaps)
			}
		})
	}
}

// records reads every entry of the options' journal with SEQ set until n
// such records came, and returns each record as text: body, time,
// severity, flags, attributes sorted, and the resource's host.name.
func records(t *testing.T, o journald.Options, n int) []string {
	t.Helper()
	src, err := journald.New("journal", o, newTracker(t, t.TempDir()), &event.Resource{Attrs: []event.KeyValue{{Key: "host.name", Value: event.String("agent-host")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for b := range src.Batches(ctx) {
		for _, rec := range b.Records {
			if _, ok := event.Lookup(rec.Attrs, "SEQ"); !ok {
				continue
			}
			var attrs []string
			for _, kv := range rec.Attrs {
				attrs = append(attrs, fmt.Sprintf("%s=%#v", kv.Key, kv.Value))
			}
			slices.Sort(attrs)
			res := b.Resource
			if rec.Resource != nil {
				res = rec.Resource
			}
			host, _ := event.Lookup(res.Attrs, "host.name")
			out = append(out, fmt.Sprintf("body=%#v time=%d sev=%v %q flags=%v host=%s attrs=%v", rec.Body, rec.Time, rec.Severity, rec.SeverityText, rec.Flags, host.Str, attrs))
		}
		b.Done()
		if len(out) >= n {
			cancel()
		}
	}
	if len(out) != n {
		t.Fatalf("%d records with SEQ, want %d", len(out), n)
	}
	return out
}

// TestJournalReadersYieldSameRecords: both readers make the same records
// of the same entries (one field mapping): multiline, binary and repeated
// fields, large compressed messages, and host.name from _HOSTNAME.
func TestJournalReadersYieldSameRecords(t *testing.T) {
	j := journaldtest.Start(t)
	for i := range 50 {
		fields := []string{"MESSAGE", fmt.Sprintf("seq %d\nline two", i), "SYSLOG_IDENTIFIER", "lptest", "SEQ", strconv.Itoa(i), "PRIORITY", strconv.Itoa(i % 8)}
		switch i % 5 {
		case 1:
			fields = append(fields, "TWICE", "one", "TWICE", "two")
		case 2:
			fields = append(fields, "BINARY", "bin\x01\xff\xfe")
		case 3:
			fields[1] = strings.Repeat("large message ", 5000)
		case 4:
			fields = append(fields, "THRICE", "a", "THRICE", "b", "THRICE", "c")
		}
		j.Send(t, fields...)
	}
	j.WaitFor(t, "SYSLOG_IDENTIFIER=lptest", 50)
	o := options(j, journald.ReaderJournalctl, journald.StartBeginning)
	want := records(t, o, 50)
	o.Reader = journald.ReaderNative
	got := records(t, o, 50)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\njournalctl %s\nnative     %s", i, want[i], got[i])
		}
	}
	hostname, _ := os.Hostname()
	if !strings.Contains(got[0], "host="+hostname+" ") || !strings.Contains(got[0], `_HOSTNAME=event.Value{Kind:0x`) {
		t.Errorf("record 0 %s: want host.name %s from _HOSTNAME", got[0], hostname)
	}
}

// TestJournalFileOfUnknownFormat: a journal file with an incompatible
// flag the native reader does not know is skipped with a warning naming it
// and counted; the other files are read. With reader auto the source goes
// on through journalctl (which skips that file in its own way).
func TestJournalFileOfUnknownFormat(t *testing.T) {
	if _, err := os.Stat(journaldtest.RemoteBinary); err != nil {
		t.Skipf("systemd-journal-remote not installed: %v", err)
	}
	dir := t.TempDir()
	for i, name := range []string{"good.journal", "newer.journal"} {
		export := fmt.Sprintf("__REALTIME_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\nSEQ=%d\nMESSAGE=seq %d\n\n", 1_700_000_000_000_000+i, i, i)
		cmd := exec.Command(journaldtest.RemoteBinary, "-o", filepath.Join(dir, name), "-")
		cmd.Stdin = strings.NewReader(export)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemd-journal-remote: %v: %s", err, out)
		}
	}
	path := filepath.Join(dir, "newer.journal")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[12] |= 0x80 // an incompatible flag of a future journald
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, reader, journalctl string }{
		{"native", journald.ReaderNative, "journalctl"},
		{"auto", journald.ReaderAuto, "journalctl"},
		{"auto without journalctl", journald.ReaderAuto, "/nonexistent/journalctl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			o := journald.DefaultOptions()
			o.Directory, o.StartAt, o.Reader, o.Journalctl = dir, journald.StartBeginning, tc.reader, tc.journalctl
			src, err := journald.New("journal", o, newTracker(t, t.TempDir()), &event.Resource{}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var bodies []string
			for b := range src.Batches(ctx) {
				for _, r := range b.Records {
					bodies = append(bodies, r.Body.Str)
				}
				b.Done()
				if len(bodies) > 0 {
					cancel()
				}
			}
			if !slices.Equal(bodies, []string{"seq 0"}) {
				t.Errorf("read %q, want the good file's entry only", bodies)
			}
			if !strings.Contains(logs.String(), "newer.journal") || !strings.Contains(logs.String(), "0x80") {
				t.Errorf("the log does not name the file and the flag:\n%s", logs.String())
			}
			if st := src.Stats(); st.Skipped != 1 {
				t.Errorf("skipped %d, want 1", st.Skipped)
			}
			if fell := strings.Contains(logs.String(), "reading through journalctl instead"); fell != (tc.name == "auto") {
				t.Errorf("%s: fell back to journalctl: %v", tc.name, fell)
			}
		})
	}
}

// TestNativeFiltersAsJournalctl: the native reader selects the entries
// journalctl selects with the same options: units (their own entries,
// systemd's and privileged daemons' messages about them, their coredumps;
// globs; a name without a type is a service), identifiers, priority,
// matches (alternatives within a field, all fields), dmesg.
func TestNativeFiltersAsJournalctl(t *testing.T) {
	if _, err := os.Stat(journaldtest.RemoteBinary); err != nil {
		if os.Getenv("LOGPUMP_REQUIRE_JOURNALD") != "" {
			t.Fatalf("systemd-journal-remote: %v", err)
		}
		t.Skipf("systemd-journal-remote not installed: %v", err)
	}
	entries := []string{
		"_SYSTEMD_UNIT=app.service\nPRIORITY=6\nSYSLOG_IDENTIFIER=app\n_TRANSPORT=stdout",
		"_SYSTEMD_UNIT=db.service\nPRIORITY=3\nSYSLOG_IDENTIFIER=db\n_TRANSPORT=stdout",
		"_PID=1\nUNIT=app.service\nPRIORITY=5\nSYSLOG_IDENTIFIER=systemd\n_TRANSPORT=journal",
		"_UID=0\nOBJECT_SYSTEMD_UNIT=app.service\nPRIORITY=6\nSYSLOG_IDENTIFIER=polkitd\n_TRANSPORT=journal",
		"_UID=1000\nOBJECT_SYSTEMD_UNIT=app.service\nPRIORITY=6\nSYSLOG_IDENTIFIER=user\n_TRANSPORT=journal",
		"MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1\n_UID=0\nCOREDUMP_UNIT=app.service\nPRIORITY=2\n_TRANSPORT=journal",
		"_SYSTEMD_UNIT=app-worker@1.service\nPRIORITY=4\nSYSLOG_IDENTIFIER=worker\n_TRANSPORT=stdout",
		"_SYSTEMD_UNIT=backup.timer\nPRIORITY=7\n_TRANSPORT=journal",
		"_TRANSPORT=kernel\nPRIORITY=4\nSYSLOG_IDENTIFIER=kernel",
		"_SYSTEMD_UNIT=app.service\nPRIORITY=0\nFOO=bar\n_TRANSPORT=stdout",
	}
	dir := t.TempDir()
	var export strings.Builder
	for i, e := range entries {
		fmt.Fprintf(&export, "__REALTIME_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\nSEQ=%d\nMESSAGE=seq %d\n%s\n\n", 1_700_000_000_000_000+i, i, i, e)
	}
	path := filepath.Join(dir, "filters.journal")
	cmd := exec.Command(journaldtest.RemoteBinary, "-o", path, "-")
	cmd.Stdin = strings.NewReader(export.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v: %s", err, out)
	}
	for _, tc := range []struct {
		name string
		edit func(*journald.Options)
		args []string // journalctl's for the same selection
	}{
		{"unit without type", func(o *journald.Options) { o.Units = []string{"app"} }, []string{"--unit=app"}},
		{"two units", func(o *journald.Options) { o.Units = []string{"app.service", "db.service"} }, []string{"--unit=app.service", "--unit=db.service"}},
		{"unit glob", func(o *journald.Options) { o.Units = []string{"app-*"} }, []string{"--unit=app-*"}},
		{"timer", func(o *journald.Options) { o.Units = []string{"backup.timer"} }, []string{"--unit=backup.timer"}},
		{"identifiers", func(o *journald.Options) { o.Identifiers = []string{"app", "db"} }, []string{"--identifier=app", "--identifier=db"}},
		{"priority", func(o *journald.Options) { o.Priority = "warning" }, []string{"--priority=4"}},
		{"unit and priority", func(o *journald.Options) { o.Units, o.Priority = []string{"app"}, "err" }, []string{"--unit=app", "--priority=3"}},
		{"matches", func(o *journald.Options) { o.Matches = []string{"PRIORITY=6", "PRIORITY=3", "_TRANSPORT=stdout"} }, []string{"PRIORITY=6", "PRIORITY=3", "_TRANSPORT=stdout"}},
		{"dmesg", func(o *journald.Options) { o.Dmesg = true }, []string{"_TRANSPORT=kernel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("journalctl", append([]string{"--file=" + path, "--output=cat", "--no-pager", "--quiet"}, tc.args...)...).Output()
			if err != nil {
				t.Fatalf("journalctl %v: %v", tc.args, err)
			}
			want := strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), "seq ", ""))
			if len(want) == 0 {
				t.Fatalf("journalctl %v selects nothing: a case must select something", tc.args)
			}
			o := journald.DefaultOptions()
			o.Files, o.Reader, o.StartAt = []string{path}, journald.ReaderNative, journald.StartBeginning
			tc.edit(&o)
			src, err := journald.New("journal", o, newTracker(t, t.TempDir()), &event.Resource{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			src.OnIdle(cancel) // the file is read to its end
			var got []string
			for b := range src.Batches(ctx) {
				for _, r := range b.Records {
					v, _ := event.Lookup(r.Attrs, "SEQ")
					got = append(got, v.Str)
				}
				b.Done()
			}
			if !slices.Equal(got, want) {
				t.Errorf("native reader selected %v, journalctl %v %v", got, tc.args, want)
			}
		})
	}
}

// TestNativeIdleTicksWhileUnacknowledged: the native reader, caught up,
// ticks while some of what it yielded is unacknowledged (a stage may hold
// an open event).
func TestNativeIdleTicksWhileUnacknowledged(t *testing.T) {
	j := journaldtest.Start(t)
	send(t, j, 0, 3)
	o := options(j, journald.ReaderNative, journald.StartBeginning)
	o.TickInterval = 20 * time.Millisecond
	src, err := journald.New("j", o, newTracker(t, t.TempDir()), &event.Resource{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, held, ticks := collect(t, ctx, src, 3)
	waitTicks(t, ticks, 2)
	for _, b := range held {
		b.Done()
	}
}

// TestJournalRotationWhileReading: journald archives its file and starts a
// new one while the source follows it: every entry is read once, from the
// archived file's end and from the new file.
func TestJournalRotationWhileReading(t *testing.T) { forReaders(t, testJournalRotationWhileReading) }

func testJournalRotationWhileReading(t *testing.T, rd string) {
	j := journaldtest.Start(t)
	send(t, j, 0, 200)
	tr := newTracker(t, t.TempDir())
	r := start(t, tr, options(j, rd, journald.StartBeginning), true)
	r.waitFor(0, 200)
	send(t, j, 200, 400)
	j.Rotate(t)
	send(t, j, 400, 600)
	j.Rotate(t)
	send(t, j, 600, 700)
	r.waitFor(0, 700)
	r.stop()
	r.check(0, 700)
}
