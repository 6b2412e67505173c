package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/internal/pipetest"
)

// runTest runs test files against a configuration offline: the real
// processors and routes, a fixed clock, no exporter connected. It exits 0
// when every test passes, 1 when one fails, 2 when a file cannot be used.
func runTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("logpump test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: logpump test [-config FILE] [-trace] [-v] TESTFILE...")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", defaultConfig, "configuration file")
	trace := fs.Bool("trace", false, "print what each stage yielded for a failing test")
	verbose := fs.Bool("v", false, "also name the tests that pass")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sum, err := pipetest.Run(*cfgPath, fs.Args(), pipetest.Options{Trace: *trace, Verbose: *verbose}, stdout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		var errs config.Errors
		if errors.As(err, &errs) {
			fmt.Fprintf(stderr, "%d error(s)\n", len(errs))
		}
		return 2
	}
	if sum.Failed > 0 {
		fmt.Fprintf(stdout, "FAIL: %d of %d tests failed\n", sum.Failed, sum.Failed+sum.Passed)
		return 1
	}
	fmt.Fprintf(stdout, "PASS: %d tests\n", sum.Passed)
	return 0
}
