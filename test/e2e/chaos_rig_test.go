package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// This file is the chaos suite's rig: writers that behave like applications
// (a descriptor kept open, reopened when logrotate's postrotate says so), a
// ledger of every line written, and logrotate itself run on a schedule.

// rotMode is how logrotate rotates one file.
type rotMode string

const (
	// rotCreate renames the file, creates an empty one and runs postrotate,
	// which tells the writer to reopen; until it does, its lines go into
	// the renamed file.
	rotCreate rotMode = "create"
	// rotCopyTruncate copies the file and truncates it; the writer keeps its
	// descriptor (O_APPEND, so it writes at the new end).
	rotCopyTruncate rotMode = "copytruncate"
	// rotCompress is create plus compress and delaycompress: the previous
	// rotation (.1) is gzipped when the next one happens.
	rotCompress rotMode = "compress"
)

// lineInfo is where and when one sequence number was written.
type lineInfo struct {
	file uint8  // index into the writers: 0 = app-a.log
	gen  uint16 // how often the writer had reopened its path before
	ms   uint32 // milliseconds since the ledger's start
}

// ledger records every line the writers wrote, by sequence number. The
// sequence is global across files, so that one tally counts them all.
type ledger struct {
	mu    sync.Mutex
	t0    time.Time
	lines []lineInfo
}

func (l *ledger) written() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// snapshot returns the lines written so far; the slice is not modified
// afterwards (appends copy or write past its length).
func (l *ledger) snapshot() []lineInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines[:len(l.lines):len(l.lines)]
}

// appWriter writes sequence-numbered lines into one path through a
// descriptor it keeps open, as an application's logger does, and reopens
// the path when asked (logrotate's postrotate).
type appWriter struct {
	idx    uint8
	name   string // "a"
	path   string
	size   int // bytes per line, newline included
	led    *ledger
	reopen atomic.Bool

	mu   sync.Mutex // held while writing and while logrotate copies the file (pause)
	f    *os.File
	gen  int
	done int // lines this writer wrote
}

func newAppWriter(idx uint8, name, path string, size int, led *ledger) (*appWriter, error) {
	w := &appWriter{idx: idx, name: name, path: path, size: size, led: led}
	var err error
	w.f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	return w, err
}

// run writes perSec lines a second, in 10 ms steps, until ctx ends.
func (w *appWriter) run(ctx context.Context, perSec int) error {
	t0 := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		due := int(time.Since(t0).Seconds() * float64(perSec))
		if err := w.step(due); err != nil {
			return err
		}
	}
}

// step reopens the path when asked, then writes up to a total of due lines.
func (w *appWriter) step(due int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reopen.Swap(false) {
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", w.path, err)
		}
		f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("reopen %s: %w", w.path, err)
		}
		w.f, w.gen = f, w.gen+1
	}
	n := due - w.done
	if n <= 0 {
		return nil
	}
	w.led.mu.Lock()
	defer w.led.mu.Unlock()
	seq := len(w.led.lines)
	buf := make([]byte, 0, n*w.size)
	for i := range n {
		buf = otlpsink.Line(buf, "file="+w.name, seq+i, w.size)
	}
	if _, err := w.f.Write(buf); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	info := lineInfo{file: w.idx, gen: uint16(min(w.gen, 1<<16-1)), ms: uint32(time.Since(w.led.t0).Milliseconds())}
	for range n {
		w.led.lines = append(w.led.lines, info)
	}
	w.done += n
	return nil
}

func (w *appWriter) close() { w.f.Close() }

// reopenChannel is the FIFO logrotate's postrotate scripts write the
// rotated path into ("echo $1 > FIFO"); the test reads it and tells that
// path's writer to reopen, as a SIGHUP or SIGUSR1 tells a real application.
type reopenChannel struct {
	path string
	f    *os.File
	done chan struct{}
}

func openReopenChannel(path string, writers []*appWriter) (*reopenChannel, error) {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", path, err)
	}
	// Read and write: a postrotate script never blocks waiting for a reader,
	// and the reader never sees an end of file between scripts.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	c := &reopenChannel{path: path, f: f, done: make(chan struct{})}
	byPath := map[string]*appWriter{}
	for _, w := range writers {
		byPath[w.path] = w
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if w := byPath[strings.TrimSpace(sc.Text())]; w != nil {
				w.reopen.Store(true)
			}
		}
	}()
	return c, nil
}

func (c *reopenChannel) close() {
	c.f.Close()
	<-c.done
}

// rotation is a logrotate configuration for the writers' files and the
// command that applies it.
type rotation struct {
	bin, conf, state string
	paused           []*appWriter // copytruncate files: held while logrotate runs
	runs             int
}

// rotatedPatterns are the names rotations of the files get, relative to
// the logs directory, for sources that match rotated files too.
func rotatedPatterns(dateext, olddir bool) (include, gz []string) {
	dir := ""
	if olddir {
		dir = "old/"
	}
	if dateext {
		return []string{dir + "*.log-*"}, []string{dir + "*.gz"}
	}
	return []string{dir + "*.log.*"}, []string{dir + "*.gz"}
}

