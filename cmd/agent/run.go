package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/internal/admin"
	"github.com/logpump/logpump/internal/agent"
	"github.com/logpump/logpump/internal/exepages"
	"github.com/logpump/logpump/internal/sdnotify"
	"github.com/logpump/logpump/internal/selfmetrics"
	"github.com/logpump/logpump/internal/tap"
	"github.com/logpump/logpump/internal/timerslack"
)

type stopFunc func(ctx context.Context, cancel context.CancelFunc)

// runAgent runs until SIGTERM or SIGINT (or until stopAfter cancels, for the
// demo). A second signal (more than signalDebounce after the first) exits
// at once: checkpoints on disk only ever cover
// acknowledged data, so nothing acknowledged is lost. SIGHUP reloads, and
// so does a change of the file's content when watch is not 0 (checked
// every watch).
func runAgent(path string, getenv func(string) string, stdout, stderr io.Writer, stopAfter stopFunc, watch time.Duration) int {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		fmt.Fprintln(stderr, config.Redact(err.Error()))
		return 1
	}
	log := newLogger(stderr, cfg.LogLevel)
	metrics, err := newMetrics(cfg.Admin)
	if err != nil {
		fmt.Fprintln(stderr, "logpump:", config.Redact(err.Error()))
		return 1
	}
	if cfg.Admin.MetricsPush.Endpoint != "" {
		otel.SetErrorHandler(newOtelErrors(log))
	}
	taps := tap.NewRegistry()
	notify := sdnotify.New(getenv)
	a, err := agent.Build(cfg, agent.Env{
		Getenv: getenv, Stdout: stdout, Log: log, Metrics: metrics, Taps: taps,
		Ready: func() { notify.Ready("running") },
		// Connecting and the first requests run code once too.
		Settled: func() { releaseStartupPages(log, "every exporter answered") },
	})
	if err != nil {
		fmt.Fprintln(stderr, config.Redact(err.Error()))
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	side, stopSide := context.WithCancel(context.Background()) // admin server, watchdog, config watch
	defer stopSide()
	// rejected is the reason the file on disk does not run, for /readyz;
	// nil once a reload applied it.
	var rejected atomic.Pointer[string]
	r := &reloader{path: path, getenv: getenv, a: a, log: log, m: metrics, notify: notify, running: cfg.Admin, rejected: &rejected}
	if cfg.Admin.Address != "" {
		token, err := cfg.Admin.Token()
		if err != nil {
			log.Error("admin server not started", "err", err.Error())
			return 1
		}
		warnings := func(paths bool) []string {
			w := a.Warnings(paths)
			if s := rejected.Load(); s != nil {
				w = append(w, *s)
			}
			return w
		}
		srv := admin.New(cfg.Admin.Address, admin.Options{
			Token: token, Pprof: cfg.Admin.Pprof, Ready: a.Ready, Warnings: warnings, Metrics: metrics.Handler(),
			Pipeline: func() any { return a.Pipeline() }, Tap: taps.Handler(), Log: log,
		})
		addr, err := srv.Listen()
		if err != nil {
			log.Error("admin server not started", "address", cfg.Admin.Address, "err", err.Error())
			return 1
		}
		log.Info("admin server listening", "address", addr.String())
		go srv.Run(side)
	}
	go notify.Run(side, nil)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	changed := make(chan struct{}, 1)
	if watch > 0 {
		go watchFile(side, path, watch, log, changed)
	}
	go func() {
		stopping := false
		var stopAt time.Time
		for {
			var s os.Signal
			select {
			case s = <-sigs:
			case <-changed:
				if !stopping {
					log.Info("configuration file changed", "config", path)
					go r.reload()
				}
				continue
			}
			switch {
			case s == syscall.SIGHUP && !stopping:
				go r.reload()
			case s == syscall.SIGHUP:
			case !stopping:
				stopping, stopAt = true, time.Now()
				notify.Stopping()
				log.Info("stopping: draining exporters and flushing checkpoints", "signal", s.String(), "timeout", cfg.ShutdownTimeout.String())
				cancel()
			case time.Since(stopAt) < signalDebounce:
				// One stop request delivered twice: GNU timeout signals
				// the child and then its process group, which holds it.
				log.Debug("repeated stop signal ignored", "signal", s.String(), "after", time.Since(stopAt).String())
			default:
				log.Warn("second signal: exiting now; unacknowledged lines will be read again on the next start", "signal", s.String())
				os.Exit(130)
			}
		}
	}()
	if stopAfter != nil {
		stopAfter(ctx, cancel)
	}
	releaseStartupPages(log, "pipeline starting")
	setTimerSlack(log)
	runErr := a.Run(ctx)
	stopSide()
	mctx, mcancel := context.WithTimeout(context.Background(), time.Second)
	defer mcancel()
	metrics.Shutdown(mctx)
	switch {
	case runErr == nil:
		return 0
	case errors.Is(runErr, context.DeadlineExceeded) && !errors.Is(runErr, agent.ErrCheckpoint):
		// Expected when the destination is down at stop time: nothing is lost.
		log.Warn("stopped at shutdown_timeout before every line was acknowledged; the rest will be sent after the next start", "err", runErr.Error())
		return 0
	case errors.Is(runErr, checkpoint.ErrWrite):
		// The drain is done; only the record of it could not be written:
		// nothing is lost, what was acknowledged since the last write is
		// sent again after the next start.
		log.Warn("stopped, but the checkpoints could not be written; lines acknowledged since the last write will be sent again after the next start", "err", runErr.Error())
		return 0
	default:
		log.Error("logpump stopped with an error", "err", runErr.Error())
		return 1
	}
}

