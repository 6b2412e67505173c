package tap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// DefaultRecords is how many records a request that gives no n receives.
const DefaultRecords = 10

// droppedTrailer carries the subscription's drop count after the records.
const droppedTrailer = "Logpump-Tap-Dropped"

// Handler serves GET ?stage=NAME&n=N: the next N records (default
// [DefaultRecords]) passing the tap point NAME, one JSON [Record] per line,
// flushed as they pass. The stage may be left out when only one point
// exists. The response ends after N records or when the request's context
// ends (the client leaves, the server shuts down); its trailer
// Logpump-Tap-Dropped counts records that passed while the client read too
// slowly. An unknown stage is a 404 and a bad n a 400, both with the list
// of points.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		q := req.URL.Query()
		name := q.Get("stage")
		names := r.Names()
		if name == "" && len(names) == 1 {
			name = names[0]
		}
		n := DefaultRecords
		if s := q.Get("n"); s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil {
				n = 0
			}
		}
		sub, err := r.Subscribe(name, n)
		switch {
		case errors.Is(err, ErrUnknownPoint) || name == "":
			msg := fmt.Sprintf("unknown tap point %q", name)
			if name == "" {
				msg = "give a tap point with stage="
			}
			http.Error(w, msg+"; points: "+strings.Join(names, ", "), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer sub.Close()

		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Trailer", droppedTrailer)
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush() // the client sees the subscription has started
		enc := json.NewEncoder(w)
		for rec := range sub.Records(req.Context()) {
			if enc.Encode(rec) != nil || rc.Flush() != nil {
				break
			}
		}
		w.Header().Set(droppedTrailer, strconv.FormatUint(sub.Dropped(), 10))
	})
}

// Read asks the admin server at base (e.g. "http://127.0.0.1:8686") for the
// next n records passing the tap point (empty: the only one) and calls each
// for every record as it arrives. It returns how many records the server
// dropped because they came faster than they were read. An error from each
// stops the reading and is returned.
func Read(ctx context.Context, c *http.Client, base, point string, n int, each func(Record) error) (dropped uint64, err error) {
	if c == nil {
		c = http.DefaultClient
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/debug/tap")
	if err != nil {
		return 0, fmt.Errorf("read tap: %w", err)
	}
	q := url.Values{"n": {strconv.Itoa(n)}}
	if point != "" {
		q.Set("stage", point)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("read tap: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read tap: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("read tap %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(msg)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var rec Record
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return 0, fmt.Errorf("read tap %s: %w", u.Redacted(), err)
		}
		if err := each(rec); err != nil {
			return 0, err
		}
	}
	dropped, _ = strconv.ParseUint(resp.Trailer.Get(droppedTrailer), 10, 64)
	return dropped, nil
}
