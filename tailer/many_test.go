package tailer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// manyFiles is how many files TestManyFiles follows: 1,000 by default,
// LOGPUMP_MANY_FILES to measure more (docs/tailer.md quotes 10,000).
func manyFiles(t *testing.T) int {
	if testing.Short() {
		t.Skip("many files: not in -short")
	}
	if s := os.Getenv("LOGPUMP_MANY_FILES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("LOGPUMP_MANY_FILES=%q: %v", s, err)
		}
		return n
	}
	return 1000
}

// TestManyFiles follows many files with max_open_files well below their
// number: every line arrives once, descriptors stay bounded, and a new file
// is picked up. It logs the figures docs/tailer.md reports (idle CPU, time
// to pick up a new file); they are measurements, not assertions.
func TestManyFiles(t *testing.T) {
	n := manyFiles(t)
	dir := testenv.TempDir(t)
	for i := range n {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%05d.log", i)), fmt.Sprintf("w=f%d seq=0\n", i))
	}
	opts := testOptions(filepath.Join(dir, "*.log"))
	opts.ScanInterval = time.Second
	opts.MaxOpenFiles = 256
	written := map[string]int{}
	for i := range n {
		written[fmt.Sprintf("f%d", i)] = 1
	}
	count := tailertest.NewCounter()
	start := time.Now()
	h := startTailer(t, opts, testenv.TempDir(t), count)
	h.waitCount(n)
	t.Logf("%d files: all first lines in %v", n, time.Since(start).Round(time.Millisecond))
	if st := h.tl.Stats(); st.OpenFiles > opts.MaxOpenFiles {
		t.Errorf("%d files open, max_open_files %d", st.OpenFiles, opts.MaxOpenFiles)
	}

	// Idle: nothing written.
	time.Sleep(time.Second)
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(3 * time.Second)
	idle := float64(cpuTime()-cpu0) / float64(time.Since(wall0)) * 100
	t.Logf("%d idle files: %.2f%% of one CPU (scan every %v)", n, idle, opts.ScanInterval)

	// New files among them.
	var worst time.Duration
	for i := range 5 {
		name := fmt.Sprintf("new%d", i)
		begin := time.Now()
		writeFile(t, filepath.Join(dir, name+".log"), "w="+name+" seq=0\n")
		written[name] = 1
		h.waitCount(n + i + 1)
		worst = max(worst, time.Since(begin))
	}
	t.Logf("%d files: new file picked up within %v (worst of 5)", n, worst.Round(time.Millisecond))

	// Lines appended to files that were closed for max_open_files.
	for i := 0; i < n; i += n / 10 {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("f%05d.log", i)), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "w=f%d seq=1\n", i)
		f.Close()
		written[fmt.Sprintf("f%d", i)] = 2
	}
	h.waitCount(n + 5 + 10)
	st := h.tl.Stats()
	h.stop()
	expect(t, count, written, 0)
	if st.OpenFiles > opts.MaxOpenFiles {
		t.Errorf("%d files open, max_open_files %d", st.OpenFiles, opts.MaxOpenFiles)
	}
}

// Fairness: one file with much to read does not starve the others: each
// turn reads at most one batch from one file, so every small file is read
// within the first round while the big one has given one batch.
func TestFairness(t *testing.T) {
	dir := testenv.TempDir(t)
	big := newWriter(t, filepath.Join(dir, "a-big.log"), "big")
	mustWrite(t, big, 20000)
	const small = 200
	for i := range small {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("s%03d.log", i)), fmt.Sprintf("w=s%d seq=0\n", i))
	}
	opts := testOptions(filepath.Join(dir, "*.log"))
	tracker := checkpoint.NewTracker(checkpoint.NewStore(testenv.TempDir(t)), testLogger(t), checkpoint.Options{})
	tl, err := New("app", opts, tracker, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bigLines, smallSeen := 0, 0
	bigAtLastSmall := -1
	for b := range tl.Batches(ctx) {
		for _, r := range b.Records {
			stream, _, _ := tailertest.Parse(r.Body.Str)
			if stream == "big" {
				bigLines++
			} else {
				smallSeen++
				if smallSeen == small {
					bigAtLastSmall = bigLines
				}
			}
		}
		b.Done()
		if bigLines == 20000 && smallSeen == small {
			break
		}
	}
	// The big file is first in scan order; one round gives it one batch.
	if bigAtLastSmall < 0 || bigAtLastSmall > 2*opts.MaxBatchRecords {
		t.Errorf("the last small file was read after %d lines of the big one; want at most %d", bigAtLastSmall, 2*opts.MaxBatchRecords)
	}
}
