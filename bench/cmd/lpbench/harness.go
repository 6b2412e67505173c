package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/logpump/logpump/bench/proc"
	"github.com/logpump/logpump/bench/sink"
	"github.com/logpump/logpump/bench/workload"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// scenario is one row group of the report.
type scenario struct {
	Name        string
	Kind        string // throughput, trickle, quiet, rss
	Format      workload.Format
	Compression string
	// Endpoints > 1: logpump sends to that many endpoints of the same
	// sink (the Collector to one, as in plain).
	Endpoints int
}

var scenarios = map[string]scenario{
	"plain":   {Name: "plain", Kind: "throughput", Format: workload.Plain, Compression: "none"},
	"json":    {Name: "json", Kind: "throughput", Format: workload.JSON, Compression: "none"},
	"cri":     {Name: "cri", Kind: "throughput", Format: workload.CRI, Compression: "none"},
	"gzip":    {Name: "gzip", Kind: "throughput", Format: workload.Plain, Compression: "gzip"},
	"zstd":    {Name: "zstd", Kind: "throughput", Format: workload.Plain, Compression: "zstd"},
	"trickle": {Name: "trickle", Kind: "trickle", Format: workload.Plain, Compression: "none"},
	"quiet":   {Name: "quiet", Kind: "quiet", Format: workload.Plain, Compression: "none"},
	"rss":     {Name: "rss", Kind: "rss", Format: workload.Plain, Compression: "none"},
	// plain over three endpoints: the cost of balancing.
	"plain3": {Name: "plain3", Kind: "throughput", Format: workload.Plain, Compression: "none", Endpoints: 3},

	// The json file compressed, on demand (the agents' default settings
	// compress with gzip).
	"json-gzip": {Name: "json-gzip", Kind: "throughput", Format: workload.JSON, Compression: "gzip"},
	"json-zstd": {Name: "json-zstd", Kind: "throughput", Format: workload.JSON, Compression: "zstd"},

	// N journal entries of JOURNAL_DIR, on demand (bench/journald.sh).
	"journald": {Name: "journald", Kind: "journald", Compression: "none"},
}

// result is one run of one agent in one scenario: a row of results.tsv.
type result struct {
	Scenario, Agent string
	Rep             int
	Variant         string // rss: "small" or "big"
	Status          string // ok, lost, dup, stalled, exited, timeout, error
	Detail          string
	Expected        uint64
	Counts          sink.Counts
	Wall            time.Duration // start to last record counted (throughput, rss)
	User, Sys       time.Duration // agent CPU at that moment, or over the idle window
	ChildCPU        time.Duration // journald: the part of User+Sys spent in the agent's children (journalctl)
	Window          time.Duration // idle: length of the measuring window
	RSS, PeakRSS    int64         // journald: summed over the agent and its children, PeakRSS the largest sample
	PeakAnon        int64         // largest RssAnon seen while waiting (sampled every 20 ms)
	Memory          []memSample   // resident memory every 100 ms while waiting: memory.tsv
	HarnessCPU      time.Duration // sink (and, for trickle, writer) CPU in this process
	Drain           time.Duration // trickle: writer stop to last record; quiet: start to last record
	FileBytes       int64
	ExitCPU         time.Duration // agent CPU at exit, shutdown included
	Started         time.Time     // when the agent was started
	Idle            time.Duration // time between first and last record with none arriving
	Shutdown        time.Duration // SIGTERM to exit
}

// memSample is the agent's resident memory at one moment of a run.
type memSample struct {
	At        time.Duration // since the wait began
	RSS, Anon int64         // VmRSS and RssAnon, bytes
}

func (r result) ok() bool { return r.Status == "ok" }

// paused reports a throughput run in which no records arrived for over a
// second between two requests.
func (r result) paused() bool {
	return !r.Started.IsZero() && r.Counts.MaxGap > time.Second
}

// LinesPerSec is expected lines over the time to deliver them.
func (r result) LinesPerSec() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Expected) / r.Wall.Seconds()
}

// CPUPerM is agent CPU seconds per million lines.
func (r result) CPUPerM() float64 { return (r.User + r.Sys).Seconds() / (float64(r.Expected) / 1e6) }

