package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/logpump/logpump/bench/workload"
)

// target is what one run asks of an agent: which files to read, where to
// keep state, where to send, and how.
type target struct {
	Dir         string // the run's directory: configs and logs go here
	Include     string // glob of the input files
	StateDir    string // empty at the start of the run
	Format      workload.Format
	Compression string // none, gzip, zstd
	Protocol    string // grpc, http
	GRPCAddr    string // the sink, host:port
	HTTPAddr    string
	// GRPCAddrs and HTTPAddrs, when set, are several endpoints of the
	// sink (the first is GRPCAddr, HTTPAddr) for logpump's endpoints.
	GRPCAddrs, HTTPAddrs []string
	Batch                int
	// Journal, when set, is a directory of journal files read from the
	// beginning instead of Include, selecting entries of JournalPriority
	// or more severe; Reader is logpump's journald reader option.
	Journal, JournalPriority, Reader string
}

// agent is a log agent the harness can run: it writes its configuration
// for a target and returns the command line to start it.
type agent struct {
	Name    string
	Command func(t target) ([]string, error)
}

func (h *harness) agentByName(name string) (agent, error) {
	switch name {
	case "logpump":
		return agent{Name: name, Command: h.logpumpCommand}, nil
	case "otelcol":
		return agent{Name: name, Command: h.otelcolCommand}, nil
	}
	return agent{}, fmt.Errorf("unknown agent %q (want logpump or otelcol)", name)
}

// logpumpCommand writes logpump.yaml for t.
func (h *harness) logpumpCommand(t target) ([]string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %s\n", t.StateDir)
	b.WriteString("shutdown_timeout: 10s\nlog_level: warn\n")
	fmt.Fprintf(&b, "checkpoints: {flush_interval: 1s, max_in_flight: %s}\n", h.cfg.LogpumpInFlight)
	if t.Journal != "" {
		fmt.Fprintf(&b, "sources:\n  app:\n    type: journald\n    directory: %q\n    start_at: beginning\n", t.Journal)
		fmt.Fprintf(&b, "    priority: %s\n", t.JournalPriority)
		if t.Reader != "" {
			fmt.Fprintf(&b, "    reader: %s\n", t.Reader)
		}
	} else {
		b.WriteString("sources:\n  app:\n    type: file\n")
		fmt.Fprintf(&b, "    include: [%q]\n    start_at: beginning\n", t.Include)
	}
	if h.cfg.LogpumpSourceExtra != "" {
		fmt.Fprintf(&b, "    %s\n", h.cfg.LogpumpSourceExtra)
	}
	var procs string
	switch t.Format {
	case workload.JSON:
		procs = h.cfg.LogpumpJSON
	case workload.CRI:
		procs = h.cfg.LogpumpCRI
	}
	if procs != "" {
		fmt.Fprintf(&b, "processors:\n  parse: {type: %s}\n", procs)
	}
	b.WriteString("exporters:\n  sink:\n")
	switch {
	case t.Protocol == "http" && len(t.HTTPAddrs) > 0:
		fmt.Fprintf(&b, "    type: otlp_http\n    endpoints: [http://%s]\n", strings.Join(t.HTTPAddrs, ", http://"))
	case t.Protocol == "http":
		fmt.Fprintf(&b, "    type: otlp_http\n    endpoint: http://%s\n", t.HTTPAddr)
	case len(t.GRPCAddrs) > 0:
		fmt.Fprintf(&b, "    type: otlp_grpc\n    endpoints: [%s]\n", strings.Join(t.GRPCAddrs, ", "))
	default:
		fmt.Fprintf(&b, "    type: otlp_grpc\n    endpoint: %s\n", t.GRPCAddr)
	}
	b.WriteString("    tls: {insecure: true}\n")
	fmt.Fprintf(&b, "    compression: %s\n", t.Compression)
	fmt.Fprintf(&b, "    batch: {max_records: %d, timeout: 200ms}\n", t.Batch)
	if h.cfg.LogpumpExporterExtra != "" {
		fmt.Fprintf(&b, "    %s\n", h.cfg.LogpumpExporterExtra)
	}
	b.WriteString("pipelines:\n  main: {sources: [app], ")
	if procs != "" {
		b.WriteString("processors: [parse], ")
	} else {
		b.WriteString("processors: [], ")
	}
	b.WriteString("exporters: [sink]}\n")

	path := filepath.Join(t.Dir, "logpump.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return []string{h.cfg.Logpump, "run", "-config", path}, nil
}

// otelcolCommand writes otelcol.yaml for t: the filelog receiver (or, for
// a journal, the journald receiver) with file_storage checkpoints, the
// batch processor at t.Batch records and the otlp exporter, the
// configuration logpump is compared with.
func (h *harness) otelcolCommand(t target) ([]string, error) {
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "extensions:\n  file_storage:\n    directory: %s\n", t.StateDir)
	receiver := "file_log"
	if t.Journal != "" {
		receiver = "journald"
		fmt.Fprintf(&b, "receivers:\n  journald:\n    directory: %q\n    priority: %s\n", t.Journal, t.JournalPriority)
	} else {
		b.WriteString("receivers:\n  file_log:\n    include:\n")
		fmt.Fprintf(&b, "      - %q\n", t.Include)
	}
	b.WriteString("    start_at: beginning\n    storage: file_storage\n")
	switch t.Format {
	case workload.JSON:
		b.WriteString("    operators:\n      - type: json_parser\n")
	case workload.CRI:
		b.WriteString("    operators:\n      - type: container\n        format: containerd\n        add_metadata_from_filepath: false\n")
	}
	fmt.Fprintf(&b, "processors:\n  batch:\n    send_batch_size: %d\n    send_batch_max_size: %d\n    timeout: 200ms\n", t.Batch, t.Batch)
	b.WriteString("exporters:\n")
	exporter := "otlp_grpc"
	if t.Protocol == "http" {
		exporter = "otlp_http"
		fmt.Fprintf(&b, "  otlp_http:\n    endpoint: http://%s\n    encoding: proto\n", t.HTTPAddr)
	} else {
		fmt.Fprintf(&b, "  otlp_grpc:\n    endpoint: %s\n    tls:\n      insecure: true\n", t.GRPCAddr)
	}
	fmt.Fprintf(&b, "    compression: %s\n", t.Compression)
	b.WriteString("service:\n  extensions: [file_storage]\n  telemetry:\n    logs:\n      level: warn\n")
	fmt.Fprintf(&b, "    metrics:\n      level: normal\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: %d\n", metricsPort)
	fmt.Fprintf(&b, "  pipelines:\n    logs:\n      receivers: [%s]\n      processors: [batch]\n      exporters: [%s]\n", receiver, exporter)

	path := filepath.Join(t.Dir, "otelcol.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return []string{h.cfg.Otelcol, "--config", "file:" + path}, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
