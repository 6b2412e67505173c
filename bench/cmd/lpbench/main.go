// Command lpbench runs logpump and the OpenTelemetry Collector's filelog
// receiver end to end against the same generated log files and the same
// OTLP sink on 127.0.0.1, and reports throughput, CPU per million lines,
// peak RSS and delivery (every sequence number counted) as medians over
// repetitions, with the ratio logpump/Collector per scenario.
//
// Usually started by bench/run.sh, which builds the binaries. Subcommands:
//
//	lpbench run [flags]                    run the scenarios, print and save the tables
//	lpbench gen -format F -n N -o FILE     write N lines of a format
//	lpbench sink -n N                      serve the counting OTLP sink until interrupted
//
// Every flag of run has an environment variable (in brackets in -help).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/logpump/logpump/bench/sink"
	"github.com/logpump/logpump/bench/workload"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	if os.Getenv("GOGC") == "" {
		// The sink runs in this process: collecting less often keeps its
		// share of the machine small (a few MiB more heap).
		debug.SetGCPercent(400)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "gen":
		err = genCmd(os.Args[2:])
	case "sink":
		err = sinkCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lpbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: lpbench run|gen|sink [flags]  (-help for flags)")
	os.Exit(2)
}

// config holds every knob of a run.
type config struct {
	N           uint64
	Reps        int
	Scenarios   []string
	Agents      []string
	Protocol    string
	Batch       int
	Settle      time.Duration
	Stall       time.Duration
	Timeout     time.Duration
	IdleFor     time.Duration
	Warmup      time.Duration
	IdleFiles   int
	IdleRate    int
	QuietFiles  int
	QuietLines  int
	RSSBig      int64
	RSSSmall    int64
	DataDir     string
	OutDir      string
	Logpump     string
	Otelcol     string
	LogpumpJSON string
	LogpumpCRI  string
	// LogpumpInFlight is logpump's checkpoints.max_in_flight.
	LogpumpInFlight string
	// LogpumpExporterExtra is one more line of YAML for logpump's exporter,
	// e.g. "queue: {size: 8}"; LogpumpSourceExtra one for its source, e.g.
	// "write_window: 500ms".
	LogpumpExporterExtra string
	LogpumpSourceExtra   string
	// JournalDir holds the journal files of the journald scenario (written
	// by bench/journald.sh); JournalPriority is both agents' priority
	// selection there; Reader is logpump's journald reader option (empty:
	// the option is not written).
	JournalDir      string
	JournalPriority string
	Reader          string
}