// signalDebounce is how long after a stop signal another one counts as
// the same request rather than "exit now".
const signalDebounce = 100 * time.Millisecond

// releaseStartupPages gives back the pages of the executable mapped so far
// (see package exepages): called before the pipeline starts, for what
// initialisation and building touched, and once every exporter answered, for
// connecting and the first requests. What the pipeline uses is mapped again
// as it runs.
func releaseStartupPages(log *slog.Logger, when string) {
	st, err := exepages.Release()
	if err != nil {
		log.Debug("could not release start-up pages of the executable", "when", when, "err", err.Error())
		return
	}
	log.Debug("released start-up pages of the executable", "when", when,
		"rss_file_before_kib", st.RSSBefore>>10, "rss_file_after_kib", st.RSSAfter>>10)
}

// setTimerSlack lets the kernel serve the agent's timers up to a millisecond
// late (see package timerslack), unless whoever started the agent chose a
// slack.
func setTimerSlack(log *slog.Logger) {
	r, err := timerslack.Set(timerslack.Default)
	switch {
	case err != nil:
		log.Debug("timer slack left as it is", "slack", r.Found.String(), "err", err.Error())
	case r.Kept:
		log.Debug("timer slack set by the parent process kept", "slack", r.Found.String())
	default:
		log.Debug("timer slack set", "slack", r.Now.String())
	}
}

// newMetrics returns the agent's own metrics, or nil (recording nothing)
// when nothing can read them: no admin server to serve /metrics and no push.
// The metric SDK and its Prometheus registry are then never built, which
// keeps their heap and the pages of their code out of the agent's memory.
// The admin server is not reloadable, so this holds for the process's life.
func newMetrics(adm config.Admin) (*selfmetrics.Metrics, error) {
	mopts := selfmetrics.Options{Version: buildVersion()}
	if push := adm.MetricsPush; push.Endpoint != "" {
		reader, err := selfmetrics.OTLPReader(context.Background(), selfmetrics.PushOptions{
			Endpoint: push.Endpoint, Insecure: push.Insecure, Headers: push.Headers, Interval: push.Interval,
		})
		if err != nil {
			return nil, fmt.Errorf("admin.metrics_push: %w", err)
		}
		mopts.Readers = append(mopts.Readers, reader)
	}
	if adm.Address == "" && len(mopts.Readers) == 0 {
		return nil, nil
	}
	m, err := selfmetrics.New(mopts)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// reloader re-reads the configuration file and swaps the running graph.
type reloader struct {
	path     string
	getenv   func(string) string
	a        *agent.Agent
	log      *slog.Logger
	m        *selfmetrics.Metrics
	notify   *sdnotify.Notifier
	running  config.Admin
	rejected *atomic.Pointer[string]
}

// reload applies the file. On any error the running graph stays, the error
// is logged, logpump_config_last_reload_successful drops to 0 and /readyz
// says why (a warning line: the running configuration still works).
func (r *reloader) reload() {
	r.log.Info("reloading configuration", "config", r.path)
	r.notify.Reloading()
	defer r.notify.Ready("running")
	cfg, err := config.Load(r.path, r.getenv)
	if err == nil {
		warnAdminChanges(r.log, r.running, cfg.Admin)
		err = r.a.Reload(cfg)
	}
	r.m.Reloaded(err == nil)
	if err != nil {
		msg := config.Redact(err.Error())
		r.log.Error("reload failed; the running configuration stays in effect", "config", r.path, "err", msg)
		line := fmt.Sprintf("configuration: %s was not applied at %s, the previous one runs: %s",
			r.path, time.Now().UTC().Format(time.RFC3339), strings.ReplaceAll(msg, "\n", "; "))
		r.rejected.Store(&line)
		return
	}
	r.rejected.Store(nil)
}

// watchFile checks path every interval and signals changed when its
// content differs from the last seen. It reads the file rather than its
// modification time: a Kubernetes ConfigMap volume replaces a symlink
// (..data) to a new directory, which leaves the named file's own time as
// it was, and an editor may write the same bytes again.
func watchFile(ctx context.Context, path string, interval time.Duration, log *slog.Logger, changed chan<- struct{}) {
	sum := func() ([32]byte, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return [32]byte{}, err
		}
		return sha256.Sum256(data), nil
	}
	last, lastErr := sum()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur, err := sum()
		if err != nil {
			// Being replaced, or gone: keep the running configuration.
			if lastErr == nil {
				log.Warn("configuration file unreadable; the running configuration stays in effect", "config", path, "err", err.Error())
			}
			lastErr = err
			continue
		}
		if cur == last && lastErr == nil {
			continue
		}
		last, lastErr = cur, nil
		select {
		case changed <- struct{}{}:
		default: // a reload is already asked for
		}
	}
}

// warnAdminChanges says which admin settings a reload leaves as they are:
// the admin server and the metrics are set up once, at start.
func warnAdminChanges(log *slog.Logger, running, next config.Admin) {
	if running.Address != next.Address || running.Pprof != next.Pprof || running.TokenFile != next.TokenFile ||
		!reflect.DeepEqual(running.MetricsPush, next.MetricsPush) {
		log.Warn("admin settings change only on restart; keeping the running ones",
			"address", running.Address, "new_address", next.Address)
	}
}
