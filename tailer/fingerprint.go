package tailer

import (
	"errors"
	"fmt"
	"io"

	"github.com/logpump/logpump/event"
)

// FNV-1a, 64 bit: stable across versions and machines, which a persisted
// fingerprint needs, and a one-byte change anywhere always changes it.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(h uint64, p []byte) uint64 {
	for _, c := range p {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// fingerprint hashes the first min(n, size of the file) bytes of r. buf is
// scratch space of at least n bytes. A file shorter than n has a shorter
// fingerprint, which grows as the file does.
func fingerprint(r io.ReaderAt, n int, buf []byte) (event.Fingerprint, error) {
	got, err := r.ReadAt(buf[:n], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return event.Fingerprint{}, fmt.Errorf("read fingerprint: %w", err)
	}
	return event.Fingerprint{Len: got, Sum: fnv1a(fnvOffset, buf[:got])}, nil
}

// sameStart reports whether r still starts with the bytes fp was computed
// from. A file now shorter than fp.Len does not. buf is scratch space of at
// least fp.Len bytes.
func sameStart(r io.ReaderAt, fp event.Fingerprint, buf []byte) (bool, error) {
	if fp.Len == 0 {
		return true, nil
	}
	got, err := r.ReadAt(buf[:fp.Len], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read fingerprint: %w", err)
	}
	return got == fp.Len && fnv1a(fnvOffset, buf[:got]) == fp.Sum, nil
}
