package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"

	"github.com/logpump/logpump/config"
	"github.com/logpump/logpump/internal/tap"
)

// runTap prints the next records passing a tap point of a running agent,
// read from its admin server. It does not disturb the pipeline: records that
// pass while the terminal is slow are dropped from the sample and counted.
func runTap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("logpump tap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", "127.0.0.1:8686", "the agent's admin address (admin.address in its config)")
	stage := fs.String("stage", "", "tap point, e.g. source/app or processor/parse (empty: the only one)")
	n := fs.Int("n", tap.DefaultRecords, "how many records to print")
	tokenFile := fs.String("token-file", "", "file holding the admin server's bearer token (admin.token_file in its config)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client := http.DefaultClient
	if *tokenFile != "" {
		token, err := config.Admin{TokenFile: *tokenFile}.Token()
		if err != nil {
			fmt.Fprintln(stderr, "logpump tap:", err)
			return 1
		}
		client = &http.Client{Transport: bearerTransport{token: token, next: http.DefaultTransport}}
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	enc := json.NewEncoder(stdout)
	dropped, err := tap.Read(ctx, client, base, *stage, *n, func(r tap.Record) error {
		return enc.Encode(r)
	})
	if dropped > 0 {
		fmt.Fprintf(stderr, "logpump tap: %d records passed while the output was busy and are not shown\n", dropped)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "logpump tap:", err)
		return 1
	}
	return 0
}

// bearerTransport adds the admin server's bearer token to every request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}
