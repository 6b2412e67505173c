package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// staticBinary builds a tiny static program to stand in for the agent.
func staticBinary(t *testing.T) string { return staticBinaryFor(t, "amd64") }

// staticBinaryFor builds the stand-in for GOARCH arch.
func staticBinaryFor(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"ok\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "logpump")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stand-in binary: %v\n%s", err, out)
	}
	return bin
}

func options(t *testing.T, bin string) Options {
	return Options{
		Binary: bin, CABundle: "/etc/ssl/certs/ca-certificates.crt", Config: "../config.yaml",
		Version: "1.2.3", Arch: "amd64", Repo: "example.test/logpump", Created: time.Unix(1700000000, 0).UTC(),
	}
}

func TestBuildWritesVerifiedReproducibleTarball(t *testing.T) {
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err != nil {
		t.Fatalf("CA bundle missing (install Debian's ca-certificates): %v", err)
	}
	o := options(t, staticBinary(t))
	dir := t.TempDir()
	var digests []string
	for _, out := range []string{filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")} {
		if err := run(o, out); err != nil {
			t.Fatalf("run: %v", err)
		}
		tag, _ := name.NewTag("example.test/logpump:1.2.3")
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatalf("read %s: %v", out, err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())

		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cf.Config.User, "65532:65532"; got != want {
			t.Errorf("user: got %q, want %q", got, want)
		}
		if got, want := strings.Join(cf.Config.Entrypoint, " "), "/usr/bin/logpump"; got != want {
			t.Errorf("entrypoint: got %q, want %q", got, want)
		}
		if got, want := cf.Config.Labels["org.opencontainers.image.version"], "1.2.3"; got != want {
			t.Errorf("version label: got %q, want %q", got, want)
		}
		files, err := layerFiles(img)
		if err != nil {
			t.Fatal(err)
		}
		bin, _ := os.ReadFile(o.Binary)
		if got := files["usr/bin/logpump"]; string(got.data) != string(bin) || got.mode != 0o755 {
			t.Errorf("usr/bin/logpump: got mode %o and %d bytes, want 755 and the binary's %d bytes", got.mode, len(got.data), len(bin))
		}
		if got, want := files["var/lib/logpump"].uid, 65532; got != want {
			t.Errorf("var/lib/logpump owner: got %d, want %d", got, want)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same inputs: got digests %s and %s, want equal", digests[0], digests[1])
	}
}

func TestBuildRejectsBadInputs(t *testing.T) {
	bin := staticBinary(t)
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("no certificates here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dynamic, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		change    func(*Options)
		wantError string
	}{
		{"dynamically linked binary", func(o *Options) { o.Binary = dynamic }, "statically linked"},
		{"not an executable", func(o *Options) { o.Binary = "../config.yaml" }, "statically linked"},
		{"CA bundle without certificates", func(o *Options) { o.CABundle = empty }, "holds no certificate"},
		{"missing config", func(o *Options) { o.Config = "nonexistent.yaml" }, "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options(t, bin)
			tt.change(&o)
			_, err := Build(o)
			if err == nil || !strings.Contains(err.Error(), tt.wantError) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantError)
			}
		})
	}
}

func TestVerifyRejectsRootUser(t *testing.T) {
	img, err := Build(options(t, staticBinary(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkContents(img); err != nil {
		t.Fatalf("check built image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.User = "0"
	root, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkContents(root); err == nil || !strings.Contains(err.Error(), "non-root") {
		t.Fatalf("check image running as root: got %v, want a non-root error", err)
	}
}
