package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logpump/logpump/internal/admin"
	"github.com/logpump/logpump/internal/tap"
	"github.com/logpump/logpump/internal/testenv"
)

// logpump tap sends the admin token of -token-file; without it an admin
// server with a token refuses the tap.
func TestTapSendsToken(t *testing.T) {
	srv := httptest.NewServer(admin.New("127.0.0.1:0", admin.Options{Token: "t0k3n", Tap: tap.NewRegistry().Handler()}).Handler())
	defer srv.Close()
	file := filepath.Join(testenv.TempDir(t), "token")
	os.WriteFile(file, []byte("t0k3n\n"), 0o600)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "401 Unauthorized"},
		{[]string{"-token-file", file}, `404 Not Found: unknown tap point "x"`},
	} {
		var stdout, stderr bytes.Buffer
		code := runTap(append([]string{"-admin", srv.Listener.Addr().String(), "-stage", "x"}, tt.args...), &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("tap %v: exit %d, stderr %q; want 1 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
