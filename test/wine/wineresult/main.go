// Command wineresult counts the results of a Go test binary run under Wine,
// from its test2json stream on stdin (see .ci/platforms.sh wine).
//
// Under Debian's Wine 8, os.RemoveAll fails ("unlinkat ...: Invalid
// function"), so every test using t.TempDir fails its cleanup after its own
// checks. Output does not tell a t.Log line from a t.Error one; the tests
// of this repository write their failed checks with "want" (got/want
// messages), so a failed test is sorted by its output:
//
//   - cleanup: the cleanup's message is there, and no line says "want" or
//     "panic:": its checks passed (its other lines are its logs).
//   - failed: any other failure.
//
// Only leaf tests are counted (a parent fails when a subtest does). It
// prints one summary line, then the failed tests with their first lines,
// and exits 1 when a test failed or the binary did not run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action string
	Test   string
	Output string
}

type result struct {
	action string
	output []string
}

// cleanupMessage is the failure Wine's os.RemoveAll causes in t.TempDir's
// cleanup.
const cleanupMessage = "TempDir RemoveAll cleanup"

func main() {
	pkg := flag.String("p", "", "package name for the summary")
	flag.Parse()
	s, err := summarize(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wineresult:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d passed, %d passed but for Wine's RemoveAll cleanup, %d skipped, %d failed%s\n",
		*pkg, s.passed, s.cleanup, s.skipped, len(s.failed), s.pkgNote())
	for _, f := range s.failed {
		f.print("FAIL")
	}
	if len(s.failed) > 0 || s.pkgFailed && s.passed+s.cleanup == 0 {
		os.Exit(1)
	}
}

type failure struct {
	name  string
	lines []string
}

func (f failure) print(kind string) {
	fmt.Printf("    %s %s\n", kind, f.name)
	for _, l := range f.lines {
		fmt.Printf("        %s\n", l)
	}
}

type summary struct {
	passed, cleanup, skipped int
	failed                   []failure
	pkgFailed                bool
	pkgOutput                []string
}

func (s summary) pkgNote() string {
	if s.pkgFailed && s.passed+s.cleanup == 0 {
		return "; the binary did not run: " + strings.Join(s.pkgOutput, " | ")
	}
	return ""
}

func summarize(r io.Reader) (summary, error) {
	var s summary
	tests := map[string]*result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line the binary printed outside test2json framing
		}
		if ev.Test == "" {
			switch ev.Action {
			case "fail":
				s.pkgFailed = true
			case "output":
				if l := strings.TrimSpace(ev.Output); l != "" && len(s.pkgOutput) < 5 {
					s.pkgOutput = append(s.pkgOutput, l)
				}
			}
			continue
		}
		t := tests[ev.Test]
		if t == nil {
			t = &result{}
			tests[ev.Test] = t
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			t.action = ev.Action
		case "output":
			l := strings.TrimSpace(ev.Output)
			if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- ") {
				t.output = append(t.output, l)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	names := make([]string, 0, len(tests))
	for n := range tests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if hasSubtests(n, tests) {
			continue
		}
		t := tests[n]
		switch t.action {
		case "pass":
			s.passed++
		case "skip":
			s.skipped++
		case "fail":
			if cleanupOnly(t.output) {
				s.cleanup++
			} else {
				s.failed = append(s.failed, failure{n, head(t.output, 8)})
			}
		default: // started, never ended: the binary died in it
			s.failed = append(s.failed, failure{n, append(head(t.output, 8), "(did not finish)")})
		}
	}
	return s, nil
}

func hasSubtests(name string, tests map[string]*result) bool {
	for n := range tests {
		if strings.HasPrefix(n, name+"/") {
			return true
		}
	}
	return false
}

// cleanupOnly reports whether the TempDir cleanup failed and no line is a
// failed check ("want", "panic:").
func cleanupOnly(lines []string) bool {
	found := false
	for _, l := range lines {
		switch {
		case strings.Contains(l, cleanupMessage):
			found = true
		case strings.Contains(l, "want") || strings.Contains(l, "panic:"):
			return false
		}
	}
	return found
}

func head(lines []string, n int) []string {
	if len(lines) > n {
		return lines[:n]
	}
	return lines
}
