// Command pack builds logpump's .deb and .rpm packages from packaging/nfpm.yaml
// with the nfpm library.
//
// Usage:
//
//	go run ./pack -config ../nfpm.yaml -format deb -out ../../dist
//
// Variables in the configuration (${VERSION}, ${ARCH}, ...) are expanded from
// the environment. The package is written to the output directory under its
// conventional name, which is printed on stdout.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/rpm"
)

func main() {
	cfgPath := flag.String("config", "nfpm.yaml", "nfpm configuration `file`")
	format := flag.String("format", "deb", "package format: deb or rpm")
	out := flag.String("out", ".", "output `directory`")
	flag.Parse()
	name, err := build(*cfgPath, *format, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pack:", err)
		os.Exit(1)
	}
	fmt.Println(name)
}

// build writes one package and returns its path.
func build(cfgPath, format, outDir string) (string, error) {
	var p nfpm.Packager
	switch format {
	case "deb":
		p = deb.Default
	case "rpm":
		p = rpm.DefaultRPM
	default:
		return "", fmt.Errorf("unknown format %q (want deb or rpm)", format)
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(cfgPath, os.Getenv)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", cfgPath, err)
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", fmt.Errorf("select %s settings: %w", format, err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("validate %s: %w", cfgPath, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("create output directory: %w", err)
	}
	target := filepath.Join(outDir, p.ConventionalFileName(info))
	info.Target = target
	if err := write(target, func(w io.Writer) error { return p.Package(info, w) }); err != nil {
		return "", fmt.Errorf("build %s: %w", format, err)
	}
	return target, nil
}

// write creates path through a temporary file so that a failed build leaves
// no partial package behind.
func write(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".pack-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
