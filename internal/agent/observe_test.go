package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/internal/selfmetrics"
	"github.com/logpump/logpump/tailer"
)

func TestSourceState(t *testing.T) {
	tests := []struct {
		name string
		ts   tailer.Stats
		want selfmetrics.SourceState
	}{
		{
			name: "idle",
			ts:   tailer.Stats{LostBytes: map[string]uint64{tailer.LostNotFound: 0, tailer.LostTruncated: 0, tailer.LostClosed: 0}},
			want: selfmetrics.SourceState{Name: "app", LostBytes: map[string]uint64{"not_found": 0, "truncated": 0, "closed": 0}},
		},
		{
			name: "behind, with losses",
			ts: tailer.Stats{
				Files: []tailer.FileStats{
					{Path: "/var/log/app/a.log", Lag: 100, Behind: 300},
					{Path: "/var/log/app/a.log", Lag: 20, Behind: 20, Draining: true},
				},
				OpenFiles: 1, Draining: 1,
				LostBytes: map[string]uint64{tailer.LostNotFound: 4096, tailer.LostTruncated: 7, tailer.LostClosed: 1},
				LostFiles: 3, Recovered: 2, ForcedCloses: 5, EagerRuns: 9,
				BehindBytes: 320, BehindSeconds: 41.5, Oldest: "/var/log/app/a.log",
			},
			want: selfmetrics.SourceState{
				Name: "app", OpenFiles: 2, LagBytes: 120, BehindBytes: 320, BehindSeconds: 41.5,
				LostBytes: map[string]uint64{"not_found": 4096, "truncated": 7, "closed": 1},
				LostFiles: 3, RecoveredFiles: 2, ForcedCloses: 5,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, sourceState("app", tt.ts)); diff != "" {
				t.Errorf("sourceState (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLossReasonsAreTheTailers: the reasons the metrics always report are
// the tailer's, so that none of them starts its series late.
func TestLossReasonsAreTheTailers(t *testing.T) {
	got := slices.Sorted(slices.Values(selfmetrics.LossReasons()))
	want := slices.Sorted(slices.Values([]string{tailer.LostNotFound, tailer.LostTruncated, tailer.LostClosed}))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loss reasons (-tailer +metrics):\n%s", diff)
	}
}

func TestAtRisk(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	live := func(path string, behind int64, since time.Time) tailer.FileStats {
		return tailer.FileStats{Path: path, Behind: behind, BehindSince: since}
	}
	draining := func(path string, behind int64, since time.Time) tailer.FileStats {
		f := live(path, behind, since)
		f.Draining = true
		return f
	}
	tests := []struct {
		name  string
		s     tailer.Stats
		paths bool
		want  string
	}{
		{name: "no files", s: tailer.Stats{}, paths: true, want: ""},
		{name: "caught up, a draining file read and acknowledged",
			s:     tailer.Stats{Files: []tailer.FileStats{draining("/l/a.log", 0, time.Time{}), live("/l/a.log", 0, time.Time{})}},
			paths: true, want: ""},
		{name: "behind in the live file only",
			s:     tailer.Stats{Files: []tailer.FileStats{live("/l/a.log", 5000, t0)}, BehindBytes: 5000, BehindSeconds: 3},
			paths: true, want: ""},
		{name: "a draining file behind, but the oldest byte is in a live one",
			s: tailer.Stats{Files: []tailer.FileStats{
				draining("/l/a.log", 10, t0.Add(time.Second)), live("/l/b.log", 10, t0),
			}, BehindBytes: 20, BehindSeconds: 9},
			paths: true, want: ""},
		{name: "oldest in a rotated file",
			s: tailer.Stats{Files: []tailer.FileStats{
				draining("/var/log/app/a.log", 12<<20, t0), live("/var/log/app/a.log", 300<<10, t0.Add(30*time.Second)),
				live("/var/log/app/b.log", 0, time.Time{}),
			}, BehindBytes: 12<<20 + 300<<10, BehindSeconds: 41.4, Oldest: "/var/log/app/a.log"},
			paths: true,
			want:  "at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in rotated file /var/log/app/a.log"},
		{name: "oldest in a rotated file, no paths",
			s: tailer.Stats{Files: []tailer.FileStats{
				draining("/var/log/app/a.log", 12<<20, t0), live("/var/log/app/a.log", 300<<10, t0.Add(30*time.Second)),
			}, BehindBytes: 12<<20 + 300<<10, BehindSeconds: 41.4},
			paths: false,
			want:  "at risk: source app: 12.3 MiB not acknowledged for 41s, the oldest in a rotated file"},
		{name: "a tie goes to the draining file",
			s: tailer.Stats{Files: []tailer.FileStats{
				live("/l/a.log", 100, t0), draining("/l/a.log.1", 1500, t0),
			}, BehindBytes: 1600, BehindSeconds: 125},
			paths: true, want: "at risk: source app: 1.6 KiB not acknowledged for 2m5s, the oldest in rotated file /l/a.log.1"},
		{name: "small and recent",
			s:     tailer.Stats{Files: []tailer.FileStats{draining("/l/x", 512, t0)}, BehindBytes: 512, BehindSeconds: 0.2},
			paths: true, want: "at risk: source app: 512 B not acknowledged for 0s, the oldest in rotated file /l/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := atRisk("app", tt.s, tt.paths); got != tt.want {
				t.Errorf("atRisk:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{1<<20 - 1, "1.0 MiB"}, {12_900_000, "12.3 MiB"}, {5 << 30, "5.0 GiB"}, {3 << 40, "3.0 TiB"},
	}
	for _, tt := range tests {
		if got := byteSize(tt.n); got != tt.want {
			t.Errorf("byteSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestWarningsNameARotatedFileNotAcknowledged runs the agent against a
// destination that never answers: once the file is renamed out of the
// patterns, its bytes are the oldest not acknowledged and /readyz's
// warnings name it, while Ready stays as it was.
func TestWarningsNameARotatedFileNotAcknowledged(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "a.log")
	os.MkdirAll(filepath.Dir(log), 0o755)
	text := strings.Replace(configText(dir, `exporters:
  down:
    type: otlp_grpc
    endpoint: 127.0.0.1:1
    tls: {insecure: true}
    batch: {timeout: 20ms}
pipelines:
  main: {sources: [app], exporters: [down]}
`), "shutdown_timeout: 5s", "shutdown_timeout: 300ms", 1)
	text = strings.Replace(text, "    scan_interval: 100ms\n", "    scan_interval: 100ms\n    rotate_wait: 1h\n", 1)
	h := startWith(t, dir, text, Env{})
	defer func() {
		h.stop()
		<-h.done // the unreachable exporter ends the drain at shutdown_timeout
	}()
	waitFor(t, "the pipeline to run", func() bool { return h.a.Ready() == nil })
	stats := func() tailer.Stats {
		h.a.mu.Lock()
		ln := h.a.lanes[0]
		h.a.mu.Unlock()
		return ln.tailer.Stats()
	}
	if got, want := slices.Sorted(func(yield func(string) bool) {
		for k := range stats().LostBytes {
			if !yield(k) {
				return
			}
		}
	}), slices.Sorted(slices.Values(selfmetrics.LossReasons())); !slices.Equal(got, want) {
		t.Errorf("tailer's loss reasons %v, metrics always report %v", got, want)
	}

	appendLines(t, log, 0, 100)
	waitFor(t, "the lines read, not acknowledged", func() bool {
		s := stats()
		return len(s.Files) == 1 && s.Files[0].Lag == 0 && s.Files[0].Behind > 0
	})
	if w := h.a.Warnings(true); len(w) != 0 {
		t.Errorf("Warnings before rotation = %q, want none (the live file is not at risk)", w)
	}
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log, 100, 110)
	waitFor(t, "the renamed file draining", func() bool {
		return slices.ContainsFunc(stats().Files, func(f tailer.FileStats) bool { return f.Draining })
	})
	want := regexp.MustCompile(`^at risk: source app: [0-9.]+ (B|KiB) not acknowledged for [0-9]+s, the oldest in rotated file ` +
		regexp.QuoteMeta(log) + `$`)
	if got := h.a.Warnings(true); len(got) != 1 || !want.MatchString(got[0]) {
		t.Errorf("Warnings(true) = %q, want one line matching %s", got, want)
	}
	if got := h.a.Warnings(false); len(got) != 1 || strings.Contains(got[0], dir) {
		t.Errorf("Warnings(false) = %q, want one line without the path", got)
	}
	if err := h.a.Ready(); err != nil && strings.Contains(err.Error(), "at risk") {
		t.Errorf("Ready = %v: being at risk must not make the agent unready", err)
	}
}

// /readyz lists a source's unreadable files, naming one to loopback
// clients only.
func TestUnreadableWarning(t *testing.T) {
	st := tailer.Stats{Unreadable: []tailer.UnreadableFile{
		{Path: "/var/log/secure", Err: "open /var/log/secure: permission denied"}, {Path: "/var/log/z.log", Err: "x"},
	}}
	tests := []struct {
		stats tailer.Stats
		paths bool
		want  string
	}{
		{tailer.Stats{}, true, ""},
		{st, false, "unreadable: source app: 2 matched file(s) cannot be opened"},
		{st, true, "unreadable: source app: 2 matched file(s) cannot be opened, e.g. /var/log/secure: open /var/log/secure: permission denied"},
	}
	for _, tt := range tests {
		if got := unreadable("app", tt.stats, tt.paths); got != tt.want {
			t.Errorf("unreadable(paths=%v) = %q, want %q", tt.paths, got, tt.want)
		}
	}
}