// envDefault returns $name, or def when it is unset or empty.
func envDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var c config
	var scenarios, agents, rssBig, rssSmall string
	str := func(p *string, name, env, def, help string) {
		fs.StringVar(p, name, envDefault(env, def), help+" ["+env+"]")
	}
	var n, reps, batch, idleFiles, idleRate, quietFiles, quietLines string
	var settle, stall, timeout, idleFor, warmup string
	str(&n, "n", "N", "2000000", "lines per throughput run")
	str(&reps, "reps", "REPS", "3", "repetitions; every scenario runs every agent once per repetition")
	str(&scenarios, "scenarios", "SCENARIOS", "plain json cri gzip zstd trickle quiet",
		"scenarios: plain json cri, gzip zstd (plain lines compressed), trickle quiet (idle); on demand: json-gzip json-zstd, rss, plain3 (logpump to three endpoints of the sink), journald (N entries of JOURNAL_DIR: bench/journald.sh)")
	str(&agents, "agents", "AGENTS", "logpump otelcol", "agents to run")
	str(&c.Protocol, "protocol", "PROTOCOL", "grpc", "OTLP transport for both agents: grpc or http")
	str(&batch, "batch", "BATCH", "1000", "records per export request, both agents")
	str(&settle, "settle", "SETTLE", "2s", "wait after the last line for duplicates")
	str(&stall, "stall", "STALL", "30s", "give up after no new record for this long")
	str(&timeout, "timeout", "TIMEOUT", "10m", "give up on a run after this long")
	str(&idleFor, "idle-for", "IDLE_SECONDS", "30s", "measuring window of the idle scenarios")
	str(&warmup, "warmup", "WARMUP", "5s", "wait before an idle window")
	str(&idleFiles, "idle-files", "IDLE_FILES", "100", "files written to in the trickle scenario")
	str(&idleRate, "idle-rate", "IDLE_RATE", "1000", "lines per second in total in the trickle scenario")
	str(&quietFiles, "quiet-files", "QUIET_FILES", "1000", "files in the quiet scenario")
	str(&quietLines, "quiet-lines", "QUIET_LINES", "10", "lines in each quiet file, read before the window")
	str(&rssBig, "rss-big", "RSS_BIG", "1GiB", "large file of the rss scenario")
	str(&rssSmall, "rss-small", "RSS_SMALL", "16MiB", "small file of the rss scenario")
	str(&c.DataDir, "data", "DATA_DIR", "/tmp/logpump-bench/data", "generated input files, reused between runs")
	str(&c.OutDir, "out", "OUT_DIR", "", "results directory (default bench/results/<time>)")
	str(&c.Logpump, "logpump", "LOGPUMP", "bench/.build/logpump", "logpump binary")
	str(&c.Otelcol, "otelcol", "OTELCOL", "bench/.build/otelcol-peer", "Collector binary")
	str(&c.LogpumpJSON, "logpump-json", "LOGPUMP_JSON", "json", "logpump processor type for JSON lines")
	str(&c.LogpumpCRI, "logpump-cri", "LOGPUMP_CRI", "cri", "logpump processor type for CRI lines")
	str(&c.LogpumpInFlight, "logpump-in-flight", "LOGPUMP_MAX_IN_FLIGHT", "16MiB", "logpump checkpoints.max_in_flight")
	str(&c.LogpumpExporterExtra, "logpump-exporter-extra", "LOGPUMP_EXPORTER_EXTRA", "", `extra YAML line for logpump's exporter, e.g. "queue: {size: 8}"`)
	str(&c.LogpumpSourceExtra, "logpump-source-extra", "LOGPUMP_SOURCE_EXTRA", "", `extra YAML line for logpump's source, e.g. "write_window: 500ms"`)
	str(&c.JournalDir, "journal-dir", "JOURNAL_DIR", "", "journald scenario: directory of journal files holding entries 0..N-1 (bench/journald.sh writes it)")
	str(&c.JournalPriority, "journal-priority", "JOURNAL_PRIORITY", "info", "journald scenario: both agents read entries of this priority or more severe (the Collector's default)")
	str(&c.Reader, "reader", "READER", "", "journald scenario: logpump's journald reader option (native, journalctl, auto); empty: not set")
	fs.Parse(args)

	var err error
	parse := func(s, name string, p any) {
		if err == nil {
			if _, e := fmt.Sscan(s, p); e != nil {
				err = fmt.Errorf("%s: %q is not a number", name, s)
			}
		}
	}
	parse(n, "N", &c.N)
	parse(reps, "REPS", &c.Reps)
	parse(batch, "BATCH", &c.Batch)
	parse(idleFiles, "IDLE_FILES", &c.IdleFiles)
	parse(idleRate, "IDLE_RATE", &c.IdleRate)
	parse(quietFiles, "QUIET_FILES", &c.QuietFiles)
	parse(quietLines, "QUIET_LINES", &c.QuietLines)
	dur := func(s, name string, p *time.Duration) {
		if err == nil {
			if !strings.ContainsAny(s, "smh") {
				s += "s"
			}
			if *p, err = time.ParseDuration(s); err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	dur(settle, "SETTLE", &c.Settle)
	dur(stall, "STALL", &c.Stall)
	dur(timeout, "TIMEOUT", &c.Timeout)
	dur(idleFor, "IDLE_SECONDS", &c.IdleFor)
	dur(warmup, "WARMUP", &c.Warmup)
	if err == nil {
		c.RSSBig, err = parseSize(rssBig)
	}
	if err == nil {
		c.RSSSmall, err = parseSize(rssSmall)
	}
	if err != nil {
		return err
	}
	c.Scenarios = strings.Fields(scenarios)
	c.Agents = strings.Fields(agents)
	if c.OutDir == "" {
		c.OutDir = "bench/results/" + time.Now().Format("20060102-150405")
	}
	if c.Protocol != "grpc" && c.Protocol != "http" {
		return fmt.Errorf("PROTOCOL %q: want grpc or http", c.Protocol)
	}

	if path := os.Getenv("HARNESS_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := newHarness(c)
	if err != nil {
		return err
	}
	return h.run(ctx)
}

// parseSize reads "1GiB", "16MiB", "500MB", "4096".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var v float64
			if _, err := fmt.Sscan(num, &v); err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, fmt.Errorf("size %q: want e.g. 1GiB, 16MiB or bytes", s)
	}
	return v, nil
}

