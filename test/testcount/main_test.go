package main

import (
	"strings"
	"testing"
)

// Two packages: one with each kind of leaf test (passed, skipped, failed,
// started but never ended) and a parent of subtests; one that failed
// without a failed test (it did not build); and one without test files.
const stream = `{"Action":"run","Package":"a","Test":"TestPass"}
{"Action":"output","Package":"a","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"pass","Package":"a","Test":"TestPass"}
{"Action":"run","Package":"a","Test":"TestSkip"}
{"Action":"output","Package":"a","Test":"TestSkip","Output":"    x_test.go:3: under Wine: no symbolic links\n"}
{"Action":"skip","Package":"a","Test":"TestSkip"}
{"Action":"run","Package":"a","Test":"TestParent/sub"}
{"Action":"output","Package":"a","Test":"TestParent/sub","Output":"    x_test.go:9: got 1, want 2\n"}
{"Action":"fail","Package":"a","Test":"TestParent/sub"}
{"Action":"fail","Package":"a","Test":"TestParent"}
{"Action":"run","Package":"a","Test":"TestParent/other"}
{"Action":"pass","Package":"a","Test":"TestParent/other"}
{"Action":"run","Package":"a","Test":"TestHung"}
{"Action":"output","Package":"a","Test":"TestHung","Output":"panic: test timed out\n"}
{"Action":"fail","Package":"a"}
not json: a line the binary wrote outside the framing
{"Action":"build-output","Package":"b","Output":"b/x.go:1:1: expected 'package'\n"}
{"Action":"fail","Package":"b"}
{"Action":"output","Package":"c","Output":"?   \tc\t[no test files]\n"}
{"Action":"skip","Package":"c"}
`

func TestSummarize(t *testing.T) {
	sums, err := summarize(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].pkg != "a" || sums[1].pkg != "b" {
		t.Fatalf("packages %+v, want a and b (c has no tests)", sums)
	}
	a, b := sums[0], sums[1]
	var failed []string
	for _, f := range a.failed {
		failed = append(failed, f.name)
	}
	if a.passed != 2 || a.skipped != 1 || strings.Join(failed, ",") != "TestHung,TestParent/sub" {
		t.Errorf("a: passed %d, skipped %d, failed %v; want 2, 1, [TestHung TestParent/sub]", a.passed, a.skipped, failed)
	}
	if len(a.skips) != 1 || len(a.skips[0].lines) != 1 || !strings.Contains(a.skips[0].lines[0], "under Wine: no symbolic links") {
		t.Errorf("skip reasons %+v, want the skip's message", a.skips)
	}
	if a.ok() {
		t.Error("a has failed tests but is ok")
	}
	if b.ok() || !strings.Contains(b.note(), "expected 'package'") {
		t.Errorf("b failed to build: ok %v, note %q; want not ok and the build output", b.ok(), b.note())
	}
}
