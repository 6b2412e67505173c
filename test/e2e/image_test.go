package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpump/logpump/test/e2e/otlpsink"
)

// TestImageRuns runs the OCI image (the tarball named by LOGPUMP_IMAGE_TAR,
// built by packaging/image; .ci/ops.sh sets it) under podman as a
// Kubernetes node runs it: read-only root filesystem, every capability
// dropped, no privilege escalation, pod logs mounted read-only, the
// configuration mounted from a directory, checkpoints on a host directory.
// It must
//   - run as the image's non-root user (the process's uids, read from
//     /proc, and the image's configured user);
//   - deliver 10,000 numbered CRI-format lines, written while it runs, to a
//     Collector OTLP receiver: none missing, none twice;
//   - stop on SIGTERM (podman stop) with exit status 0, its checkpoint
//     saved on the host directory and owned by its user;
//   - fail to write into a root-owned directory (mode 0755, files 0644)
//     mounted read-write: a second run keeps its checkpoints in the mounted
//     log directory itself, and its write must be refused (/readyz names
//     it) with the directory left as it was.
//
// Skipped unless LOGPUMP_IMAGE_TAR is set. Needs podman and runc (see
// docs/operations.md, "The image").
func TestImageRuns(t *testing.T) {
	tarball := os.Getenv("LOGPUMP_IMAGE_TAR")
	if tarball == "" {
		t.Skip("LOGPUMP_IMAGE_TAR is not set (.ci/ops.sh sets it to the image tarball it built)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("LOGPUMP_IMAGE_TAR is set but podman is missing: %v", err)
	}
	began := time.Now()
	id := imageID(t, tarball)
	podman(t, "load", "-i", tarball)
	// Not forced: an image a container still uses stays.
	t.Cleanup(func() { exec.Command("podman", "rmi", id).Run() })
	user := strings.TrimSpace(podman(t, "image", "inspect", "--format", "{{.Config.User}}", id))
	uid, gid := imageUser(t, user)

	dir := t.TempDir()
	logs := filepath.Join(dir, "pods")
	podDir := filepath.Join(logs, "default_app-7d4b9_0f6c2a1e-5b7d-4c8e-9a3f-2d1e6b8c7a90", "app")
	state := filepath.Join(dir, "state")
	cfgDir := filepath.Join(dir, "config")
	for _, d := range []string{podDir, state, cfgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Pod logs as the kubelet leaves them: root's, readable by all.
	if err := os.Chmod(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatalf("give the checkpoint directory to the image's user: %v", err)
	}
	logFile := filepath.Join(podDir, "0.log")
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	tally := otlpsink.NewTally()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sink, err := otlpsink.Start(ctx, otlpsink.Options{OnBody: tally.AddBody})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Stop(context.Background())

	port := freePort(t)
	writeImageConfig(t, cfgDir, port, "/var/lib/logpump", sink.GRPCEndpoint())
	name := fmt.Sprintf("logpump-image-test-%d", os.Getpid())
	podmanRun(t, name, id,
		"-v", logs+":/var/log/pods:ro",
		"-v", cfgDir+":/etc/logpump:ro",
		"-v", state+":/var/lib/logpump")
	if body, ok := waitReadyz(port, func(code int, _ string) bool { return code == http.StatusOK }); !ok {
		t.Fatalf("the agent in the container did not become ready: /readyz %q\n%s", body, podmanLogs(name))
	}

	// Its process, seen from the host: no uid and no capability of root's.
	pid := strings.TrimSpace(podman(t, "inspect", "--format", "{{.State.Pid}}", name))
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatalf("read the agent's process status: %v", err)
	}
	uids := procField(string(status), "Uid:")
	capEff := procField(string(status), "CapEff:")
	if len(uids) != 4 || slices.ContainsFunc(uids, func(u string) bool { return u != strconv.Itoa(uid) }) {
		t.Errorf("the agent's process has uids %v, want all %d (the image's user %q)", uids, uid, user)
	}
	if len(capEff) != 1 || strings.Trim(capEff[0], "0") != "" {
		t.Errorf("the agent's process has effective capabilities %v, want none", capEff)
	}

	const total = 10000
	var buf []byte
	for seq := 0; seq < total; {
		buf = buf[:0]
		for end := seq + 500; seq < end; seq++ {
			buf = append(buf, "2026-12-07T10:00:00.000000000Z stdout F "...)
			buf = otlpsink.Line(buf, "image", seq, 100)
		}
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if !waitUntil(3*time.Minute, func() bool { return tally.Distinct(total) == total }) {
		t.Errorf("the receiver has %d of %d lines; %s\n%s", tally.Distinct(total), total, tally.Report(total), podmanLogs(name))
	}

	stopped := time.Now()
	podman(t, "stop", "--time", "30", name)
	stopTime := time.Since(stopped)
	code := strings.TrimSpace(podman(t, "inspect", "--format", "{{.State.ExitCode}}", name))
	if code != "0" {
		t.Errorf("exit status %s after podman stop (SIGTERM), want 0\n%s", code, podmanLogs(name))
	}
	r := tally.Report(total)
	if r.Missing != 0 || r.Duplicates != 0 || r.Unexpected != 0 {
		t.Errorf("delivery: %s", r)
	}
	if fi, err := os.Stat(filepath.Join(state, "checkpoints.bin")); err != nil {
		t.Errorf("no checkpoint on the host after the stop: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("checkpoint file owned by uid %d, want the image's %d", st.Uid, uid)
	}

	// The image's user cannot write what root owns. The log directory is
	// mounted read-write this time and is the checkpoint directory: the
	// agent's first checkpoint write there must be refused.
	before := listTree(t, logs)
	writeImageConfig(t, cfgDir, port, "/var/log/pods", sink.GRPCEndpoint())
	denied := name + "-rw"
	podmanRun(t, denied, id,
		"-v", logs+":/var/log/pods",
		"-v", cfgDir+":/etc/logpump:ro")
	body, ok := waitReadyz(port, func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "checkpoints cannot be written")
	})
	podman(t, "stop", "--time", "30", denied)
	refused := "refused"
	if !ok {
		refused = "not refused"
		t.Errorf("a run keeping checkpoints in a root-owned directory did not report the write refused: /readyz %q\n%s", body, podmanLogs(denied))
	} else if !strings.Contains(body, "permission denied") {
		refused = "failed otherwise"
		t.Errorf("checkpoint write refused for another reason than permissions: %q", body)
	}
	if after := listTree(t, logs); !slices.Equal(before, after) {
		refused = "written"
		t.Errorf("the root-owned directory changed: before %v, after %v", before, after)
	}
	summary(t, "image", "%s image=%s user=%s exit_after_sigterm=%s stop=%s write_to_root_owned=%q total=%s",
		r, id[:12], user, code, stopTime.Round(time.Millisecond), refused, time.Since(began).Round(time.Second))
}

// imageID reads the image's configuration digest (podman's image id) from
// the tarball's manifest.json, so that the test runs the image it loaded
// whatever else carries the same tag.
func imageID(t *testing.T, tarball string) string {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s: no manifest.json", tarball)
		}
		if err != nil {
			t.Fatalf("read %s: %v", tarball, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ Config string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatalf("%s: manifest.json: %v", tarball, err)
		}
		if len(m) != 1 || !strings.HasPrefix(m[0].Config, "sha256:") {
			t.Fatalf("%s: manifest.json: want one image, got %+v", tarball, m)
		}
		return strings.TrimPrefix(m[0].Config, "sha256:")
	}
}

