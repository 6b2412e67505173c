// Command image builds logpump's container image without a container
// engine: one layer on an empty base holding the static agent binary, the CA
// certificates of the build host (Debian's ca-certificates bundle), the
// shipped configuration, and passwd and group entries for the non-root user
// the image runs as. The image is written as a tarball that "docker load",
// "podman load", "ctr images import" and "crane push" accept.
//
// Usage:
//
//	go run . -binary ../../dist/logpump -version 0.1.0 -out logpump.tar
//	go run . -platforms amd64=dist/logpump-amd64,arm64=dist/logpump-arm64 -version 0.1.0 -index-out logpump-index.tar
//
// With -index-out, one image per architecture is built and they are written
// together as a multi-architecture image index in an OCI image layout
// archive ("podman load -i", "skopeo copy oci-archive:...", or "crane push"
// of the unpacked layout); each manifest's platform is linux/ARCH.
//
// The build is reproducible: file times and the creation time are fixed
// (SOURCE_DATE_EPOCH when set), so the same inputs give the same digest.
// After writing, the tarball is read back and checked (see [verify]).
package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The user the image runs as. 65532 is the conventional "nonroot" id of
// minimal images, so volume permissions carry over between them.
const (
	uid      = 65532
	user     = "logpump"
	binPath  = "usr/bin/logpump"
	caPath   = "etc/ssl/certs/ca-certificates.crt"
	cfgPath  = "etc/logpump/config.yaml"
	stateDir = "var/lib/logpump"
)

// Options say what goes into the image.
type Options struct {
	Binary   string // agent binary, statically linked
	CABundle string // PEM bundle of CA certificates
	Config   string // default configuration
	Version  string
	Arch     string // GOARCH
	Repo     string // repository the tarball is tagged with
	Created  time.Time
}

