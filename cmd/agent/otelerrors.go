package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/logpump/logpump/config"
)

// otelErrors takes the errors the metric SDK reports outside any call of
// the agent's (a push of admin.metrics_push that failed) and logs them
// redacted, as every other log line is: once per distinct message, and
// again after repeatEvery while it goes on.
type otelErrors struct {
	log         *slog.Logger
	repeatEvery time.Duration
	now         func() time.Time

	mu     sync.Mutex
	last   string
	lastAt time.Time
	// repeated counts the errors not logged since the last line.
	repeated int
}

func newOtelErrors(log *slog.Logger) *otelErrors {
	return &otelErrors{log: log, repeatEvery: 5 * time.Minute, now: time.Now}
}

// Handle implements go.opentelemetry.io/otel.ErrorHandler.
func (h *otelErrors) Handle(err error) {
	if err == nil {
		return
	}
	msg := config.Redact(err.Error())
	now := h.now()
	h.mu.Lock()
	if msg == h.last && now.Sub(h.lastAt) < h.repeatEvery {
		h.repeated++
		h.mu.Unlock()
		return
	}
	repeated := h.repeated
	h.last, h.lastAt, h.repeated = msg, now, 0
	h.mu.Unlock()
	h.log.Warn("metrics push failed", "error", msg, "not_logged_since_last", repeated)
}