// chaosKeep is logrotate's rotate count: 10 rotations 3-5 s apart keep
// 30-50 s of history, longer than an outage (20 s) plus a restart, so that
// what the agent could not deliver is still on disk when it starts again
// (a file rotated away while no agent held it is lost, and counted in
// logpump_tailer_lost_bytes_total; with rotate 5, gzip-auto lost 3,690
// lines that way, each reported). Old rotations are still removed during
// every scenario.
const chaosKeep = 10

// writeRotation writes the logrotate configuration: one stanza per file,
// keeping keep rotations (chaosKeep) so that old ones are removed, dateext
// with seconds (rotations are seconds apart) and olddir when asked.
func writeRotation(bin, dir, logsDir, fifo string, writers []*appWriter, modes []rotMode, dateext, olddir bool, keep int) (*rotation, error) {
	r := &rotation{bin: bin, conf: filepath.Join(dir, "logrotate.conf"), state: filepath.Join(dir, "logrotate.state")}
	var b strings.Builder
	for i, w := range writers {
		fmt.Fprintf(&b, "%s {\n    rotate %d\n    missingok\n", w.path, keep)
		if dateext {
			b.WriteString("    dateext\n    dateformat -%Y%m%d-%H%M%S\n")
		}
		if olddir {
			old := filepath.Join(logsDir, "old")
			if err := os.MkdirAll(old, 0o755); err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "    olddir %s\n", old)
		}
		switch modes[i] {
		case rotCopyTruncate:
			b.WriteString("    copytruncate\n")
			r.paused = append(r.paused, w)
		case rotCreate, rotCompress:
			if modes[i] == rotCompress {
				b.WriteString("    compress\n    delaycompress\n")
			}
			fmt.Fprintf(&b, "    create 0644\n    postrotate\n        echo \"$1\" > %s\n    endscript\n", fifo)
		default:
			return nil, fmt.Errorf("unknown rotation mode %q", modes[i])
		}
		b.WriteString("}\n")
	}
	return r, os.WriteFile(r.conf, []byte(b.String()), 0o644)
}

// rotate runs logrotate -f once. The writers of copytruncate files wait
// while it runs: lines written between logrotate's copy and its truncation
// are in neither file whatever reads them (logrotate's own window, see
// docs/failure-modes.md), so the suite does not write any there.
func (r *rotation) rotate() error {
	for _, w := range r.paused {
		w.mu.Lock()
	}
	out, err := exec.Command(r.bin, "-f", "-s", r.state, r.conf).CombinedOutput()
	for _, w := range r.paused {
		w.mu.Unlock()
	}
	r.runs++
	if err != nil {
		return fmt.Errorf("logrotate: %v: %s", err, out)
	}
	return nil
}

// missingRange is a run of lines of one file (consecutive in that file)
// that never arrived.
type missingRange struct {
	file         uint8
	gen          uint16
	first, last  int // sequence numbers
	lines        int
	fromMS, toMS uint32
}

// missingRanges groups the sequence numbers the tally never saw by file:
// a range goes on while the file's next line is missing too and was written
// under the same generation.
func missingRanges(lines []lineInfo, tally *otlpsink.Tally) []missingRange {
	return lineRanges(lines, func(seq int) bool { return tally.Count(seq) == 0 })
}

// copiedRanges groups the sequence numbers the tally saw more than once, as
// missingRanges does the missing ones: next to them, they tell lines read
// twice from one place from lines read from the wrong one.
func copiedRanges(lines []lineInfo, tally *otlpsink.Tally) []missingRange {
	return lineRanges(lines, func(seq int) bool { return tally.Count(seq) > 1 })
}

// lineRanges groups the sequence numbers for which in is true by file.
func lineRanges(lines []lineInfo, in func(seq int) bool) []missingRange {
	var out []missingRange
	open := map[uint8]int{} // file → index into out
	for seq, li := range lines {
		i, ok := open[li.file]
		if !in(seq) {
			delete(open, li.file)
			continue
		}
		if ok && out[i].gen == li.gen {
			out[i].last, out[i].toMS = seq, li.ms
			out[i].lines++
			continue
		}
		open[li.file] = len(out)
		out = append(out, missingRange{file: li.file, gen: li.gen, first: seq, last: seq, lines: 1, fromMS: li.ms, toMS: li.ms})
	}
	return out
}

// runTally notes which run of the agent delivered each sequence number
// last, to count copies that one run delivered twice: a run sends a line
// once (a retry follows a failed request only), so those are lines the
// agent read twice, not lines re-sent after a restart.
type runTally struct {
	mu      sync.Mutex
	run     atomic.Int32 // the agent's current run, from 1
	last    []uint16     // run that delivered each sequence number last
	sameRun []int        // sequence numbers delivered twice by one run
}

func (r *runTally) addBody(body string) {
	seq, ok := otlpsink.ParseSeq(body)
	if !ok {
		return
	}
	run := uint16(r.run.Load())
	r.mu.Lock()
	defer r.mu.Unlock()
	for seq >= len(r.last) {
		r.last = append(r.last, make([]uint16, max(1024, len(r.last)))...)
	}
	if r.last[seq] == run && len(r.sameRun) < 1<<20 {
		r.sameRun = append(r.sameRun, seq)
	}
	r.last[seq] = run
}

// sameRunCopies returns the sequence numbers one run delivered more than
// once (each extra copy once).
func (r *runTally) sameRunCopies() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.sameRun...)
}
