// Package jfile reads systemd journal files without libsystemd: the header,
// the global entry array and the DATA objects of each entry, in the regular
// and the compact layout, with DATA payloads compressed by zstd, xz or lz4.
//
// Files are read with pread through a small cache of fixed-size windows,
// not mapped: a mapped file that shrinks or is damaged would fault the
// process (SIGBUS) where a read returns an error, and the cache bounds the
// memory one file costs (cacheWindows × windowSize) whatever its size.
package jfile

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// File states in the header.
const (
	StateOffline  = 0
	StateOnline   = 1
	StateArchived = 2
)

// Incompatible header flags.
const (
	flagCompressedXZ   = 1 << 0
	flagCompressedLZ4  = 1 << 1
	flagKeyedHash      = 1 << 2
	flagCompressedZSTD = 1 << 3
	flagCompact        = 1 << 4
	knownIncompatible  = flagCompressedXZ | flagCompressedLZ4 | flagKeyedHash | flagCompressedZSTD | flagCompact
)

// Object types.
const (
	objData       = 1
	objEntry      = 3
	objEntryArray = 6
)

// Object flags of a DATA object: how its payload is compressed.
const (
	objCompressedXZ   = 1 << 0
	objCompressedLZ4  = 1 << 1
	objCompressedZSTD = 1 << 2
)

const (
	objectHeaderSize = 16
	minHeaderSize    = 208 // up to tail_entry_monotonic, as old files have it
	entryFixedSize   = 64  // object header, seqnum, realtime, monotonic, boot ID, xor hash
	dataRegularSize  = 64
	dataCompactSize  = 72
	arrayFixedSize   = 24
	// maxObjectSize bounds what one object may claim, so that a damaged
	// size never makes a reader allocate without limit.
	maxObjectSize = 1 << 30
)

var signature = []byte("LPKSHHRH")

// ID128 is a 128-bit ID (boot, machine, file, seqnum ID).
type ID128 [16]byte

// String returns the ID as journalctl prints it: 32 lowercase hex digits.
func (id ID128) String() string { return hex.EncodeToString(id[:]) }

// Header is what a reader needs of a journal file's header.
type Header struct {
	Compatible, Incompatible uint32
	State                    uint8
	FileID, MachineID        ID128
	SeqnumID                 ID128
	HeaderSize, ArenaSize    uint64
	NObjects, NEntries       uint64
	TailEntrySeqnum          uint64
	HeadEntrySeqnum          uint64
	EntryArrayOffset         uint64
	HeadEntryRealtime        uint64
	TailEntryRealtime        uint64
}

// Compact reports whether the file uses the compact layout (32-bit
// offsets in entries and entry arrays).
func (h *Header) Compact() bool { return h.Incompatible&flagCompact != 0 }

// CorruptError says that a file is not a journal file, or is damaged.
type CorruptError struct {
	Path   string
	Offset uint64
	Reason string
	// young: the file has no header yet (empty, or zeros where the
	// signature goes), as a file journald has just created.
	young bool
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal file %s: corrupt at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// UnsupportedError names an incompatible feature flag this reader does
// not know: the file cannot be read safely.
type UnsupportedError struct {
	Path  string
	Flags uint32
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("journal file %s: unsupported incompatible header flags %#x (known: xz 0x1, lz4 0x2, keyed-hash 0x4, zstd 0x8, compact 0x10)", e.Path, e.Flags)
}

// File is one journal file open for reading. It is not safe for concurrent
// use.
type File struct {
	path  string
	f     *os.File
	h     Header
	size  int64 // the file's size when the header was last read
	cache *cache
	dec   *decompressor
	buf   []byte // an object that does not fit a cache window
}

// Open opens a journal file and reads its header.
func Open(path string) (*File, error) {
	return open(path, &cache{}, &decompressor{})
}

// open opens a journal file reading through c and decompressing with d
// (shared by the files of a [Journal], read one at a time: one cache, one
// decoder's buffers however many files).
func open(path string, c *cache, d *decompressor) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	jf := &File{path: path, f: f, cache: c, dec: d}
	if err := jf.Refresh(); err != nil {
		f.Close()
		return nil, err
	}
	return jf, nil
}

// Path returns the path the file was opened at.
func (f *File) Path() string { return f.path }

// Header returns the header as last read.
func (f *File) Header() *Header { return &f.h }

// Stat returns the open file's information (its identity survives renames).
func (f *File) Stat() (os.FileInfo, error) { return f.f.Stat() }

