// Package checkpoint keeps, for every file, the offset below which every byte
// was acknowledged by all the exporters its pipeline sends to, and persists it.
//
// The [Tracker] is told of each batch's byte range as it is read (in file
// order) and of each acknowledgement (in any order); the committed offset is
// the end of the longest acknowledged prefix. The [Store] writes committed
// offsets to one file in the state directory, crash-safely.
package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// FileName is the name of the checkpoint file inside the state directory.
const FileName = "checkpoints.bin"

// LegacyFileName is the JSON checkpoint file of earlier versions. Load reads
// it when there is no FileName; the first Save replaces it with FileName.
const LegacyFileName = "checkpoints.json"

// formatVersion is written into every slot; another version is refused
// rather than misread. Version 2 added Size to every entry, version 3
// Cursor; slots of versions 1 and 2 (and the JSON file, always version 1)
// are still read, with Size unknown (0) and no cursor.
const (
	formatVersion = 3
	legacyVersion = 1
)

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
	// Size is the largest size the file was seen with (0: unknown). Past
	// Offset it is what was on disk and not yet delivered: a restart that
	// cannot find the file any more reports [Offset, Size) as lost.
	Size int64 `json:"size,omitempty"`
	// Path where the file was last seen (informational: the key is the identity).
	Path string `json:"path"`
	// Seen is when the file was last seen by a scan; entries not seen for the
	// retention period are dropped.
	Seen time.Time `json:"seen"`
	// Cursor is the position of a source that is not a file (a journal
	// cursor) matching Offset: every entry up to and including it was
	// acknowledged. Empty for files.
	Cursor string `json:"cursor,omitempty"`
}

type legacyFormat struct {
	Version int     `json:"version"`
	Entries []Entry `json:"files"`
}

// The checkpoint file holds two slots of equal size, one after the other;
// the file's size is twice the slot size. Each save overwrites the slot that
// does not hold the newest state, in place, and syncs its data: one write
// and one fdatasync, no new file, no rename, no directory sync. A crash in
// the middle of a save tears at most the slot being written, whose checksum
// then fails: Load takes the valid slot with the highest generation.
//
// A slot is a header followed by the payload and zeros up to the slot size:
//
//	magic "LPCK" | version u32 | generation u64 | payload length u32 | CRC-32C u32
//
// all little-endian; the checksum covers the version, generation, length and
// payload. The payload is the entries, each: source, dev, ino, fingerprint
// length, fingerprint sum (8 bytes), offset, size (version 2 on), path, seen (Unix seconds), cursor
// (version 3 on), with
// strings as a uvarint length and bytes, numbers as uvarints (seen: varint).
//
// When the entries outgrow a slot, the file is written again with slots
// twice the size needed, through a temporary file, a sync, a rename and a
// sync of the directory, as every save used to be.
const (
	slotMagic     = "LPCK"
	slotHeaderLen = 24
	minSlotSize   = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Store reads and writes the checkpoint file of one state directory. Its
// methods may be called from any goroutine; saves are serialised.
type Store struct {
	dir string

	mu       sync.Mutex
	known    bool   // slotSize and gen describe the file on disk
	slotSize int64  // 0: no checkpoint file in the current format
	gen      uint64 // generation of the newest valid slot
	buf      []byte // the slot being encoded, reused
}

// NewStore returns a store for dir. It does no I/O.
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Load reads the checkpoints: from the newest valid slot of the checkpoint
// file, or from the JSON file of an earlier version when there is no
// checkpoint file. A missing file is an empty state, not an error.
func (s *Store) Load() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		s.known, s.slotSize, s.gen = true, 0, 0
		return s.loadLegacy()
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	slot, version, size, gen, err := newestSlot(data)
	if err != nil {
		return nil, fmt.Errorf("decode checkpoints %s: %w", s.Path(), err)
	}
	entries, err := decodeEntries(slot, version)
	if err != nil {
		return nil, fmt.Errorf("decode checkpoints %s (generation %d): %w", s.Path(), gen, err)
	}
	s.known, s.slotSize, s.gen = true, size, gen
	return entries, nil
}