// CPUPercent is agent CPU over the idle window, in % of one core.
func (r result) CPUPercent() float64 {
	if r.Window <= 0 {
		return 0
	}
	return 100 * (r.User + r.Sys).Seconds() / r.Window.Seconds()
}

type harness struct {
	cfg     config
	results []result
	tsv     *os.File
	started time.Time
}

func newHarness(c config) (*harness, error) {
	for _, name := range c.Scenarios {
		if _, ok := scenarios[name]; !ok {
			return nil, fmt.Errorf("unknown scenario %q", name)
		}
		if scenarios[name].Kind == "journald" {
			if st, err := os.Stat(c.JournalDir); c.JournalDir == "" || err != nil || !st.IsDir() {
				return nil, fmt.Errorf("scenario journald: JOURNAL_DIR %q is not a directory of journal files (bench/journald.sh writes one)", c.JournalDir)
			}
		}
	}
	h := &harness{cfg: c}
	for _, name := range c.Agents {
		if _, err := h.agentByName(name); err != nil {
			return nil, err
		}
		bin := map[string]string{"logpump": c.Logpump, "otelcol": c.Otelcol}[name]
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("agent %s: %w", name, err)
		}
	}
	for _, d := range []string{c.DataDir, filepath.Join(c.OutDir, "runs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *harness) run(ctx context.Context) error {
	h.started = time.Now()
	var err error
	if h.tsv, err = os.Create(filepath.Join(h.cfg.OutDir, "results.tsv")); err != nil {
		return err
	}
	defer h.tsv.Close()
	fmt.Fprintln(h.tsv, tsvHeader)
	if err := h.writeMachine(); err != nil {
		return err
	}
	fmt.Printf("lpbench: N=%d REPS=%d SCENARIOS=%q AGENTS=%q PROTOCOL=%s BATCH=%d -> %s\n",
		h.cfg.N, h.cfg.Reps, strings.Join(h.cfg.Scenarios, " "), strings.Join(h.cfg.Agents, " "),
		h.cfg.Protocol, h.cfg.Batch, h.cfg.OutDir)

	for rep := 1; rep <= h.cfg.Reps; rep++ {
		for _, name := range h.cfg.Scenarios {
			sc := scenarios[name]
			agents := h.agentsFor(rep)
			for _, a := range agents {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				for _, r := range h.runOne(ctx, sc, a, rep) {
					h.record(r)
				}
			}
		}
	}
	report := h.report()
	fmt.Println()
	fmt.Print(report)
	fmt.Printf("\nlpbench: done in %s; results in %s\n", time.Since(h.started).Round(time.Second), h.cfg.OutDir)
	return os.WriteFile(filepath.Join(h.cfg.OutDir, "summary.md"), []byte(report), 0o644)
}

// agentsFor returns the agents of the run, in an order rotated every repetition
// so that neither always runs first.
func (h *harness) agentsFor(rep int) []agent {
	var out []agent
	for _, name := range h.cfg.Agents {
		a, _ := h.agentByName(name)
		out = append(out, a)
	}
	if len(out) > 1 {
		k := (rep - 1) % len(out)
		out = append(out[k:], out[:k]...)
	}
	return out
}

func (h *harness) runOne(ctx context.Context, sc scenario, a agent, rep int) []result {
	switch sc.Kind {
	case "trickle":
		return []result{h.trickle(ctx, sc, a, rep)}
	case "quiet":
		return []result{h.quiet(ctx, sc, a, rep)}
	case "rss":
		var out []result
		for _, v := range []struct {
			name string
			size int64
		}{{"small", h.cfg.RSSSmall}, {"big", h.cfg.RSSBig}} {
			lines := uint64(float64(v.size) / workload.AvgLineBytes(sc.Format, 10000))
			r := h.throughput(ctx, sc, a, rep, lines, v.name)
			out = append(out, r)
		}
		return out
	default:
		return []result{h.throughput(ctx, sc, a, rep, h.cfg.N, "")}
	}
}

func (h *harness) record(r result) {
	h.results = append(h.results, r)
	fmt.Fprintln(h.tsv, r.tsv())
	line := fmt.Sprintf("%-8s %-8s rep %d %-5s %-7s", r.Scenario, r.Agent, r.Rep, r.Variant, r.Status)
	switch scenarios[r.Scenario].Kind {
	case "trickle", "quiet":
		line += fmt.Sprintf(" cpu %5.2f%%  rss %5.1f MiB  peak %5.1f MiB  delivered %d/%d  drain %.2fs",
			r.CPUPercent(), mib(r.RSS), mib(r.PeakRSS), r.Counts.Unique, r.Expected, r.Drain.Seconds())
	default:
		line += fmt.Sprintf(" %6.2fs %9.0f lines/s  cpu %6.2fs = %5.2f s/M  peak %6.1f MiB  delivered %d/%d dup %d",
			r.Wall.Seconds(), r.LinesPerSec(), (r.User + r.Sys).Seconds(), r.CPUPerM(), mib(r.PeakRSS),
			r.Counts.Unique, r.Expected, r.Counts.Duplicates)
	}
	if r.ChildCPU > 0 {
		line += fmt.Sprintf(" (children %.2fs)", r.ChildCPU.Seconds())
	}
	if r.paused() {
		line += fmt.Sprintf("  pause of %.1fs ending %.1fs after start", r.Counts.MaxGap.Seconds(), gapAt(r))
	}
	if r.Detail != "" {
		line += "  (" + r.Detail + ")"
	}
	fmt.Println(line)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// dataFile returns a file of n lines of format f, writing it on first use.
func (h *harness) dataFile(f workload.Format, n uint64) (string, int64, error) {
	dir := filepath.Join(h.cfg.DataDir, fmt.Sprintf("%s-%d", f, n))
	path := filepath.Join(dir, "app.log")
	done := filepath.Join(h.cfg.DataDir, fmt.Sprintf("%s-%d.done", f, n))
	if st, err := os.Stat(path); err == nil {
		if _, err := os.Stat(done); err == nil {
			return path, st.Size(), nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	start := time.Now()
	size, err := workload.WriteFile(path, f, 0, n)
	if err != nil {
		return "", 0, err
	}
	fmt.Printf("generated %s: %d lines, %.1f MiB in %.2fs\n", path, n, mib(size), time.Since(start).Seconds())
	return path, size, os.WriteFile(done, nil, 0o644)
}

// warm reads path so that every agent starts with it in the page cache.
func warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// warmDir reads every file of dir, as warm does, and returns their total
// size.
func warmDir(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var size int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := warm(filepath.Join(dir, e.Name())); err != nil {
			return 0, err
		}
		size += info.Size()
	}
	return size, nil
}

// process is a started agent.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid after exited is closed
	dir    string
}

// start writes a's configuration for t and starts it, its output going to
// files in t.Dir.
func start(a agent, t target) (*process, error) {
	argv, err := a.Command(t)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(t.Dir, "command"), []byte(strings.Join(argv, " ")+"\n"), 0o644); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(t.Dir, a.Name+".log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", a.Name, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), dir: t.Dir}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to 20 s, then kills. It returns how long
// the agent took to exit and its CPU time in total.
func (p *process) stop() (time.Duration, time.Duration) {
	t0 := time.Now()
	if p.running() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	d := time.Since(t0)
	st := p.cmd.ProcessState
	if st == nil {
		return d, 0
	}
	return d, st.UserTime() + st.SystemTime()
}

// exitDetail describes an early exit with the tail of the agent's log.
func (p *process) exitDetail(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
	tail := strings.TrimSpace(string(b))
	if len(tail) > 300 {
		tail = "…" + tail[len(tail)-300:]
	}
	return fmt.Sprintf("exited: %v: %s", p.err, strings.ReplaceAll(tail, "\n", " | "))
}

// selfCPU is this process's CPU time: the sink, and the writer where there
// is one.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newRun prepares the run directory, the state directory and the sink.
func (h *harness) newRun(sc scenario, a agent, rep int, variant string, expected uint64) (target, *sink.Sink, error) {
	name := fmt.Sprintf("%s-%s-%d", sc.Name, a.Name, rep)
	if variant != "" {
		name = fmt.Sprintf("%s-%s-%s-%d", sc.Name, variant, a.Name, rep)
	}
	dir, _ := filepath.Abs(filepath.Join(h.cfg.OutDir, "runs", name))
	t := target{
		Dir: dir, StateDir: filepath.Join(dir, "state"), Format: sc.Format,
		Compression: sc.Compression, Protocol: h.cfg.Protocol, Batch: h.cfg.Batch,
	}
	if err := os.MkdirAll(t.StateDir, 0o755); err != nil {
		return t, nil, err
	}
	s := sink.New(expected)
	if err := s.Start(); err != nil {
		return t, nil, err
	}
	t.GRPCAddr, t.HTTPAddr = s.GRPCAddr(), s.HTTPAddr()
	if sc.Endpoints > 1 {
		g, h, err := s.Listen(sc.Endpoints - 1)
		if err != nil {
			s.Close()
			return t, nil, err
		}
		t.GRPCAddrs, t.HTTPAddrs = append([]string{t.GRPCAddr}, g...), append([]string{t.HTTPAddr}, h...)
	}
	return t, s, nil
}

var errStalled = errors.New("stalled")

// waitFor polls the sink until want distinct lines arrived, the agent
// exits, nothing arrives for STALL, or the run times out. Meanwhile it
// samples the agent's memory into r: PeakAnon every 20 ms, Memory every
// 100 ms. With tree set, memory is summed over the agent and its
// children, and PeakRSS is the largest such sum.
func (h *harness) waitFor(ctx context.Context, s *sink.Sink, p *process, want uint64, r *result, tree bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	began := time.Now()
	deadline := began.Add(h.cfg.Timeout)
	var last uint64
	lastChange := began
	for i := 0; ; i++ {
		var rss, anon int64
		var err error
		if tree {
			rss, _, anon, err = proc.TreeMemory(p.pid())
			r.PeakRSS = max(r.PeakRSS, rss)
		} else {
			rss, anon, err = proc.Resident(p.pid())
		}
		if err == nil {
			r.PeakAnon = max(r.PeakAnon, anon)
			if i%5 == 0 {
				r.Memory = append(r.Memory, memSample{At: time.Since(began), RSS: rss, Anon: anon})
			}
		}
		c := s.Counts()
		if c.Unique >= want {
			return nil
		}
		if c.Records != last {
			last, lastChange = c.Records, time.Now()
		}
		switch {
		case !p.running():
			return errors.New("exited")
		case time.Since(lastChange) > h.cfg.Stall:
			return errStalled
		case time.Now().After(deadline):
			return errors.New("timeout")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// finish settles, stops the agent and the sink, and fills in the delivery
// status of r.
func (h *harness) finish(r *result, s *sink.Sink, p *process, waitErr error, a agent) {
	if waitErr == nil {
		time.Sleep(h.cfg.Settle) // late duplicates
	}
	r.Shutdown, r.ExitCPU = p.stop()
	s.Close()
	writeFirstRecord(filepath.Join(p.dir, "first-record.json"), s.First())
	writeArrivals(filepath.Join(p.dir, "arrivals.tsv"), s.Arrivals())
	writeMemory(filepath.Join(p.dir, "memory.tsv"), r.Memory)
	if !r.Started.IsZero() { // throughput runs: arrivals should never stop
		r.Idle = s.Idle()
	}
	r.Counts = s.Counts()
	switch {
	case waitErr != nil && waitErr.Error() == "exited":
		r.Status, r.Detail = "exited", p.exitDetail(a.Name)
	case waitErr != nil:
		r.Status = waitErr.Error()
	case r.Counts.Duplicates > 0:
		r.Status = "dup"
	default:
		r.Status = "ok"
	}
	if r.Counts.Unique < r.Expected {
		if r.Status == "ok" || r.Status == "dup" {
			r.Status = "lost"
		}
		r.Detail = strings.TrimSpace(fmt.Sprintf("%s missing %d, first %v", r.Detail, r.Expected-r.Counts.Unique, s.Missing(5)))
	}
	if r.Counts.NoSeq > 0 {
		r.Detail = strings.TrimSpace(fmt.Sprintf("%s; %d records without seq, e.g. %s", r.Detail, r.Counts.NoSeq, firstOr(s.Samples())))
	}
	if r.Counts.OutOfRange > 0 {
		r.Detail = strings.TrimSpace(fmt.Sprintf("%s; %d records numbered beyond N", r.Detail, r.Counts.OutOfRange))
	}
}

// writeFirstRecord saves the first record the agent sent, as JSON, to
// show the shape of what each agent delivers.
func writeFirstRecord(path string, rec []byte) {
	if rec == nil {
		return
	}
	var lr logspb.LogRecord
	if err := proto.Unmarshal(rec, &lr); err != nil {
		return
	}
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(&lr)
	if err == nil {
		os.WriteFile(path, append(b, '\n'), 0o644)
	}
}

// writeArrivals saves records received per 100 ms, from the sink's start.
func writeArrivals(path string, buckets []uint64) {
	var b strings.Builder
	b.WriteString("t_s\trecords\n")
	for i, n := range buckets {
		fmt.Fprintf(&b, "%.1f\t%d\n", float64(i)*sink.Bucket.Seconds(), n)
	}
	os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeMemory saves the agent's resident memory sampled while waiting, in
// MiB: whether a peak is a plateau or a spike, and whether memory grows with
// the input (the rss scenario).
func writeMemory(path string, samples []memSample) {
	var b strings.Builder
	b.WriteString("t_s\trss_mib\tanon_mib\n")
	for _, m := range samples {
		fmt.Fprintf(&b, "%.1f\t%.2f\t%.2f\n", m.At.Seconds(), mib(m.RSS), mib(m.Anon))
	}
	os.WriteFile(path, []byte(b.String()), 0o644)
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	if len(s[0]) > 200 {
		return s[0][:200] + "…"
	}
	return s[0]
}

// throughput delivers one pre-written file of n lines (or, for journald,
// the journal of JOURNAL_DIR holding n entries) and measures the time, CPU
// and peak RSS until the last line is counted. For journald the CPU and
// memory are those of the agent and its children together: both agents
// read the journal through a journalctl they start.
func (h *harness) throughput(ctx context.Context, sc scenario, a agent, rep int, n uint64, variant string) result {
	r := result{Scenario: sc.Name, Agent: a.Name, Rep: rep, Variant: variant, Expected: n}
	tree := sc.Kind == "journald"
	var path string
	var size int64
	var err error
	if tree {
		size, err = warmDir(h.cfg.JournalDir)
	} else if path, size, err = h.dataFile(sc.Format, n); err == nil {
		err = warm(path)
	}
	r.FileBytes = size
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	t, s, err := h.newRun(sc, a, rep, variant, n)
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	if tree {
		t.Journal, t.JournalPriority, t.Reader = h.cfg.JournalDir, h.cfg.JournalPriority, h.cfg.Reader
	} else {
		t.Include = filepath.Join(filepath.Dir(path), "*.log")
	}
	cpu0 := selfCPU()
	t0 := time.Now()
	r.Started = t0
	p, err := start(a, t)
	if err != nil {
		s.Close()
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	waitErr := h.waitFor(ctx, s, p, n, &r, tree)
	if tree {
		r.User, r.Sys, r.ChildCPU, _ = proc.TreeCPU(p.pid())
		r.RSS, _, _, _ = proc.TreeMemory(p.pid())
	} else {
		r.User, r.Sys, _ = proc.CPU(p.pid())
		r.RSS, r.PeakRSS, _ = proc.Memory(p.pid())
	}
	if last := s.Counts().LastArrival; !last.IsZero() {
		r.Wall = last.Sub(t0)
	} else {
		r.Wall = time.Since(t0)
	}
	r.HarnessCPU = selfCPU() - cpu0
	h.finish(&r, s, p, waitErr, a)
	return r
}

// trickle starts the agent on IDLE_FILES empty files, waits WARMUP, then
// appends IDLE_RATE lines/s in total for IDLE_SECONDS and measures the
// agent's CPU over that window, then the time to deliver the rest.
func (h *harness) trickle(ctx context.Context, sc scenario, a agent, rep int) result {
	total := uint64(float64(h.cfg.IdleRate) * h.cfg.IdleFor.Seconds())
	r := result{Scenario: sc.Name, Agent: a.Name, Rep: rep, Expected: total}
	t, s, err := h.newRun(sc, a, rep, "", total)
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	logs := filepath.Join(t.Dir, "logs")
	var files []*os.File
	err = os.MkdirAll(logs, 0o755)
	for i := 0; err == nil && i < h.cfg.IdleFiles; i++ {
		var f *os.File
		f, err = os.OpenFile(filepath.Join(logs, fmt.Sprintf("app-%04d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		s.Close()
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	t.Include = filepath.Join(logs, "*.log")
	p, err := start(a, t)
	if err != nil {
		s.Close()
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	sleep(ctx, h.cfg.Warmup)
	u0, s0, _ := proc.CPU(p.pid())
	cpu0 := selfCPU()
	w0 := time.Now()
	written, werr := workload.Trickle(ctx, files, sc.Format, 0, h.cfg.IdleRate, h.cfg.IdleFor)
	r.Window = time.Since(w0)
	u1, s1, _ := proc.CPU(p.pid())
	r.User, r.Sys = u1-u0, s1-s0
	r.RSS, r.PeakRSS, _ = proc.Memory(p.pid())
	r.HarnessCPU = selfCPU() - cpu0
	writerDone := time.Now()
	waitErr := werr
	if waitErr == nil {
		waitErr = h.waitFor(ctx, s, p, written, &r, false)
	}
	if last := s.Counts().LastArrival; !last.IsZero() && last.After(writerDone) {
		r.Drain = last.Sub(writerDone)
	}
	r.Expected = written
	h.finish(&r, s, p, waitErr, a)
	return r
}

// quiet starts the agent on QUIET_FILES files of QUIET_LINES lines each,
// waits until all are delivered and WARMUP more, then measures the agent's
// CPU over IDLE_SECONDS with nothing written.
func (h *harness) quiet(ctx context.Context, sc scenario, a agent, rep int) result {
	per := uint64(h.cfg.QuietLines)
	total := per * uint64(h.cfg.QuietFiles)
	r := result{Scenario: sc.Name, Agent: a.Name, Rep: rep, Expected: total}
	t, s, err := h.newRun(sc, a, rep, "", total)
	if err != nil {
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	logs := filepath.Join(t.Dir, "logs")
	err = os.MkdirAll(logs, 0o755)
	for i := 0; err == nil && i < h.cfg.QuietFiles; i++ {
		_, err = workload.WriteFile(filepath.Join(logs, fmt.Sprintf("app-%04d.log", i)), sc.Format, uint64(i)*per, per)
	}
	if err != nil {
		s.Close()
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	t.Include = filepath.Join(logs, "*.log")
	t0 := time.Now()
	p, err := start(a, t)
	if err != nil {
		s.Close()
		r.Status, r.Detail = "error", err.Error()
		return r
	}
	waitErr := h.waitFor(ctx, s, p, total, &r, false)
	if last := s.Counts().LastArrival; !last.IsZero() {
		r.Drain = last.Sub(t0)
	}
	if waitErr == nil {
		sleep(ctx, h.cfg.Warmup)
		u0, s0, _ := proc.CPU(p.pid())
		cpu0 := selfCPU()
		w0 := time.Now()
		sleep(ctx, h.cfg.IdleFor)
		r.Window = time.Since(w0)
		u1, s1, _ := proc.CPU(p.pid())
		r.User, r.Sys = u1-u0, s1-s0
		r.HarnessCPU = selfCPU() - cpu0
		if !p.running() {
			waitErr = errors.New("exited")
		}
	}
	r.RSS, r.PeakRSS, _ = proc.Memory(p.pid())
	h.finish(&r, s, p, waitErr, a)
	return r
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
