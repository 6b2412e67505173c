package tailer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// TestIdleCPU measures the CPU the tailer uses while following many files
// that are quiet or receive a steady trickle of lines. It is a measurement,
// not an assertion, and runs only when asked:
//
//	LOGPUMP_IDLE=files[,seconds[,lines/s]] go test ./tailer -run IdleCPU -v
//
// e.g. LOGPUMP_IDLE=1000,30 (1,000 quiet files for 30 s) or
// LOGPUMP_IDLE=100,30,1000 (100 files receiving 1,000 lines/s in total).
// The lines are written by a child process (this test binary again), so the
// CPU measured (getrusage of this process) is the tailer's and the counting
// consumer's only. LOGPUMP_IDLE_PROFILE=path writes a CPU profile of the
// measured window, LOGPUMP_IDLE_TRACE=path an execution trace. Defaults are used except start_at: beginning.
func TestIdleCPU(t *testing.T) {
	spec := os.Getenv("LOGPUMP_IDLE")
	if spec == "" {
		t.Skip("set LOGPUMP_IDLE=files[,seconds[,lines/s]] to measure")
	}
	n, seconds, rate := parseIdleSpec(t, spec)
	dir := testenv.TempDir(t)
	written := map[string]int{}
	for i := range n {
		name := fmt.Sprintf("f%d", i)
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%05d.log", i)), "w="+name+" seq=0\n")
		written[name] = 1
	}
	opts := DefaultOptions()
	opts.Include = []string{filepath.Join(dir, "*.log")}
	opts.StartAt = StartBeginning
	count := tailertest.NewCounter()
	h := startTailer(t, opts, testenv.TempDir(t), count)
	h.waitCount(n)
	time.Sleep(2 * time.Second) // settle: the first scans, GC

	var child *exec.Cmd
	if rate > 0 {
		child = exec.Command(os.Args[0], "-test.run=^TestIdleWriterChild$")
		child.Env = append(os.Environ(), fmt.Sprintf("LOGPUMP_IDLE_CHILD=%s,%d,%d,%d", dir, n, rate, seconds))
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if p := os.Getenv("LOGPUMP_IDLE_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if p := os.Getenv("LOGPUMP_IDLE_TRACE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer trace.Stop()
	}
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(time.Duration(seconds) * time.Second)
	cpu := float64(cpuTime()-cpu0) / float64(time.Since(wall0)) * 100
	if child != nil {
		if err := child.Wait(); err != nil {
			t.Fatalf("writer: %v", err)
		}
		total := rate * seconds
		for i := range n {
			written[fmt.Sprintf("f%d", i)] += total/n + btoi(i < total%n)
		}
		h.waitCount(n + total)
	}
	st := h.tl.Stats()
	h.stop()
	expect(t, count, written, 0)
	t.Logf("%d files, %d lines/s: %.3f%% of one CPU over %ds (watched dirs %d, open %d)",
		n, rate, cpu, seconds, st.WatchedDirs, st.OpenFiles)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func parseIdleSpec(t *testing.T, spec string) (files, seconds, rate int) {
	parts := strings.Split(spec, ",")
	nums := []int{0, 30, 0}
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || i >= len(nums) {
			t.Fatalf("LOGPUMP_IDLE=%q: want files[,seconds[,lines/s]]", spec)
		}
		nums[i] = v
	}
	return nums[0], nums[1], nums[2]
}

// TestIdleWriterChild is the writer process of TestIdleCPU: it appends
// rate lines per second, spread evenly over the files in turn, for the
// given seconds, one write per line (an application logging unbuffered).
func TestIdleWriterChild(t *testing.T) {
	spec := os.Getenv("LOGPUMP_IDLE_CHILD")
	if spec == "" {
		t.Skip("the writer of TestIdleCPU")
	}
	var dir string
	var n, rate, seconds int
	if _, err := fmt.Sscanf(strings.ReplaceAll(spec, ",", " "), "%s %d %d %d", &dir, &n, &rate, &seconds); err != nil {
		t.Fatal(err)
	}
	ws := make([]*tailertest.Writer, n)
	for i := range n {
		w, err := tailertest.NewWriter(filepath.Join(dir, fmt.Sprintf("f%05d.log", i)), fmt.Sprintf("f%d", i), 60)
		if err != nil {
			t.Fatal(err)
		}
		w.Skip(1) // continue after the line each file already holds
		ws[i] = w
	}
	total := rate * seconds
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for k := range total {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		mustWrite(t, ws[k%n], 1)
	}
	for _, w := range ws {
		w.Close()
	}
}

// TestRSSPerFile measures the resident memory a followed open file costs:
// VmRSS with n files followed (every one open, read to its end) minus VmRSS
// before the tailer started, over n. A measurement, run only when asked:
//
//	LOGPUMP_RSS_FILES=1000 go test ./tailer -run RSSPerFile -v
func TestRSSPerFile(t *testing.T) {
	s := os.Getenv("LOGPUMP_RSS_FILES")
	if s == "" {
		t.Skip("set LOGPUMP_RSS_FILES=n to measure")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := testenv.TempDir(t)
	for i := range n {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%05d.log", i)), fmt.Sprintf("w=f%d seq=0\n", i))
	}
	opts := DefaultOptions()
	opts.Include = []string{filepath.Join(dir, "*.log")}
	opts.StartAt = StartBeginning
	opts.MaxOpenFiles = n + 10
	before := settledRSS(t)
	count := tailertest.NewCounter()
	h := startTailer(t, opts, testenv.TempDir(t), count)
	h.waitCount(n)
	time.Sleep(2 * time.Second) // a few scans: listings cached, maps grown
	after := settledRSS(t)
	st := h.tl.Stats()
	h.stop()
	t.Logf("%d open files: VmRSS %d KiB before, %d KiB after: %.1f KiB per file (open %d)",
		n, before>>10, after>>10, float64(after-before)/1024/float64(n), st.OpenFiles)
}

// settledRSS returns VmRSS in bytes after a garbage collection that returns
// freed memory to the system.
func settledRSS(t *testing.T) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
