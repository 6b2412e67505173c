// Package checkpoint keeps, for every file, the offset below which every byte
// was acknowledged by all the exporters its pipeline sends to, and persists it.
//
// The [Tracker] is told of each batch's byte range as it is read (in file
// order) and of each acknowledgement (in any order); the committed offset is
// the end of the longest acknowledged prefix. The [Store] writes committed
// offsets atomically to one JSON file in the state directory.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FileName is the name of the checkpoint file inside the state directory.
const FileName = "checkpoints.json"

// formatVersion is written into every checkpoint file; a file with another
// version is refused rather than misread.
const formatVersion = 1

// Entry is the persisted state of one file of one source.
type Entry struct {
	Source string `json:"source"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	// FingerprintLen and FingerprintSum identify the content: on restart a file
	// with this dev/ino whose first FingerprintLen bytes hash to
	// FingerprintSum is the same file; otherwise the inode was reused.
	FingerprintLen int    `json:"fingerprint_len"`
	FingerprintSum uint64 `json:"fingerprint_sum"`
	// Offset: every byte before it was acknowledged.
	Offset int64 `json:"offset"`
	// Path where the file was last seen (informational: the key is the identity).
	Path string `json:"path"`
	// Seen is when the file was last seen by a scan; entries not seen for the
	// retention period are dropped.
	Seen time.Time `json:"seen"`
}

type fileFormat struct {
	Version int     `json:"version"`
	Entries []Entry `json:"files"`
}

// Store reads and writes the checkpoint file of one state directory.
type Store struct {
	dir string
}

// NewStore returns a store for dir. It does no I/O.
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Load reads the checkpoint file. A missing file is an empty state, not an error.
func (s *Store) Load() ([]Entry, error) {
	data, err := os.ReadFile(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode checkpoints %s: %w", s.Path(), err)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("decode checkpoints %s: version %d, want %d", s.Path(), f.Version, formatVersion)
	}
	return f.Entries, nil
}

// Save replaces the checkpoint file with entries: it writes a temporary file,
// syncs it, renames it over the old one and syncs the directory, so a crash
// leaves either the old or the new file, never a torn one.
func (s *Store) Save(entries []Entry) error {
	slices.SortFunc(entries, func(a, b Entry) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		if a.Dev != b.Dev {
			return cmpU64(a.Dev, b.Dev)
		}
		return cmpU64(a.Ino, b.Ino)
	})
	data, err := json.MarshalIndent(fileFormat{Version: formatVersion, Entries: entries}, "", " ")
	if err != nil {
		return fmt.Errorf("encode checkpoints: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, FileName+".tmp*")
	if err != nil {
		return fmt.Errorf("write checkpoints: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoints %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync checkpoints %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close checkpoints %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.Path()); err != nil {
		return fmt.Errorf("replace checkpoints: %w", err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir %s: %w", s.dir, err)
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
