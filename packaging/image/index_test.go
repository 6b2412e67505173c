package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The archive holds an OCI layout whose one index has a manifest per
// architecture, each naming its platform, each image holding the binary
// built for it; the same inputs give the same archive.
func TestIndexHoldsOneImagePerArchitecture(t *testing.T) {
	bins := map[string]string{"amd64": staticBinaryFor(t, "amd64"), "arm64": staticBinaryFor(t, "arm64")}
	o := options(t, "")
	dir := t.TempDir()
	var archives [2][]byte
	for i, out := range []string{filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")} {
		if err := runIndex(o, bins, out); err != nil {
			t.Fatalf("runIndex: %v", err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		archives[i] = b
	}
	if string(archives[0]) != string(archives[1]) {
		t.Error("two builds of the same inputs differ")
	}

	layoutDir := untar(t, filepath.Join(dir, "a.tar"))
	idx, err := readIndex(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range m.Manifests {
		got = append(got, d.Platform.OS+"/"+d.Platform.Architecture+d.Platform.Variant)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		files, err := layerFiles(img)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(bins[d.Platform.Architecture])
		if string(files[binPath].data) != string(want) {
			t.Errorf("%s image: %s is not the %s binary", d.Platform.Architecture, binPath, d.Platform.Architecture)
		}
	}
	if g, w := strings.Join(got, " "), "linux/amd64 linux/arm64v8"; g != w {
		t.Errorf("platforms: got %s, want %s", g, w)
	}
}

// A binary for the wrong architecture is refused by the check the build
// runs, in the index as in a single image.
func TestIndexRejectsBinaryOfOtherArchitecture(t *testing.T) {
	amd := staticBinaryFor(t, "amd64")
	out := filepath.Join(t.TempDir(), "index.tar")
	err := runIndex(options(t, ""), map[string]string{"amd64": amd, "arm64": amd}, out)
	if err == nil || !strings.Contains(err.Error(), "arm64 image") || !strings.Contains(err.Error(), "EM_X86_64") {
		t.Errorf("runIndex = %v, want the arm64 image's binary named as x86-64", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the archive was written although it failed its check")
	}
	if _, err := parsePlatforms("amd64=a,sparc=b"); err == nil {
		t.Error("parsePlatforms accepted an unknown architecture")
	}
}

func untar(t *testing.T, archive string) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
