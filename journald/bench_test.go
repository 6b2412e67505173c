//go:build linux

package journald_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/journald"
	"github.com/logpump/logpump/journald/journaldtest"
)

// benchJournal writes n entries shaped as a service's (about 20 fields, as
// journald stores them) into journal files with systemd-journal-remote
// (which starts a new file every 64 MiB or so) and returns their glob.
func benchJournal(b *testing.B, n int) string {
	b.Helper()
	if _, err := os.Stat(journaldtest.RemoteBinary); err != nil {
		b.Skipf("systemd-journal-remote not installed: %v", err)
	}
	path := filepath.Join(b.TempDir(), "bench.journal")
	cmd := exec.Command(journaldtest.RemoteBinary, "-o", path, "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	start := time.Now().Add(-time.Hour).UnixMicro()
	for i := range n {
		fmt.Fprintf(w, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=3b5085cc255f49849a3501840128c3ab\n_MACHINE_ID=8462d7469e0b49a38daf041c30464d5d\n_HOSTNAME=web-1\n"+
			"_TRANSPORT=stdout\n_UID=1000\n_GID=1000\n_CAP_EFFECTIVE=0\n_SELINUX_CONTEXT=unconfined\n_SYSTEMD_SLICE=system.slice\n_STREAM_ID=0e2b2f0b3c5f4f3e9c1d\n"+
			"PRIORITY=6\nSYSLOG_FACILITY=3\nSYSLOG_IDENTIFIER=app\n_PID=%d\n_COMM=app\n_EXE=/usr/bin/app\n_CMDLINE=/usr/bin/app --serve\n_SYSTEMD_CGROUP=/system.slice/app.service\n"+
			"_SYSTEMD_UNIT=app.service\n_SYSTEMD_INVOCATION_ID=5f0c6f9d8a2b4c7e9e1f\nMESSAGE=GET /api/v1/items/%d 200 12ms user=%d\n\n",
			start+int64(i), 1_000_000+int64(i)*10, 24000+i%64, i, i%1000)
	}
	w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("systemd-journal-remote: %v", err)
	}
	return filepath.Join(filepath.Dir(path), "bench*.journal")
}

func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReaders reads a journal file of LOGPUMP_BENCH_ENTRIES entries
// (default 100,000) written by systemd-journal-remote through the whole
// source (reader, field mapping, batches, checkpoint tracker), with each
// reader. It reports ns/entry (wall), cpu-ns/entry (the process and
// journalctl), and the peak RSS of the process (native) or of journalctl
// (run one reader per process, -bench 'Readers/native$', to read it).
func BenchmarkReaders(b *testing.B) {
	n := 100_000
	if s := os.Getenv("LOGPUMP_BENCH_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	path := benchJournal(b, n)
	for _, rd := range []string{journald.ReaderNative, journald.ReaderJournalctl} {
		b.Run(rd, func(b *testing.B) {
			if _, err := exec.LookPath("journalctl"); err != nil && rd == journald.ReaderJournalctl {
				b.Skip("journalctl not installed")
			}
			opts := journald.DefaultOptions()
			opts.Files, opts.Reader, opts.StartAt = []string{path}, rd, journald.StartBeginning
			b.ReportAllocs()
			cpu0 := cpuTime(syscall.RUSAGE_SELF) + cpuTime(syscall.RUSAGE_CHILDREN)
			for b.Loop() {
				tr := checkpoint.NewTracker(checkpoint.NewStore(b.TempDir()), nil, checkpoint.Options{})
				src, err := journald.New("j", opts, tr, &event.Resource{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if got := drain(src, n); got != n {
					b.Fatalf("read %d entries, want %d", got, n)
				}
			}
			cpu := cpuTime(syscall.RUSAGE_SELF) + cpuTime(syscall.RUSAGE_CHILDREN) - cpu0
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/entry")
			b.ReportMetric(0, "ns/op")
			who := syscall.RUSAGE_SELF
			if rd == journald.ReaderJournalctl {
				who = syscall.RUSAGE_CHILDREN
			}
			var ru syscall.Rusage
			syscall.Getrusage(who, &ru)
			b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB")
		})
	}
}
