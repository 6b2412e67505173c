package main

import (
	"strings"
	"testing"
)

// A stream with each kind of leaf test: passed, skipped, failed only at
// Wine's TempDir cleanup (with a log line), failed a check and at the
// cleanup, failed on its own, and started but never ended; and a parent of
// subtests.
const stream = `{"Action":"run","Test":"TestPass"}
{"Action":"output","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"pass","Test":"TestPass"}
{"Action":"run","Test":"TestSkip"}
{"Action":"skip","Test":"TestSkip"}
{"Action":"run","Test":"TestCleanup"}
{"Action":"output","Test":"TestCleanup","Output":"    x_test.go:5: written 10, delivered 10, missing 0\n"}
{"Action":"output","Test":"TestCleanup","Output":"    testing.go:1464: TempDir RemoveAll cleanup: unlinkat C:\\x: Invalid function.\n"}
{"Action":"output","Test":"TestCleanup","Output":"--- FAIL: TestCleanup (0.01s)\n"}
{"Action":"fail","Test":"TestCleanup"}
{"Action":"run","Test":"TestParent/sub"}
{"Action":"output","Test":"TestParent/sub","Output":"    x_test.go:9: got 1, want 2\n"}
{"Action":"output","Test":"TestParent/sub","Output":"    testing.go:1464: TempDir RemoveAll cleanup: unlinkat C:\\y: Invalid function.\n"}
{"Action":"fail","Test":"TestParent/sub"}
{"Action":"fail","Test":"TestParent"}
{"Action":"run","Test":"TestBroken"}
{"Action":"output","Test":"TestBroken","Output":"    x_test.go:12: got 3, want 4\n"}
{"Action":"fail","Test":"TestBroken"}
{"Action":"run","Test":"TestHung"}
{"Action":"output","Test":"TestHung","Output":"panic: test timed out\n"}
{"Action":"fail"}
`

func TestSummarize(t *testing.T) {
	s, err := summarize(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	names := func(fs []failure) (n []string) {
		for _, f := range fs {
			n = append(n, f.name)
		}
		return n
	}
	if s.passed != 1 || s.skipped != 1 || s.cleanup != 1 {
		t.Errorf("passed %d, skipped %d, cleanup-only %d; want 1, 1, 1", s.passed, s.skipped, s.cleanup)
	}
	if got := strings.Join(names(s.failed), ","); got != "TestBroken,TestHung,TestParent/sub" {
		t.Errorf("failed = %s, want TestBroken,TestHung,TestParent/sub", got)
	}
	if !s.pkgFailed {
		t.Error("the package's failure was not seen")
	}
}
