package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// refName is the annotation an OCI layout names an index's tag with.
const refName = "org.opencontainers.image.ref.name"

// parsePlatforms reads -platforms: "amd64=path,arm64=path".
func parsePlatforms(s string) (map[string]string, error) {
	bins := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		arch, bin, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || arch == "" || bin == "" {
			return nil, fmt.Errorf("-platforms %q: want arch=binary[,arch=binary...]", s)
		}
		if _, known := machines[arch]; !known {
			return nil, fmt.Errorf("-platforms: unknown architecture %q", arch)
		}
		bins[arch] = bin
	}
	return bins, nil
}

// BuildIndex builds one image per architecture (o with its Arch and Binary)
// and an OCI image index holding them, each manifest with its platform.
func BuildIndex(o Options, bins map[string]string) (v1.ImageIndex, error) {
	archs := make([]string, 0, len(bins))
	for a := range bins {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range archs {
		oa := o
		oa.Arch, oa.Binary = arch, bins[arch]
		img, err := Build(oa)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arch, err)
		}
		p := &v1.Platform{OS: "linux", Architecture: arch}
		if arch == "arm64" {
			p.Variant = "v8"
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return idx, nil
}

// runIndex writes the index as an OCI layout archive to out, reads it back
// and verifies it (see verifyIndex).
func runIndex(o Options, bins map[string]string, out string) error {
	idx, err := BuildIndex(o, bins)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write OCI layout: %w", err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refName: o.Version})); err != nil {
		return fmt.Errorf("write OCI layout: %w", err)
	}
	got, err := readIndex(dir)
	if err != nil {
		return err
	}
	if err := verifyIndex(got, bins); err != nil {
		return fmt.Errorf("verify %s: %w", out, err)
	}
	if err := tarDir(dir, out, o.Created); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	d, err := got.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s:%s index %s (%s)\n", out, o.Repo, o.Version, d, strings.Join(sortedKeys(bins), ", "))
	return nil
}

// readIndex returns the index the layout at dir names (its only entry).
func readIndex(dir string) (v1.ImageIndex, error) {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout: %w", err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 || m.Manifests[0].MediaType != types.OCIImageIndex {
		return nil, fmt.Errorf("OCI layout: want one image index, got %d entries", len(m.Manifests))
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}

// verifyIndex checks an index read back: every digest matches its content,
// there is one manifest per architecture built, each manifest's platform is
// its image's (linux, the config's architecture), and each image passes
// checkContents (which also checks that the binary is an executable for
// that architecture).
func verifyIndex(idx v1.ImageIndex, bins map[string]string) error {
	if err := validate.Index(idx); err != nil {
		return fmt.Errorf("index is inconsistent: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			errs = append(errs, fmt.Errorf("manifest %s: no platform", d.Digest))
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		if d.Platform.OS != cf.OS || d.Platform.Architecture != cf.Architecture {
			errs = append(errs, fmt.Errorf("manifest %s: platform %s/%s, its image is %s/%s",
				d.Digest, d.Platform.OS, d.Platform.Architecture, cf.OS, cf.Architecture))
		}
		if err := checkContents(img); err != nil {
			errs = append(errs, fmt.Errorf("%s image: %w", d.Platform.Architecture, err))
		}
		seen[d.Platform.Architecture] = true
	}
	for arch := range bins {
		if !seen[arch] {
			errs = append(errs, fmt.Errorf("no manifest for %s", arch))
		}
	}
	if len(m.Manifests) != len(bins) {
		errs = append(errs, fmt.Errorf("%d manifests, want %d", len(m.Manifests), len(bins)))
	}
	return errors.Join(errs...)
}

// tarDir writes the files under dir to the tar file out, in name order, with
// fixed times: the same layout gives the same archive.
func tarDir(dir, out string, mtime time.Time) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
