package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// demoConfig tails the demo's log directory and prints to the console.
//
//go:embed demo.yaml
var demoConfig []byte

const defaultDemoDuration = 6 * time.Second

// runDemo writes a small, varied application log into a temporary directory
// (JSON and plain lines, a stack trace, a rotation) and runs the agent on it
// with the bundled configuration, printing events to stdout. It stops
// gracefully after d (or on Ctrl-C) and reports what the checkpoint holds.
func runDemo(d time.Duration, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "logpump-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "logpump demo:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	logs := filepath.Join(dir, "logs")
	cfgPath := filepath.Join(dir, "demo.yaml")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		fmt.Fprintln(stderr, "logpump demo:", err)
		return 1
	}
	if err := os.WriteFile(cfgPath, demoConfig, 0o644); err != nil {
		fmt.Fprintln(stderr, "logpump demo:", err)
		return 1
	}
	getenv := func(k string) string {
		if k == "LOGPUMP_DEMO_DIR" {
			return dir
		}
		return os.Getenv(k)
	}
	fmt.Fprintf(stderr, "logpump demo: writing %s/app.log; events follow (the config is in %s)\n", logs, cfgPath)
	written := make(chan int, 1)
	stop := func(ctx context.Context, cancel context.CancelFunc) {
		go func() { written <- writeDemoLog(ctx, filepath.Join(logs, "app.log")) }()
		if d > 0 {
			time.AfterFunc(d, cancel)
		}
	}
	code := runAgent(cfgPath, getenv, stdout, stderr, stop, 0)
	n := <-written
	fmt.Fprintf(stderr, "logpump demo: wrote %d lines; checkpoints after a graceful stop:\n", n)
	_ = writeCheckpoints(stderr, filepath.Join(dir, "state"))
	return code
}

var demoLines = []string{
	`{"time":"%s","level":"info","msg":"request served","method":"GET","path":"/api/orders","status":200,"duration_ms":12.5}`,
	`%s WARN  cache: eviction rate high (ratio=0.82)`,
	`{"time":"%s","level":"error","msg":"payment declined","order_id":"A-1042","card":"4111 1111 1111 1111"}`,
	`%s ERROR worker: job failed
java.lang.IllegalStateException: queue closed
	at com.example.Worker.run(Worker.java:42)
	at java.base/java.lang.Thread.run(Thread.java:1583)`,
	`{"time":"%s","level":"debug","msg":"heartbeat","seq":%d}`,
}

// writeDemoLog appends demo lines until ctx ends, renaming the file once
// halfway (rotation), and returns how many lines it wrote.
func writeDemoLog(ctx context.Context, path string) int {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0
	}
	defer func() { f.Close() }()
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for i := 0; ; i++ {
		now := time.Now().UTC().Format(time.RFC3339Nano)
		line := demoLines[i%len(demoLines)]
		if i%len(demoLines) == len(demoLines)-1 {
			line = fmt.Sprintf(line, now, i)
		} else {
			line = fmt.Sprintf(line, now)
		}
		fmt.Fprintln(f, line)
		n += 1 + strings.Count(line, "\n")
		if i == 8 { // rotate: rename and start a new file, as logrotate's create mode does
			f.Close()
			os.Rename(path, path+".1")
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
				return n
			}
		}
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
	}
}
