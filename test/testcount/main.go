// Command testcount counts the results of Go tests from a test2json stream
// on stdin (go test -json, or a test binary's -test.v=test2json output
// through go tool test2json -p NAME), per package: the Windows test
// binaries run under Wine and the linux/arm64 ones under qemu-user
// (.ci/platforms.sh).
//
// Only leaf tests are counted (a parent fails when a subtest does). For each
// package it prints one line of counts, then each failed test with its first
// lines of output and, with -skips, each skipped test with its reason. It
// exits 1 when a test failed, did not finish, or a package failed without a
// failed test (a build failure, a crash, a binary that did not run).
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
	Action  string
	Package string
	Test    string
	Output  string
}

type result struct {
	action string
	output []string
}

type pkgResult struct {
	tests  map[string]*result
	failed bool     // the package's own fail event
	output []string // the package's output outside any test
}

// summary is one package's counts.
type summary struct {
	pkg             string
	passed, skipped int
	failed, skips   []failure
	pkgFailed       bool
	pkgOutput       []string
}

type failure struct {
	name  string
	lines []string
}

func main() {
	skips := flag.Bool("skips", false, "list the skipped tests with their reasons")
	flag.Parse()
	sums, err := summarize(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcount:", err)
		os.Exit(1)
	}
	bad := false
	for _, s := range sums {
		fmt.Printf("%s: %d passed, %d skipped, %d failed%s\n", s.pkg, s.passed, s.skipped, len(s.failed), s.note())
		for _, f := range s.failed {
			f.print("FAIL")
		}
		if *skips {
			for _, f := range s.skips {
				f.print("SKIP")
			}
		}
		bad = bad || !s.ok()
	}
	if len(sums) == 0 {
		fmt.Println("no test results")
		bad = true
	}
	if bad {
		os.Exit(1)
	}
}

func (f failure) print(kind string) {
	fmt.Printf("    %s %s\n", kind, f.name)
	for _, l := range f.lines {
		fmt.Printf("        %s\n", l)
	}
}

func (s summary) ok() bool { return len(s.failed) == 0 && !s.pkgFailed }

func (s summary) note() string {
	if s.pkgFailed && len(s.failed) == 0 {
		return "; the package failed outside its tests: " + strings.Join(s.pkgOutput, " | ")
	}
	return ""
}

func summarize(r io.Reader) ([]summary, error) {
	pkgs := map[string]*pkgResult{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line printed outside test2json framing
		}
		p := pkgs[ev.Package]
		if p == nil {
			p = &pkgResult{tests: map[string]*result{}}
			pkgs[ev.Package] = p
		}
		if ev.Test == "" {
			switch ev.Action {
			case "fail":
				p.failed = true
			case "output", "build-output":
				if l := strings.TrimSpace(ev.Output); l != "" && len(p.output) < 5 {
					p.output = append(p.output, l)
				}
			}
			continue
		}
		t := p.tests[ev.Test]
		if t == nil {
			t = &result{}
			p.tests[ev.Test] = t
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
		return nil, err
	}
	var sums []summary
	for name, p := range pkgs {
		if len(p.tests) == 0 && !p.failed {
			continue // no test files
		}
		s := summary{pkg: name, pkgFailed: p.failed, pkgOutput: p.output}
		names := make([]string, 0, len(p.tests))
		for n := range p.tests {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if hasSubtests(n, p.tests) {
				continue
			}
			t := p.tests[n]
			switch t.action {
			case "pass":
				s.passed++
			case "skip":
				s.skipped++
				s.skips = append(s.skips, failure{n, tail(t.output, 1)})
			case "fail":
				s.failed = append(s.failed, failure{n, head(t.output, 8)})
			default: // started, never ended: the binary died in it
				s.failed = append(s.failed, failure{n, append(head(t.output, 8), "(did not finish)")})
			}
		}
		sums = append(sums, s)
	}
	sort.Slice(sums, func(i, j int) bool { return sums[i].pkg < sums[j].pkg })
	return sums, nil
}

func hasSubtests(name string, tests map[string]*result) bool {
	for n := range tests {
		if strings.HasPrefix(n, name+"/") {
			return true
		}
	}
	return false
}

func head(lines []string, n int) []string {
	if len(lines) > n {
		return lines[:n]
	}
	return lines
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}