// Close closes the file.
func (f *File) Close() error {
	f.cache.drop(f)
	return f.f.Close()
}

func (f *File) corrupt(off uint64, format string, args ...any) error {
	return &CorruptError{Path: f.path, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Refresh reads the header again: a file being written (online) holds
// entries up to what its header counts. Cached windows past the old end
// of the file's data are dropped.
func (f *File) Refresh() error {
	var b [272]byte
	n, err := f.f.ReadAt(b[:], 0)
	if n < minHeaderSize {
		if err == nil {
			err = errors.New("short read")
		}
		return &CorruptError{Path: f.path, Reason: fmt.Sprintf("header: %v", err), young: allZero(b[:n])}
	}
	if string(b[:8]) != string(signature) {
		return &CorruptError{Path: f.path, Reason: "not a journal file (bad signature)", young: allZero(b[:8])}
	}
	// The size after the header: journald grows the file before it writes
	// the objects that the header then counts.
	fi, err := f.f.Stat()
	if err != nil {
		return fmt.Errorf("stat journal file %s: %w", f.path, err)
	}
	le := binary.LittleEndian
	var h Header
	h.Compatible = le.Uint32(b[8:])
	h.Incompatible = le.Uint32(b[12:])
	if u := h.Incompatible &^ knownIncompatible; u != 0 {
		return &UnsupportedError{Path: f.path, Flags: u}
	}
	h.State = b[16]
	copy(h.FileID[:], b[24:40])
	copy(h.MachineID[:], b[40:56])
	copy(h.SeqnumID[:], b[72:88])
	h.HeaderSize = le.Uint64(b[88:])
	h.ArenaSize = le.Uint64(b[96:])
	h.NObjects = le.Uint64(b[144:])
	h.NEntries = le.Uint64(b[152:])
	h.TailEntrySeqnum = le.Uint64(b[160:])
	h.HeadEntrySeqnum = le.Uint64(b[168:])
	h.EntryArrayOffset = le.Uint64(b[176:])
	h.HeadEntryRealtime = le.Uint64(b[184:])
	h.TailEntryRealtime = le.Uint64(b[192:])
	if h.HeaderSize < minHeaderSize || h.HeaderSize > uint64(fi.Size()) {
		return &CorruptError{Path: f.path, Offset: 88, Reason: fmt.Sprintf("header size %d (file size %d)", h.HeaderSize, fi.Size())}
	}
	if h.EntryArrayOffset != 0 && (h.EntryArrayOffset < h.HeaderSize || h.EntryArrayOffset >= uint64(fi.Size())) {
		return &CorruptError{Path: f.path, Offset: 176, Reason: fmt.Sprintf("entry array offset %d outside the file", h.EntryArrayOffset)}
	}
	if fi.Size() != f.size || h.NObjects != f.h.NObjects {
		f.cache.drop(f)
	}
	f.h, f.size = h, fi.Size()
	return nil
}

// object returns the object at off, checked to be of type typ and at least
// min bytes long, with its header. The slice is valid until the next read
// of the file.
func (f *File) object(off uint64, typ uint8, min uint64) ([]byte, error) {
	if off < f.h.HeaderSize || off%8 != 0 || off+objectHeaderSize > uint64(f.size) {
		return nil, f.corrupt(off, "object offset outside the file or unaligned")
	}
	hdr, err := f.read(off, objectHeaderSize)
	if err != nil {
		return nil, err
	}
	if hdr[0] != typ {
		return nil, f.corrupt(off, "object of type %d, want %d", hdr[0], typ)
	}
	size := binary.LittleEndian.Uint64(hdr[8:])
	if size < min || size > maxObjectSize || off+size > uint64(f.size) {
		return nil, f.corrupt(off, "object size %d", size)
	}
	return f.read(off, size)
}

// read returns n bytes at off, from the cache when they fit one window.
func (f *File) read(off, n uint64) ([]byte, error) {
	if p, ok := f.cache.get(f, off, n); ok {
		return p, nil
	} else if p != nil {
		return nil, &CorruptError{Path: f.path, Offset: off, Reason: "read past the end of the file"}
	}
	if cap(f.buf) < int(n) || cap(f.buf) > max(keepBuffer, int(n)) {
		f.buf = make([]byte, n)
	}
	p := f.buf[:n]
	if _, err := f.f.ReadAt(p, int64(off)); err != nil {
		return nil, fmt.Errorf("read journal file %s at %d: %w", f.path, off, err)
	}
	return p, nil
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