func (s *Store) loadLegacy() ([]Entry, error) {
	path := filepath.Join(s.dir, LegacyFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	var f legacyFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode checkpoints %s: %w", path, err)
	}
	if f.Version != legacyVersion {
		return nil, fmt.Errorf("decode checkpoints %s: version %d, want %d", path, f.Version, legacyVersion)
	}
	return f.Entries, nil
}

// newestSlot returns the payload, slot size and generation of the valid slot
// of data with the highest generation.
func newestSlot(data []byte) (payload []byte, version uint32, size int64, gen uint64, err error) {
	size = int64(len(data) / 2)
	if len(data)%2 != 0 || size < slotHeaderLen {
		return nil, 0, 0, 0, fmt.Errorf("size %d is not two slots", len(data))
	}
	found := false
	var errs []error
	for i := range int64(2) {
		p, v, g, err := parseSlot(data[i*size : (i+1)*size])
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if !found || g > gen {
			payload, version, gen, found = p, v, g, true
		}
	}
	if !found {
		return nil, 0, 0, 0, errors.Join(errs...)
	}
	return payload, version, size, gen, nil
}

// parseSlot checks one slot and returns its payload, version and generation.
func parseSlot(slot []byte) ([]byte, uint32, uint64, error) {
	if string(slot[:4]) != slotMagic {
		return nil, 0, 0, errors.New("no slot header (never written, or torn)")
	}
	version := binary.LittleEndian.Uint32(slot[4:])
	gen := binary.LittleEndian.Uint64(slot[8:])
	n := binary.LittleEndian.Uint32(slot[16:])
	sum := binary.LittleEndian.Uint32(slot[20:])
	if int64(n) > int64(len(slot)-slotHeaderLen) {
		return nil, 0, 0, fmt.Errorf("payload length %d beyond the slot", n)
	}
	payload := slot[slotHeaderLen : slotHeaderLen+int(n)]
	if got := slotSum(slot[4:20], payload); got != sum {
		return nil, 0, 0, fmt.Errorf("checksum %08x, want %08x (torn or corrupt)", got, sum)
	}
	if version < legacyVersion || version > formatVersion {
		return nil, 0, 0, fmt.Errorf("version %d, want %d to %d", version, legacyVersion, formatVersion)
	}
	return payload, version, gen, nil
}

func slotSum(header, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(header, castagnoli), castagnoli, payload)
}

// Save writes entries as the newest state, crash-safely: a crash during
// Save leaves the state of the previous Save (or the new one), never a torn
// one. It sorts entries.
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known {
		s.inspect()
	}
	gen := s.gen + 1
	s.buf = encodeSlot(s.buf[:0], gen, entries)
	if int64(len(s.buf)) > s.slotSize {
		if err := s.create(gen); err != nil {
			s.known = false // look at the file again next time
			return err
		}
	} else if err := s.overwrite(gen); err != nil {
		s.known = false
		return err
	}
	s.gen = gen
	return nil
}

// inspect learns the slot size and generation of the file on disk; a file
// it cannot use is replaced by the next save.
func (s *Store) inspect() {
	s.known, s.slotSize, s.gen = true, 0, 0
	data, err := os.ReadFile(s.Path())
	if err != nil {
		return
	}
	if _, _, size, gen, err := newestSlot(data); err == nil {
		s.slotSize, s.gen = size, gen
	}
}

// overwrite writes s.buf into the slot not holding generation gen-1 and
// syncs its data. The file's size does not change, so fdatasync has no
// metadata to write.
func (s *Store) overwrite(gen uint64) error {
	f, err := os.OpenFile(s.Path(), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write checkpoints: %w", err)
	}
	defer f.Close()
	at := int64(gen%2) * s.slotSize
	if _, err := f.WriteAt(s.buf, at); err != nil {
		return fmt.Errorf("write checkpoints %s: %w", s.Path(), err)
	}
	if err := datasync(f); err != nil {
		return fmt.Errorf("sync checkpoints %s: %w", s.Path(), err)
	}
	return nil
}

