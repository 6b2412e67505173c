package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A failed metrics push is logged without the credentials of its endpoint,
// once per message until repeatEvery has passed.
func TestOtelErrorsRedactedAndRepeatedRarely(t *testing.T) {
	var buf bytes.Buffer
	h := newOtelErrors(slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	err := errors.New(`failed to upload metrics: Post "https://agent:s3cr3t@metrics.example:4318/v1/metrics?token=abc123": connection refused`)
	for range 10 {
		h.Handle(err)
	}
	now = now.Add(6 * time.Minute)
	h.Handle(err)
	h.Handle(errors.New("other"))
	out := buf.String()
	for _, secret := range []string{"s3cr3t", "abc123"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
	if n := strings.Count(out, "metrics push failed"); n != 3 {
		t.Errorf("logged %d lines, want 3 (first, after 6 min, other message):\n%s", n, out)
	}
	if !strings.Contains(out, "not_logged_since_last=9") {
		t.Errorf("the repeat line does not count the 9 errors not logged:\n%s", out)
	}
}
