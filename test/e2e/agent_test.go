package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// env is one test's directories, configuration and sink.
type env struct {
	t        *testing.T
	dir      string
	logsDir  string // the tailed directory
	stateDir string
	cfgPath  string
	agentLog string // every run's stderr, appended
	sink     *otlpsink.Sink
	sinks    []*otlpsink.Sink // sink first; more with setup.gateways
	runs     int
	bin      string // the agent binary; "" is agentBin
}

// setup is how a test wants the agent configured.
type setup struct {
	protocol        string // "grpc" (default) or "http"
	compression     string // the exporter's compression; "" is the default (gzip)
	shutdownTimeout time.Duration
	maxInFlight     string // checkpoint max_in_flight, e.g. "16MiB"
	// onBody replaces the sink's record keeping (see otlpsink.Options).
	onBody        func(string)
	extraResource map[string]string
	// include and exclude are the source's patterns, relative to the tailed
	// directory; include defaults to ["*.log"].
	include, exclude []string
	// sourceCompression is the file source's compression ("" = default).
	sourceCompression string
	// The sink's bearer token and size limits (see otlpsink.Options).
	sinkToken        string
	sinkMaxGRPCMiB   int
	sinkMaxHTTPBytes int64
	// gateways > 1 starts that many sinks and lists them all in the
	// exporter's endpoints (env.sinks).
	gateways int
	// onRecordAt, when set, receives every record each sink accepts,
	// with the sink's index in env.sinks (see otlpsink.Options.OnRecord).
	onRecordAt func(sink int, r otlpsink.Record)
}

func (s setup) withDefaults() setup {
	if s.protocol == "" {
		s.protocol = "grpc"
	}
	if s.shutdownTimeout == 0 {
		s.shutdownTimeout = 10 * time.Second
	}
	if s.maxInFlight == "" {
		s.maxInFlight = "16MiB"
	}
	if len(s.include) == 0 {
		s.include = []string{"*.log"}
	}
	return s
}