// create writes a new checkpoint file holding s.buf (generation gen) in its
// slot and the other slot empty, with slots of twice the size needed:
// temporary file, sync, rename, sync of the directory. Then it removes the
// JSON file of an earlier version, if any.
func (s *Store) create(gen uint64) error {
	size := max(minSlotSize, int64(len(s.buf))*2)
	size = (size + minSlotSize - 1) / minSlotSize * minSlotSize
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, FileName+".tmp*")
	if err != nil {
		return fmt.Errorf("write checkpoints: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	// Every byte is written (not a sparse hole), so that later saves
	// overwrite allocated blocks.
	file := make([]byte, 2*size)
	copy(file[int64(gen%2)*size:], s.buf)
	if _, err := tmp.Write(file); err != nil {
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
	if err := replaceFile(tmp.Name(), s.Path()); err != nil {
		return fmt.Errorf("replace checkpoints: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.slotSize = size
	// Only now that the new file is durable: a JSON file left by a crash
	// before this point is ignored, the new file wins.
	if err := os.Remove(filepath.Join(s.dir, LegacyFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove old checkpoints: %w", err)
	}
	return nil
}

// encodeSlot appends the slot of generation gen holding entries to buf.
func encodeSlot(buf []byte, gen uint64, entries []Entry) []byte {
	buf = append(buf, slotMagic...)
	buf = binary.LittleEndian.AppendUint32(buf, formatVersion)
	buf = binary.LittleEndian.AppendUint64(buf, gen)
	buf = append(buf, make([]byte, 8)...) // length and checksum, below
	for i := range entries {
		e := &entries[i]
		buf = appendString(buf, e.Source)
		buf = binary.AppendUvarint(buf, e.Dev)
		buf = binary.AppendUvarint(buf, e.Ino)
		buf = binary.AppendUvarint(buf, uint64(e.FingerprintLen))
		buf = binary.LittleEndian.AppendUint64(buf, e.FingerprintSum)
		buf = binary.AppendUvarint(buf, uint64(e.Offset))
		buf = binary.AppendUvarint(buf, uint64(max(e.Size, 0)))
		buf = appendString(buf, e.Path)
		buf = binary.AppendVarint(buf, e.Seen.Unix())
		buf = appendString(buf, e.Cursor)
	}
	payload := buf[slotHeaderLen:]
	binary.LittleEndian.PutUint32(buf[16:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[20:], slotSum(buf[4:20], payload))
	return buf
}

func appendString(buf []byte, s string) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(s))), s...)
}

// decodeEntries reads the entries of a checked payload of version v.
func decodeEntries(p []byte, v uint32) ([]Entry, error) {
	var entries []Entry
	d := decoder{p: p}
	for len(d.p) > 0 && d.err == nil {
		var e Entry
		e.Source = d.string()
		e.Dev = d.uvarint()
		e.Ino = d.uvarint()
		e.FingerprintLen = int(d.uvarint())
		e.FingerprintSum = d.uint64()
		e.Offset = int64(d.uvarint())
		if v >= 2 {
			e.Size = int64(d.uvarint())
		}
		e.Path = d.string()
		e.Seen = time.Unix(d.varint(), 0).UTC()
		if v >= 3 {
			e.Cursor = d.string()
		}
		entries = append(entries, e)
	}
	if d.err != nil {
		return nil, fmt.Errorf("entry %d: %w", len(entries), d.err)
	}
	return entries, nil
}

// decoder reads a payload; the first error sticks.
type decoder struct {
	p   []byte
	err error
}

var errShort = errors.New("payload ends inside an entry")

func (d *decoder) uvarint() uint64 { return varint(d, binary.Uvarint) }
func (d *decoder) varint() int64   { return varint(d, binary.Varint) }

func varint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.p)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.p) < 8 {
		d.err = firstErr(d.err, errShort)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.p)
	d.p = d.p[8:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.p)) {
		d.err = firstErr(d.err, errShort)
		return ""
	}
	s := string(d.p[:n])
	d.p = d.p[n:]
	return s
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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
