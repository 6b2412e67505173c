package tailer

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/internal/testenv"
	"github.com/logpump/logpump/tailer/tailertest"
)

// A matched file the agent may not open is warned about once (not at every
// scan), listed in the stats and counted; once readable it is read whole
// and leaves the list. Unprivileged, the file's mode denies the open; as
// root (whom no mode stops) the open hook answers EACCES until allowed.
func TestPermissionDeniedWarnsOnceAndIsListed(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("a file mode cannot deny reading on Windows (os.Chmod sets only the read-only attribute)")
	}
	dir := testenv.TempDir(t)
	secret, ok := filepath.Join(dir, "secret.log"), filepath.Join(dir, "ok.log")
	logs := newLogRecords(t)
	count := tailertest.NewCounter()
	opts := testOptions(filepath.Join(dir, "*.log"))
	opts.ScanInterval = 20 * time.Millisecond
	var allowed atomic.Bool
	wSecret := newWriter(t, secret, "secret")
	mustWrite(t, wSecret, 50)
	root := os.Geteuid() == 0
	if !root {
		os.Chmod(secret, 0)
	}
	h := startTailerWith(t, opts, testenv.TempDir(t), count, slog.New(logs), func(tl *Tailer) {
		if root {
			tl.open = func(path string) (*os.File, error) {
				if path == secret && !allowed.Load() {
					return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EACCES}
				}
				return openFile(path)
			}
		}
	})
	wOK := newWriter(t, ok, "ok")
	mustWrite(t, wOK, 50)
	h.waitCount(wOK.Written())
	time.Sleep(10 * opts.ScanInterval) // several scans: one warning only
	st := h.tl.Stats()
	if len(st.Unreadable) != 1 || st.Unreadable[0].Path != secret || !strings.Contains(st.Unreadable[0].Err, "permission denied") || st.UnreadableFiles != 1 {
		t.Errorf("stats: unreadable %+v, count %d; want %s (permission denied), 1", st.Unreadable, st.UnreadableFiles, secret)
	}
	if n := logs.count("cannot open matched file"); n != 1 {
		t.Errorf("warned %d times, want once; warnings %q", n, logs.msgs)
	}

	allowed.Store(true)
	if !root {
		os.Chmod(secret, 0o644)
	}
	h.waitCount(wOK.Written() + wSecret.Written())
	st = h.tl.Stats()
	h.stop()
	expect(t, count, map[string]int{"ok": wOK.Written(), "secret": wSecret.Written()}, 0)
	if len(st.Unreadable) != 0 || st.UnreadableFiles != 1 {
		t.Errorf("after chmod: unreadable %+v, count %d; want none listed, 1 counted", st.Unreadable, st.UnreadableFiles)
	}
}
