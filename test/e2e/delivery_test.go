package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestDelivery: lines written before the start and appended while the agent
// runs arrive once each, over OTLP/gRPC and OTLP/HTTP, with the line as the
// body, the file as attributes and the configured resource. Both command
// lines (`logpump run -config`, `logpump -config`) and both stop signals
// (SIGTERM, SIGINT) are used, and each compression (gzip is the default).
// One file appears while the agent runs.
func TestDelivery(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	const (
		before  = 2000
		total   = 20000
		perSec  = 20000
		lineLen = 120
		// Lines written to a file created after the agent started.
		lateLines = 3000
	)
	tests := []struct {
		protocol    string
		compression string
		run         bool           // start with `logpump run -config` rather than `logpump -config`
		stop        syscall.Signal // the graceful stop
	}{
		{protocol: "grpc", run: true, stop: syscall.SIGTERM},
		{protocol: "http", run: false, stop: syscall.SIGINT},
		{protocol: "grpc", compression: "zstd", run: true, stop: syscall.SIGTERM},
		{protocol: "http", compression: "none", run: true, stop: syscall.SIGTERM},
	}
	for _, tt := range tests {
		protocol := tt.protocol
		name := protocol
		if tt.compression != "" {
			name += "-" + tt.compression
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, setup{
				protocol:      protocol,
				compression:   tt.compression,
				extraResource: map[string]string{"deployment.environment.name": "e2e-" + protocol},
			})
			s := e.newStream("delivery-"+name, lineLen, "a.log", "b.log")
			if err := s.write(before); err != nil {
				t.Fatal(err)
			}
			args := []string{"-config", e.cfgPath}
			if tt.run {
				args = append([]string{"run"}, args...)
			}
			p := e.startArgs(args...)
			// A file that appears while the agent runs.
			late := e.newStream("late-"+name, lineLen+7, "c.log")
			if err := late.write(lateLines); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.pace(ctx, total, perSec); err != nil {
				t.Fatal(err)
			}
			if !waitUntil(30*time.Second, func() bool { return e.sink.Stats().Records >= total+lateLines }) {
				t.Errorf("after 30s the sink has %d records, want %d", e.sink.Stats().Records, total+lateLines)
			}
			// After a clean stop nothing more can arrive: the counts are final.
			took := p.stopWith(tt.stop, 10*time.Second)

			streams := []struct {
				s     *stream
				tally *otlpsink.Tally
			}{{s, otlpsink.NewTally()}, {late, otlpsink.NewTally()}}
			wrong := 0
			check := func(format string, args ...any) {
				if wrong++; wrong <= 10 {
					t.Errorf(format, args...)
				}
			}
			want := map[string]any{"host.name": host, "service.name": "e2e", "deployment.environment.name": "e2e-" + protocol}
			var attrKeys, resKeys []string
		records:
			for i, r := range e.sink.Records() {
				for _, st := range streams {
					if !strings.HasPrefix(r.Body, st.s.tag+" ") {
						continue
					}
					st.tally.AddBody(r.Body)
					s := st.s
					seq, ok := otlpsink.ParseSeq(r.Body)
					if !ok || seq >= s.written() {
						check("record %d: body %q has no sequence number that was written", i, r.Body)
						continue records
					}
					if i == 0 {
						attrKeys, resKeys = keys(r.Attributes), keys(r.Resource)
					}
					if r.BodyType != "Str" {
						check("%s seq %d: body type = %s, want Str", s.tag, seq, r.BodyType)
					}
					if got, want := r.Body, s.line(seq); got != want {
						check("%s seq %d: body = %q, want %q", s.tag, seq, got, want)
					}
					path := s.fileOf(seq)
					if got := r.Attributes["log.file.path"]; got != path {
						check("%s seq %d: attribute log.file.path = %v, want %q", s.tag, seq, got, path)
					}
					if got, want := r.Attributes["log.file.name"], filepath.Base(path); got != want {
						check("%s seq %d: attribute log.file.name = %v, want %q", s.tag, seq, got, want)
					}
					for k, v := range want {
						if got := r.Resource[k]; got != v {
							check("%s seq %d: resource attribute %s = %v, want %v", s.tag, seq, k, got, v)
						}
					}
					continue records
				}
				check("record %d: body %q is from no file the test wrote", i, r.Body)
			}
			rep, lateRep := streams[0].tally.Report(total), streams[1].tally.Report(lateLines)
			summary(t, "delivery-"+name, "%v late_file: %v stop_seconds=%.2f attributes=%v resource=%v",
				rep, lateRep, took.Seconds(), attrKeys, resKeys)
			for _, r := range []otlpsink.Report{rep, lateRep} {
				if r.Missing != 0 || r.Duplicates != 0 || r.Unexpected != 0 {
					t.Errorf("want every line exactly once: %v", r)
				}
			}
			if wrong > 10 {
				t.Errorf("%d records were wrong (first 10 shown)", wrong)
			}
		})
	}
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
