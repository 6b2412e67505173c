// Command logpump is an on-host log-ingestion agent: it tails log files,
// parses and routes their lines and forwards them to OTLP endpoints, with
// at-least-once delivery.
//
//	logpump [run] [-config FILE]     run the agent (the default)
//	logpump validate -config FILE    check a configuration, list every error
//	logpump demo [-for 6s]           run on a built-in demo, printing to the console
//	logpump version                  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/internal/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "/etc/logpump/config.yaml"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("logpump "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfig, "configuration file")
	demoFor := fs.Duration("for", defaultDemoDuration, "demo: how long to run before a graceful stop (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "run":
		return runAgent(*cfgPath, os.Getenv, stdout, stderr, nil)
	case "validate":
		return validate(*cfgPath, stdout, stderr)
	case "demo":
		return runDemo(*demoFor, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "logpump", buildVersion())
		return 0
	default:
		fmt.Fprintf(stderr, "logpump: unknown command %q (commands: run, validate, demo, version)\n", cmd)
		return 2
	}
}

func validate(path string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path, os.Getenv)
	if err == nil {
		_, err = agent.Build(cfg, agent.Env{Log: slog.New(slog.DiscardHandler)})
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		var errs config.Errors
		if errors.As(err, &errs) {
			fmt.Fprintf(stderr, "%s: %d error(s)\n", path, len(errs))
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return 0
}

// runAgent runs until SIGTERM or SIGINT (or until stopAfter ends ctx when
// positive, for the demo). A second signal exits at once: checkpoints on disk
// only ever cover acknowledged data, so nothing acknowledged is lost.
func runAgent(path string, getenv func(string) string, stdout, stderr io.Writer, stopAfter stopFunc) int {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.LogLevel)
	a, err := agent.Build(cfg, agent.Env{Getenv: getenv, Stdout: stdout, Log: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		stopping := false
		for s := range sigs {
			switch {
			case s == syscall.SIGHUP && !stopping:
				go reload(path, getenv, a, log)
			case s == syscall.SIGHUP:
			case !stopping:
				stopping = true
				log.Info("stopping: draining exporters and flushing checkpoints", "signal", s.String(), "timeout", cfg.ShutdownTimeout.String())
				cancel()
			default:
				log.Warn("second signal: exiting now; unacknowledged lines will be read again on the next start", "signal", s.String())
				os.Exit(130)
			}
		}
	}()
	if stopAfter != nil {
		stopAfter(ctx, cancel)
	}
	if err := a.Run(ctx); err != nil {
		log.Error("logpump stopped with an error", "err", err)
		return 1
	}
	return 0
}

// reload re-reads the configuration file and swaps the running graph. On
// any error the running graph stays and the error is logged.
func reload(path string, getenv func(string) string, a *agent.Agent, log *slog.Logger) {
	log.Info("reloading configuration", "config", path)
	cfg, err := config.Load(path, getenv)
	if err == nil {
		err = a.Reload(cfg)
	}
	if err != nil {
		log.Error("reload failed; the running configuration stays in effect", "config", path, "err", err.Error())
	}
}

type stopFunc func(ctx context.Context, cancel context.CancelFunc)

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