func genCmd(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	format := fs.String("format", "plain", "plain, json, cri, or journal (journal export format: -o - pipes it to systemd-journal-remote)")
	n := fs.Uint64("n", 1000, "lines")
	first := fs.Uint64("first", 0, "first sequence number")
	out := fs.String("o", "", "output file, - for standard output (journal only)")
	bootID := fs.String("boot-id", "", "journal: _BOOT_ID of the entries (default: this boot's)")
	machineID := fs.String("machine-id", "", "journal: _MACHINE_ID of the entries (default: /etc/machine-id, else a constant)")
	fs.Parse(args)
	if *format == "journal" {
		return genJournal(*out, *first, *n, *bootID, *machineID)
	}
	f, err := workload.ParseFormat(*format)
	if err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("gen: -o FILE is required")
	}
	start := time.Now()
	size, err := workload.WriteFile(*out, f, *first, *n)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d %s lines, %d bytes (%.1f B/line) in %.2fs\n", *out, *n, f, size,
		float64(size)/float64(*n), time.Since(start).Seconds())
	return nil
}

// genJournal writes entries first..first+n-1 in journal export format.
// Their _BOOT_ID is this boot's unless given: journalctl --follow reads the
// current boot only, and with --directory the latest boot of the files.
func genJournal(out string, first, n uint64, bootID, machineID string) error {
	if bootID == "" {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			return fmt.Errorf("gen: -boot-id not given: %w", err)
		}
		bootID = strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	}
	if machineID == "" {
		machineID = "5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e"
		if b, err := os.ReadFile("/etc/machine-id"); err == nil && len(strings.TrimSpace(string(b))) == 32 {
			machineID = strings.TrimSpace(string(b))
		}
	}
	w := os.Stdout
	if out != "-" {
		if out == "" {
			return fmt.Errorf("gen: -o FILE or -o - is required")
		}
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		w = f
	}
	start := time.Now()
	size, err := workload.WriteJournalExport(w, first, n, bootID, machineID)
	if out != "-" {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d journal entries in export format, %d bytes (%.1f B/entry) in %.2fs\n", n, size,
		float64(size)/float64(n), time.Since(start).Seconds())
	return nil
}

func sinkCmd(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	n := fs.Uint64("n", 2000000, "expected sequence numbers 0..n-1")
	fs.Parse(args)
	s := sink.New(*n)
	if err := s.Start(); err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("OTLP/gRPC %s  OTLP/HTTP http://%s/v1/logs\n", s.GRPCAddr(), s.HTTPAddr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c := s.Counts()
			fmt.Printf("final: %+v\n", c)
			return nil
		case <-tick.C:
			c := s.Counts()
			fmt.Printf("records %d unique %d/%d dup %d noseq %d\n", c.Records, c.Unique, *n, c.Duplicates, c.NoSeq)
		}
	}
}