// imageUser parses the image's "uid:gid" user; root, a name or nothing
// fail the test.
func imageUser(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	u, g, _ := strings.Cut(user, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err := errors.Join(err1, err2); err != nil || uid == 0 || gid == 0 {
		t.Fatalf("image user %q: want numeric non-root uid:gid", user)
	}
	return uid, gid
}

func podman(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("podman", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// podmanRun starts a detached container of image as a Kubernetes node
// would (see TestImageRuns) with the image's own command, and removes it
// at the end of the test.
func podmanRun(t *testing.T, name, image string, mounts ...string) {
	t.Helper()
	exec.Command("podman", "rm", "-f", name).Run() // left by an interrupted run
	args := []string{"run", "-d", "--name", name,
		// runc: crun refuses this machine's hybrid cgroups; rlimits no
		// higher than the host's.
		"--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
		"--network", "host", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}
	args = append(args, mounts...)
	podman(t, append(args, image)...)
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", name).Run() })
}

func podmanLogs(name string) string {
	out, _ := exec.Command("podman", "logs", "--tail", "30", name).CombinedOutput()
	return "agent log (tail):\n" + string(out)
}

// writeImageConfig writes the configuration the container reads at
// /etc/logpump/config.yaml: CRI lines from the pod log directory, parsed
// and given their Kubernetes attributes, to the receiver over OTLP/gRPC.
func writeImageConfig(t *testing.T, dir string, port int, stateDir, endpoint string) {
	t.Helper()
	cfg := fmt.Sprintf(`state_dir: %s
shutdown_timeout: 10s
admin: {address: 127.0.0.1:%d}
sources:
  pods:
    type: file
    include: [/var/log/pods/*/*/*.log]
    start_at: beginning
    include_file_path: true
processors:
  container: {type: container}
  pod: {type: kubernetes, node_name: node-a}
exporters:
  sink:
    type: otlp_grpc
    endpoint: %s
    tls: {insecure: true}
pipelines:
  pods: {sources: [pods], processors: [container, pod], exporters: [sink]}
`, stateDir, port, endpoint)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReadyz polls /readyz on port until done holds for its status and
// body, for up to two minutes; it returns the last body.
func waitReadyz(port int, done func(code int, body string) bool) (string, bool) {
	var last string
	ok := waitUntil(2*time.Minute, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		return done(resp.StatusCode, last)
	})
	return last, ok
}

// procField returns the fields after key in a /proc/PID/status text.
func procField(status, key string) []string {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, key); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// listTree lists the files below dir with their sizes.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d", strings.TrimPrefix(p, dir), fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