func main() {
	o := Options{}
	flag.StringVar(&o.Binary, "binary", "logpump", "agent `binary` (CGO_ENABLED=0)")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates `file` (Debian's ca-certificates)")
	flag.StringVar(&o.Config, "config", "../config.yaml", "default configuration `file`")
	flag.StringVar(&o.Version, "version", "0.1.0", "image `version` (tag and label)")
	flag.StringVar(&o.Arch, "arch", "amd64", "GOARCH of the binary")
	flag.StringVar(&o.Repo, "repo", "ghcr.io/logpump/logpump", "`repository` to tag the image with")
	out := flag.String("out", "logpump-image.tar", "output tarball `file`")
	platforms := flag.String("platforms", "", "`arch=binary,...`: build an image per architecture for -index-out")
	indexOut := flag.String("index-out", "", "write a multi-architecture image index as an OCI layout archive to this `file`")
	flag.Parse()

	o.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fatal(fmt.Errorf("parse SOURCE_DATE_EPOCH: %w", err))
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	if *indexOut != "" {
		bins, err := parsePlatforms(*platforms)
		if err != nil {
			fatal(err)
		}
		if err := runIndex(o, bins, *indexOut); err != nil {
			fatal(err)
		}
		return
	}
	if err := run(o, *out); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}

func run(o Options, out string) error {
	img, err := Build(o)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(o.Repo + ":" + o.Version)
	if err != nil {
		return fmt.Errorf("parse tag: %w", err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image tarball: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	back, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		return fmt.Errorf("read image tarball back: %w", err)
	}
	if err := verify(back); err != nil {
		return fmt.Errorf("verify %s: %w", out, err)
	}
	digest, err := back.Digest()
	if err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s (%d bytes)\n", out, tag, digest, st.Size())
	return nil
}

// Build assembles the image. It reads the input files and does no other I/O.
func Build(o Options) (v1.Image, error) {
	layer, err := rootLayer(o)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "logpump image builder",
			Comment:   "agent binary, CA certificates, default configuration, non-root user",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: o.Created}
	cf.OS = "linux"
	cf.Architecture = o.Arch
	if o.Arch == "arm64" {
		cf.Variant = "v8" // as the index's platform says
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{"/" + binPath},
		Cmd:        []string{"run", "-config", "/" + cfgPath},
		WorkingDir: "/" + stateDir,
		Env: []string{
			"PATH=/usr/bin",
			"SSL_CERT_FILE=/" + caPath,
		},
		ExposedPorts: map[string]struct{}{"8686/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "logpump",
			"org.opencontainers.image.description": "On-host log shipping agent",
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.source":      "https://github.com/logpump/logpump",
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set image config: %w", err)
	}
	return img, nil
}

// rootLayer builds the image's only layer as an uncompressed tar in memory.
func rootLayer(o Options) (v1.Layer, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	if !isStaticELF(bin) {
		return nil, fmt.Errorf("binary %s: want a statically linked ELF executable (CGO_ENABLED=0); the image has no C library", o.Binary)
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("CA bundle %s holds no certificate", o.CABundle)
	}
	cfg, err := os.ReadFile(o.Config)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/%s:/sbin/nologin\n", user, uid, uid, user, stateDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", user, uid)
	// Go reads nsswitch.conf for the order of host lookups.
	nsswitch := "hosts: files dns\n"

	entries := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/logpump/", mode: 0o755},
		{name: cfgPath, mode: 0o644, data: cfg},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte(nsswitch)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: caPath, mode: 0o644, data: ca},
		{name: "tmp/", mode: 0o1777},
		{name: "usr/", mode: 0o755},
		{name: "usr/bin/", mode: 0o755},
		{name: binPath, mode: 0o755, data: bin},
		{name: "var/", mode: 0o755},
		{name: "var/lib/", mode: 0o755},
		{name: stateDir + "/", mode: 0o750, uid: uid},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := e.write(tw, o.Created); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// entry is a file or, when its name ends in "/", a directory of the layer.
type entry struct {
	name string
	mode int64
	uid  int
	data []byte
}

func (e entry) write(tw *tar.Writer, mtime time.Time) error {
	h := &tar.Header{
		Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid,
		ModTime: mtime, Format: tar.FormatPAX,
	}
	if strings.HasSuffix(e.name, "/") {
		h.Typeflag = tar.TypeDir
	} else {
		h.Typeflag = tar.TypeReg
		h.Size = int64(len(e.data))
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(e.data)
	return err
}

// machines maps GOARCH to the ELF machine of its executables.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// elfMachine is the machine b is an ELF executable for, or EM_NONE.
func elfMachine(b []byte) elf.Machine {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return elf.EM_NONE
	}
	defer f.Close()
	return f.Machine
}

// isStaticELF reports whether b is an ELF executable without a program
// interpreter, the dynamic loader a dynamically linked program needs.
func isStaticELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// verify checks an image read back from its tarball: every digest matches
// its content, and the contents are what users rely on (see checkContents).
func verify(img v1.Image) error {
	if err := validate.Image(img); err != nil {
		return fmt.Errorf("image is inconsistent: %w", err)
	}
	return checkContents(img)
}

// checkContents checks for a non-root user that exists in /etc/passwd, an
// executable entrypoint, a CA bundle Go can load, the configuration the
// default command names, and a state directory the user owns.
func checkContents(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	files, err := layerFiles(img)
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	u, _, _ := strings.Cut(cf.Config.User, ":")
	if n, err := strconv.Atoi(u); err != nil || n == 0 {
		fail("user %q: want a numeric non-root uid", cf.Config.User)
	} else if !strings.Contains(string(files["etc/passwd"].data), fmt.Sprintf(":x:%d:", n)) {
		fail("user %d has no /etc/passwd entry", n)
	}
	if len(cf.Config.Entrypoint) == 0 {
		fail("no entrypoint")
	} else if f, ok := files[strings.TrimPrefix(cf.Config.Entrypoint[0], "/")]; !ok || f.mode&0o111 == 0 {
		fail("entrypoint %s: not an executable file in the image", cf.Config.Entrypoint[0])
	} else if m, want := elfMachine(f.data), machines[cf.Architecture]; m != want {
		fail("entrypoint %s: an ELF executable for %v, want %v (architecture %s)", cf.Config.Entrypoint[0], m, want, cf.Architecture)
	}
	if f, ok := files[caPath]; !ok || !x509.NewCertPool().AppendCertsFromPEM(f.data) {
		fail("%s: no CA certificates", caPath)
	}
	if _, ok := files[cfgPath]; !ok {
		fail("%s: missing", cfgPath)
	}
	if f, ok := files[stateDir]; !ok || f.uid == 0 {
		fail("%s: want a directory owned by the image's user", stateDir)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		fail("platform %s/%s: want linux and an architecture", cf.OS, cf.Architecture)
	}
	return errors.Join(errs...)
}

type file struct {
	mode int64
	uid  int
	data []byte
}

// layerFiles reads the image's flattened file system, keyed by path
// without a leading "/" or a trailing one.
func layerFiles(img v1.Image) (map[string]file, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read image files: %w", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read image files: %w", err)
		}
		files[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = file{mode: h.Mode, uid: h.Uid, data: data}
	}
}