// newEnv starts a sink and writes the agent's configuration. The agent log
// is printed when the test fails.
func newEnv(t *testing.T, s setup) *env {
	t.Helper()
	s = s.withDefaults()
	dir := t.TempDir()
	e := &env{
		t:        t,
		dir:      dir,
		logsDir:  filepath.Join(dir, "logs"),
		stateDir: filepath.Join(dir, "state"),
		cfgPath:  filepath.Join(dir, "logpump.yaml"),
		agentLog: filepath.Join(dir, "agent.log"),
	}
	for _, d := range []string{e.logsDir, e.stateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range max(s.gateways, 1) {
		var onRecord func(otlpsink.Record)
		if s.onRecordAt != nil {
			onRecord = func(r otlpsink.Record) { s.onRecordAt(i, r) }
		}
		sink, err := otlpsink.Start(ctx, otlpsink.Options{OnBody: s.onBody, OnRecord: onRecord, BearerToken: s.sinkToken,
			MaxRecvMsgSizeMiB: s.sinkMaxGRPCMiB, MaxRequestBodyBytes: s.sinkMaxHTTPBytes})
		if err != nil {
			t.Fatal(err)
		}
		e.sinks = append(e.sinks, sink)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := sink.Stop(ctx); err != nil {
				t.Errorf("stop sink: %v", err)
			}
		})
	}
	sink := e.sinks[0]
	e.sink = sink
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLog()
		}
		if keep := os.Getenv("E2E_LOGDIR"); keep != "" {
			e.keepLog(keep)
		}
	})

	exporter := fmt.Sprintf("type: otlp_grpc\n    endpoint: %s", sink.GRPCEndpoint())
	if s.protocol == "http" {
		exporter = fmt.Sprintf("type: otlp_http\n    endpoint: %s", sink.HTTPEndpoint())
	}
	if s.gateways > 1 {
		var eps []string
		for _, sk := range e.sinks {
			if s.protocol == "http" {
				eps = append(eps, sk.HTTPEndpoint())
			} else {
				eps = append(eps, sk.GRPCEndpoint())
			}
		}
		exporter = fmt.Sprintf("type: otlp_%s\n    endpoints: [%s]", s.protocol, strings.Join(eps, ", "))
	}
	if s.compression != "" {
		exporter += "\n    compression: " + s.compression
	}
	var res strings.Builder
	res.WriteString("{service.name: e2e")
	for k, v := range s.extraResource {
		fmt.Fprintf(&res, ", %s: %s", k, v)
	}
	res.WriteString("}")
	patterns := func(ps []string) string {
		abs := make([]string, len(ps))
		for i, p := range ps {
			abs[i] = filepath.Join(e.logsDir, p)
		}
		return "[" + strings.Join(abs, ", ") + "]"
	}
	source := "include: " + patterns(s.include)
	if len(s.exclude) > 0 {
		source += "\n    exclude: " + patterns(s.exclude)
	}
	if s.sourceCompression != "" {
		source += "\n    compression: " + s.sourceCompression
	}
	cfg := fmt.Sprintf(`state_dir: %s
shutdown_timeout: %s
log_level: %s
resource: %s
checkpoints: {flush_interval: 1s, max_in_flight: %s}
sources:
  app:
    type: file
    %s
    start_at: beginning
    include_file_path: true
exporters:
  collector:
    %s
    tls: {insecure: true}
    batch: {max_records: 1000, timeout: 200ms}
    queue: {size: 64, in_flight: 2}
    retry: {initial_interval: 100ms, max_interval: 2s}
pipelines:
  main:
    sources: [app]
    exporters: [collector]
`, e.stateDir, s.shutdownTimeout, logLevel(), res.String(), s.maxInFlight, source, exporter)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// logLevel is the agents' log level: E2E_LOG_LEVEL (debug, to see where each
// file resumes), else info.
func logLevel() string {
	if l := os.Getenv("E2E_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// keepLog copies the agent's log to dir/<test name>.log (E2E_LOGDIR, for
// CI artifacts).
func (e *env) keepLog(dir string) {
	data, err := os.ReadFile(e.agentLog)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		name := strings.ReplaceAll(e.t.Name(), "/", "_") + ".log"
		err = os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	if err != nil {
		e.t.Logf("keep agent log: %v", err)
	}
}

// dumpLog prints the tail of the agent's log.
func (e *env) dumpLog() {
	data, err := os.ReadFile(e.agentLog)
	if err != nil {
		e.t.Logf("agent log: %v", err)
		return
	}
	lines := strings.SplitAfter(string(data), "\n")
	const keep = 300
	if len(lines) > keep {
		e.t.Logf("agent log (%s), last %d of %d lines:", e.agentLog, keep, len(lines))
		lines = lines[len(lines)-keep:]
	} else {
		e.t.Logf("agent log (%s):", e.agentLog)
	}
	e.t.Log("\n" + strings.Join(lines, ""))
}

// agentProc is one run of the agent binary.
type agentProc struct {
	e       *env
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process was reaped
	exit    *os.ProcessState
	waitErr error
}

// start runs `logpump run -config FILE` with stderr appended to the env's
// agent log. A process still running at the end of the test is killed.
func (e *env) start() *agentProc {
	e.t.Helper()
	return e.startArgs("run", "-config", e.cfgPath)
}

// startArgs is start with the agent's command line given.
func (e *env) startArgs(args ...string) *agentProc {
	e.t.Helper()
	e.runs++
	logf, err := os.OpenFile(e.agentLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(logf, "---- run %d at %s ----\n", e.runs, time.Now().Format(time.RFC3339Nano))
	bin := agentBin
	if e.bin != "" {
		bin = e.bin
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &agentProc{e: e, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		logf.Close()
		e.t.Fatalf("start agent: %v", err)
	}
	p.started = time.Now()
	go func() {
		p.waitErr = cmd.Wait()
		p.exit = cmd.ProcessState
		logf.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *agentProc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the agent.
func (p *agentProc) signal(sig syscall.Signal) {
	p.e.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.e.t.Fatalf("signal %v to agent: %v", sig, err)
	}
}

// exited reports whether the process has ended.
func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end and returns its exit code
// (-1 with the signal when killed by one).
func (p *agentProc) wait(d time.Duration) (code int, err error) {
	select {
	case <-p.done:
	case <-time.After(d):
		return 0, fmt.Errorf("agent (pid %d) still running after %v", p.pid(), d)
	}
	if p.exit == nil {
		return 0, fmt.Errorf("wait for agent: %w", p.waitErr)
	}
	return p.exit.ExitCode(), nil
}

// kill sends SIGKILL and reaps the process.
func (p *agentProc) kill() {
	p.e.t.Helper()
	p.signal(syscall.SIGKILL)
	if _, err := p.wait(10 * time.Second); err != nil {
		p.e.t.Fatal(err)
	}
}

// stop sends SIGTERM and expects exit code 0 within the shutdown timeout
// plus a margin for process exit; it returns how long the stop took.
func (p *agentProc) stop(timeout time.Duration) time.Duration {
	p.e.t.Helper()
	return p.stopWith(syscall.SIGTERM, timeout)
}

// stopWith is stop with the signal given.
func (p *agentProc) stopWith(sig syscall.Signal, timeout time.Duration) time.Duration {
	p.e.t.Helper()
	t0 := time.Now()
	p.signal(sig)
	code, err := p.wait(timeout + 5*time.Second)
	took := time.Since(t0)
	if err != nil {
		p.e.t.Fatalf("%v: %v", sig, err)
	}
	if code != 0 {
		p.e.t.Fatalf("%v: agent exited with code %d after %v, want 0", sig, code, took)
	}
	return took
}

// memory is a reading of /proc/PID/status, in bytes.
type memory struct{ rss, hwm int64 }

// readMemory reads VmRSS and VmHWM of pid.
func readMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse %s in /proc/%d/status: %w", k, pid, err)
		}
		*dst = kb << 10
	}
	if m.rss == 0 {
		return memory{}, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

const mib = 1 << 20

// stream writes sequence-numbered lines of a fixed size into files of the
// env's tailed directory, round-robin in chunks. Its methods are safe for
// concurrent use.
type stream struct {
	tag   string
	size  int // bytes per line, newline included
	mu    sync.Mutex
	files []*os.File
	next  int     // next sequence number
	where []uint8 // file index of every sequence number written
}

// newStream creates (or opens for appending) the named files.
func (e *env) newStream(tag string, size int, names ...string) *stream {
	e.t.Helper()
	s := &stream{tag: tag, size: size}
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(e.logsDir, n), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			e.t.Fatal(err)
		}
		s.files = append(s.files, f)
	}
	e.t.Cleanup(func() {
		for _, f := range s.files {
			f.Close()
		}
	})
	return s
}

// chunk is how many lines go to one file before the next file's turn.
const chunk = 500

// write appends n lines, in chunks alternating between the files.
func (s *stream) write(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := make([]byte, 0, chunk*s.size)
	for n > 0 {
		k := min(n, chunk)
		fi := (s.next / chunk) % len(s.files)
		k = min(k, chunk-s.next%chunk) // keep whole chunks per file
		buf = buf[:0]
		for i := range k {
			buf = otlpsink.Line(buf, s.tag, s.next+i, s.size)
			s.where = append(s.where, uint8(fi))
		}
		if _, err := s.files[fi].Write(buf); err != nil {
			return fmt.Errorf("write %s: %w", s.files[fi].Name(), err)
		}
		s.next += k
		n -= k
	}
	return nil
}

// written is how many lines were written so far.
func (s *stream) written() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// fileOf is the path of the file holding seq.
func (s *stream) fileOf(seq int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[s.where[seq]].Name()
}

// line is the body the agent should export for seq.
func (s *stream) line(seq int) string {
	b := otlpsink.Line(nil, s.tag, seq, s.size)
	return string(b[:len(b)-1])
}

// pace writes until total lines were written at about perSec lines per
// second, in 10 ms steps, or until ctx ends. It returns the first write error.
func (s *stream) pace(ctx context.Context, total, perSec int) error {
	t0 := time.Now()
	base := s.written()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.written() < total {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		due := base + int(time.Since(t0).Seconds()*float64(perSec))
		if n := min(due, total) - s.written(); n > 0 {
			if err := s.write(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitUntil polls cond every 50 ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// summary logs a result line with t.Logf and prints it to stdout as
// "E2E name: key=value ...", for grep in CI logs. `go test` shows a passing
// package's stdout only with -v, so the line is also appended to the file
// named by E2E_SUMMARY when set.
func summary(t *testing.T, name, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("E2E %s: %s", name, fmt.Sprintf(format, args...))
	t.Log(line)
	fmt.Println(line)
	if path := os.Getenv("E2E_SUMMARY"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(f, line)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			t.Errorf("write summary: %v", err)
		}
	}
}

// logContains reports whether the agent's log so far contains s.
func logContains(e *env, s string) bool {
	data, err := os.ReadFile(e.agentLog)
	return err == nil && bytes.Contains(data, []byte(s))
}
