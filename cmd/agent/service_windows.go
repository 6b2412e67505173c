package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// serviceName names the Windows service and its Event Log source.
const serviceName = "logpump"

// defaultConfig is where `logpump run` and the service read their
// configuration unless -config says otherwise.
var defaultConfig = filepath.Join(programData(), "logpump", "config.yaml")

func programData() string {
	if d := os.Getenv("ProgramData"); d != "" {
		return d
	}
	return `C:\ProgramData`
}

// serviceStopWait is how long `logpump service stop` and uninstall wait for
// the service to report it stopped: the agent drains for at most
// shutdown_timeout (10s by default).
const serviceStopWait = 60 * time.Second

const serviceUsage = `usage: logpump service install [-config FILE] [-log FILE]
       logpump service uninstall | start | stop`

// runService manages the Windows service (install, uninstall, start, stop)
// and is the service's own entry point (run, called by the service control
// manager with the arguments install registered).
func runService(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, serviceUsage)
		return 2
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("logpump service "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfig, "configuration file")
	logPath := fs.String("log", filepath.Join(programData(), "logpump", "logpump.log"), "the agent's log file (JSON lines, appended)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch verb {
	case "install":
		err = installService(*cfgPath, *logPath)
	case "uninstall":
		err = uninstallService()
	case "start":
		err = startService()
	case "stop":
		err = stopService()
	case "run":
		return runAsService(*cfgPath, *logPath, stderr)
	default:
		fmt.Fprintf(stderr, "logpump service: unknown command %q\n%s\n", verb, serviceUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "logpump service %s: %v\n", verb, err)
		return 1
	}
	fmt.Fprintf(stdout, "logpump service %s: done\n", verb)
	return 0
}

// installService registers the service to start at boot as LocalSystem,
// restarting after a failure, with absolute paths to the configuration and
// log file, and registers the Event Log source.
func installService(cfgPath, logPath string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if cfgPath, err = filepath.Abs(cfgPath); err != nil {
		return err
	}
	if logPath, err = filepath.Abs(logPath); err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return fmt.Errorf("service %s is already installed", serviceName)
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName: "logpump log agent",
		Description: "Tails log files and forwards them to OpenTelemetry (OTLP) endpoints.",
		StartType:   mgr.StartAutomatic,
	}, "service", "run", "-config", cfgPath, "-log", logPath)
	if err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	defer s.Close()
	restart := []mgr.RecoveryAction{{Type: mgr.ServiceRestart, Delay: 5 * time.Second}}
	if err := s.SetRecoveryActions(restart, uint32((24 * time.Hour).Seconds())); err != nil {
		s.Delete()
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		s.Delete()
		return fmt.Errorf("register the Event Log source: %w", err)
	}
	return nil
}

func uninstallService() error {
	return withService(func(s *mgr.Service) error {
		if st, err := s.Query(); err == nil && st.State != svc.Stopped {
			if err := controlAndWait(s, svc.Stop, svc.Stopped); err != nil {
				return err
			}
		}
		if err := s.Delete(); err != nil {
			return fmt.Errorf("delete service: %w", err)
		}
		return eventlog.Remove(serviceName)
	})
}

func startService() error {
	return withService(func(s *mgr.Service) error {
		if err := s.Start(); err != nil {
			return err
		}
		return waitState(s, svc.Running)
	})
}

func stopService() error {
	return withService(func(s *mgr.Service) error { return controlAndWait(s, svc.Stop, svc.Stopped) })
}

func withService(f func(*mgr.Service) error) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		return fmt.Errorf("open service %s: %w", serviceName, err)
	}
	defer s.Close()
	return f(s)
}

func controlAndWait(s *mgr.Service, c svc.Cmd, want svc.State) error {
	if _, err := s.Control(c); err != nil {
		return err
	}
	return waitState(s, want)
}

func waitState(s *mgr.Service, want svc.State) error {
	deadline := time.Now().Add(serviceStopWait)
	for {
		st, err := s.Query()
		if err != nil {
			return err
		}
		if st.State == want {
			return nil
		}
		if want == svc.Running && st.State == svc.Stopped {
			return errors.New("the service stopped at once: see the Event Log and the agent's log file")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still in state %d after %v", st.State, serviceStopWait)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// runAsService runs the agent under the service control manager. A stop or
// shutdown request does what SIGTERM does on Linux: stop reading, drain for
// at most shutdown_timeout, write the checkpoints. Start, stop and failure
// are reported to the Event Log; the agent's own JSON log goes to logPath.
func runAsService(cfgPath, logPath string, stderr io.Writer) int {
	elog, err := eventlog.Open(serviceName)
	if err != nil {
		elog = nil // reports go to the log file only
	}
	h := &serviceHandler{cfgPath: cfgPath, logPath: logPath, elog: elog}
	if err := svc.Run(serviceName, h); err != nil {
		if errors.Is(err, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
			fmt.Fprintln(stderr, "logpump service run: not started by the service control manager (use `logpump service start`, or `logpump run` in a console)")
			return 2
		}
		h.report(eventlog.Error, fmt.Sprintf("service failed: %v", err))
		fmt.Fprintf(stderr, "logpump service run: %v\n", err)
		return 1
	}
	return h.code
}

type serviceHandler struct {
	cfgPath, logPath string
	elog             *eventlog.Log
	code             int
}

func (h *serviceHandler) report(kind int, msg string) {
	if h.elog == nil {
		return
	}
	switch kind {
	case eventlog.Error:
		h.elog.Error(1, msg)
	case eventlog.Warning:
		h.elog.Warning(1, msg)
	default:
		h.elog.Info(1, msg)
	}
}

// Execute is called by svc.Run; its return ends the service.
func (h *serviceHandler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	if err := os.MkdirAll(filepath.Dir(h.logPath), 0o750); err != nil {
		h.report(eventlog.Error, fmt.Sprintf("create log directory: %v", err))
		return true, 1
	}
	logFile, err := os.OpenFile(h.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		h.report(eventlog.Error, fmt.Sprintf("open log file: %v", err))
		return true, 1
	}
	defer logFile.Close()
	out := &lockedWriter{w: logFile}

	stop := make(chan struct{})
	var stopOnce sync.Once
	done := make(chan int, 1)
	go func() {
		done <- runAgent(h.cfgPath, os.Getenv, out, out, func(ctx context.Context, cancel context.CancelFunc) {
			go func() {
				select {
				case <-stop:
					cancel()
				case <-ctx.Done():
				}
			}()
		}, 0)
	}()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	h.report(eventlog.Info, fmt.Sprintf("logpump %s started (config %s, log %s)", buildVersion(), h.cfgPath, h.logPath))
	for {
		select {
		case code := <-done:
			h.code = code
			if code != 0 {
				h.report(eventlog.Error, fmt.Sprintf("logpump stopped with exit code %d: see %s", code, h.logPath))
				return true, uint32(code)
			}
			h.report(eventlog.Info, "logpump stopped; checkpoints written")
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				// WaitHint covers the default shutdown_timeout and
				// the checkpoint write.
				status <- svc.Status{State: svc.StopPending, WaitHint: 30000}
				stopOnce.Do(func() { close(stop) })
			}
		}
	}
}

// lockedWriter serialises the agent's stdout and stderr into one file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
