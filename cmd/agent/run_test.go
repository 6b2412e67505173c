package main

import (
	"context"
	"testing"

	"github.com/logpump/logpump/config"
)

// The metric SDK is built when the admin server or a push can read it.
func TestNewMetricsOnlyWhenRead(t *testing.T) {
	push := config.MetricsPush{Endpoint: "127.0.0.1:4317", Insecure: true}
	want := map[string]bool{"none": false, "pprof": false, "admin": true, "push": true}
	cases := map[string]config.Admin{
		"none":  {},
		"pprof": {Pprof: true},
		"admin": {Address: "127.0.0.1:0"},
		"push":  {MetricsPush: push},
	}
	for name, adm := range cases {
		m, err := newMetrics(adm)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := m != nil; got != want[name] {
			t.Errorf("%s: metrics built: got %v, want %v", name, got, want[name])
		}
		// Nothing listens for the push: do not wait for its last export.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		m.Shutdown(ctx)
	}
}
