package journald_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/journald"
)

// fakeJournalctl writes a stand-in for journalctl, beside the tests against
// the real one, for what a real journal does not produce on demand: run
// without --follow it prints the lines of catchUp (after the one holding
// the cursor of --after-cursor, if given, or from the one holding the cursor
// of --cursor, as journalctl does); with --follow it prints the
// lines of follow 20 ms apart, then waits to be stopped. With fail it
// writes fail to stderr and exits 1.
func fakeJournalctl(t testing.TB, catchUp, follow, fail string) string {
	t.Helper()
	dir := t.TempDir()
	data, later := filepath.Join(dir, "entries"), filepath.Join(dir, "follow")
	if err := os.WriteFile(data, []byte(catchUp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(later, []byte(follow), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
if [ -n %q ]; then echo %q >&2; exit 1; fi
cursor=
for a in "$@"; do
	case "$a" in
	--follow)
		while IFS= read -r line; do printf '%%s\n' "$line"; sleep 0.02; done < %q
		exec sleep 3600 ;;
	--after-cursor=*) cursor="${a#--after-cursor=}"; from=0 ;;
	--cursor=*) cursor="${a#--cursor=}"; from=1 ;;
	esac
done
[ -z "$cursor" ] && exec cat %q
exec awk -v c="\"__CURSOR\":\"$cursor\"" -v from="$from" 'found { print } index($0, c) { found = 1; if (from) print }' %q
`, fail, fail, later, data, data)
	path := filepath.Join(dir, "journalctl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeSource returns a source named "j" reading from the beginning through
// fakeJournalctl(catchUp, follow, fail), with the options edit makes, and
// its tracker.
func fakeSource(t *testing.T, catchUp, follow, fail string, log *slog.Logger, edit func(*journald.Options)) (*journald.Source, *checkpoint.Tracker) {
	t.Helper()
	opts := journald.DefaultOptions()
	opts.Journalctl = fakeJournalctl(t, catchUp, follow, fail)
	opts.Reader = journald.ReaderJournalctl
	opts.StartAt = journald.StartBeginning
	if edit != nil {
		edit(&opts)
	}
	tr := newTracker(t, t.TempDir())
	src, err := journald.New("j", opts, tr, &event.Resource{}, log)
	if err != nil {
		t.Fatal(err)
	}
	return src, tr
}

// collect ranges over src until it has yielded n records, keeping the
// records' bodies and flags; it returns the batches unacknowledged.
func collect(t *testing.T, ctx context.Context, src *journald.Source, n int) ([]string, []event.Flags, []*event.Batch, chan struct{}) {
	t.Helper()
	got := make(chan struct{})
	ticks := make(chan struct{}, 100)
	var mu sync.Mutex
	var bodies []string
	var flags []event.Flags
	var held []*event.Batch
	go func() {
		for b := range src.Batches(ctx) {
			if len(b.Records) == 0 {
				select {
				case ticks <- struct{}{}:
				default:
				}
				continue
			}
			mu.Lock()
			for _, r := range b.Records {
				bodies = append(bodies, strings.Clone(r.Body.Str))
				flags = append(flags, r.Flags)
			}
			held = append(held, b)
			if len(bodies) >= n {
				select {
				case <-got:
				default:
					close(got)
				}
			}
			mu.Unlock()
		}
	}()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatalf("fewer than %d records after 10s", n)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(bodies), slices.Clone(flags), slices.Clone(held), ticks
}

// TestLongEntryIsCutAndFlagged: an entry longer than max_entry_bytes comes
// out once, cut and flagged; the entries around it are whole, and the
// checkpoint's cursor is the last entry's.
func TestLongEntryIsCutAndFlagged(t *testing.T) {
	long := `{"MESSAGE":"` + strings.Repeat("x", 3000) + `","__CURSOR":"c2"}`
	src, tr := fakeSource(t, `{"MESSAGE":"one","__CURSOR":"c1"}`+"\n"+long+"\n"+`{"MESSAGE":"three","__CURSOR":"c3"}`+"\n", "", "", nil,
		func(o *journald.Options) { o.MaxEntryBytes = 1024 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bodies, flags, held, _ := collect(t, ctx, src, 3)
	if len(bodies) != 3 || bodies[0] != "one" || bodies[1] != long[:1024] || bodies[2] != "three" {
		t.Errorf("bodies %.40q, want one, the first 1024 bytes of the long entry, three", bodies)
	}
	if want := []event.Flags{0, event.Truncated | event.ParseError, 0}; !slices.Equal(flags, want) {
		t.Errorf("flags %v, want %v", flags, want)
	}
	if st := src.Stats(); st.Truncated != 1 || st.Entries != 3 {
		t.Errorf("stats %+v, want 3 entries, 1 truncated", st)
	}
	for _, b := range held {
		b.Done()
	}
	if _, c, _ := tr.ResumeCursor(checkpoint.JournalKey("j")); c != "c3" {
		t.Errorf("cursor after the acknowledgements %q, want c3", c)
	}
}

// TestIdleTicksWhileUnacknowledged: an idle source ticks while some of
// what it yielded is unacknowledged (a stage may hold an open event), and
// stops once everything is.
func TestIdleTicksWhileUnacknowledged(t *testing.T) {
	src, _ := fakeSource(t, `{"MESSAGE":"one","__CURSOR":"c1"}`+"\n", "", "", nil,
		func(o *journald.Options) { o.TickInterval = 20 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, held, ticks := collect(t, ctx, src, 1)
	waitTicks(t, ticks, 2)
	held[0].Done()
	for len(ticks) > 0 {
		<-ticks
	}
	// At most one tick decided before the acknowledgement may still come;
	// ticks going on would be some 25 in this time.
	time.Sleep(500 * time.Millisecond)
	if n := len(ticks); n > 1 {
		t.Errorf("%d ticks in 500ms after everything was acknowledged, want at most 1", n)
	}
}

// TestTrickleIsNotHeldBack: entries coming one by one, each before the
// last would time out, are yielded every flush_timeout, not once a batch is
// full.
func TestTrickleIsNotHeldBack(t *testing.T) {
	var follow strings.Builder
	for i := range 100 {
		fmt.Fprintf(&follow, `{"MESSAGE":"m%d","__CURSOR":"c%d"}`+"\n", i, i)
	}
	src, _ := fakeSource(t, "", follow.String(), "", nil, func(o *journald.Options) { o.FlushTimeout = 100 * time.Millisecond })
	src.DisableTicks()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches, records := 0, 0
	for b := range src.Batches(ctx) {
		batches++
		records += len(b.Records)
		b.Done()
		if records >= 100 {
			break
		}
	}
	// 100 entries 20 ms apart take 2 s: some 20 batches of 100 ms. One
	// batch of 100 would mean the trickle waited for the end.
	if batches < 5 {
		t.Errorf("100 entries over 2s came in %d batches, want one per flush_timeout", batches)
	}
}

// TestJournalctlErrorIsLogged: journalctl's own message says why reading
// failed.
func TestJournalctlErrorIsLogged(t *testing.T) {
	var buf syncBuffer
	src, _ := fakeSource(t, "", "", "No journal files were found.", slog.New(slog.NewTextHandler(&buf, nil)),
		func(o *journald.Options) { o.RestartDelay = 10 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range src.Batches(ctx) {
			b.Done()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "No journal files were found.") {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the log does not say why journalctl failed:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BenchmarkSource reads 100,000 entries as journalctl prints them (from a
// stand-in that prints a file), through the line reader, the decoder and
// the checkpoint tracker, acknowledging each batch.
func BenchmarkSource(b *testing.B) {
	const n = 100_000
	var data strings.Builder
	for i := range n {
		fmt.Fprintf(&data, `{"_PID":"24137","MESSAGE":"GET /api/v1/items/%d 200 12ms","_COMM":"app","PRIORITY":"6","SYSLOG_IDENTIFIER":"app","_SYSTEMD_UNIT":"app.service","__MONOTONIC_TIMESTAMP":"10535628022","_TRANSPORT":"stdout","__REALTIME_TIMESTAMP":"1796635588558626","_BOOT_ID":"3b5085cc255f49849a3501840128c3ab","__CURSOR":"s=8462d7469e0b49a38daf041c30464d5d;i=%x;b=3b5085cc255f49849a3501840128c3ab;m=273f8ecf6;t=66207d20bff22;x=e96b30f61fb1b178"}`+"\n", i, i)
	}
	opts := journald.DefaultOptions()
	opts.Journalctl = fakeJournalctl(b, data.String(), "", "")
	opts.Reader = journald.ReaderJournalctl
	opts.StartAt = journald.StartBeginning
	b.SetBytes(int64(data.Len()))
	b.ReportAllocs()
	for b.Loop() {
		tr := checkpoint.NewTracker(checkpoint.NewStore(b.TempDir()), slog.New(slog.DiscardHandler), checkpoint.Options{})
		src, err := journald.New("j", opts, tr, &event.Resource{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		drain(src, n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}

// drain ranges over src, acknowledging each batch, until n records came;
// it returns how many did.
func drain(src *journald.Source, n int) int {
	src.DisableTicks()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := 0
	for batch := range src.Batches(ctx) {
		got += len(batch.Records)
		batch.Done()
		if got >= n {
			cancel()
		}
	}
	return got
}

// waitTicks waits for n ticks from collect's channel.
func waitTicks(t *testing.T, ticks chan struct{}, n int) {
	t.Helper()
	for range n {
		select {
		case <-ticks:
		case <-time.After(5 * time.Second):
			t.Fatal("no tick within 5s while a batch is unacknowledged")
		}
	}
}
