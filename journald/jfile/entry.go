package jfile

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Location is where an entry stands in the journal: what a cursor holds.
type Location struct {
	SeqnumID  ID128
	Seqnum    uint64
	BootID    ID128
	Monotonic uint64
	Realtime  uint64
	XorHash   uint64
}

// Cursor returns the location as journalctl prints a cursor
// (s=…;i=…;b=…;m=…;t=…;x=…), so that either reader resumes at the other's.
func (l *Location) Cursor() string {
	return string(l.AppendCursor(nil))
}

// AppendCursor appends the cursor to b.
func (l *Location) AppendCursor(b []byte) []byte {
	b = append(b, "s="...)
	b = appendHex(b, l.SeqnumID[:])
	b = append(b, ";i="...)
	b = strconv.AppendUint(b, l.Seqnum, 16)
	b = append(b, ";b="...)
	b = appendHex(b, l.BootID[:])
	b = append(b, ";m="...)
	b = strconv.AppendUint(b, l.Monotonic, 16)
	b = append(b, ";t="...)
	b = strconv.AppendUint(b, l.Realtime, 16)
	b = append(b, ";x="...)
	return strconv.AppendUint(b, l.XorHash, 16)
}

// AppendID appends the ID as journalctl prints it to b.
func AppendID(b []byte, id ID128) []byte { return appendHex(b, id[:]) }

func appendHex(b []byte, p []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range p {
		b = append(b, digits[c>>4], digits[c&15])
	}
	return b
}

// ParseCursor parses a cursor as journalctl prints it. Every one of s, i,
// b, m, t and x must be there (journalctl's own cursors have them all).
func ParseCursor(c string) (Location, error) {
	var l Location
	var seen int
	for c != "" {
		var kv string
		kv, c, _ = strings.Cut(c, ";")
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(k) != 1 {
			return l, fmt.Errorf("parse cursor: bad part %q", kv)
		}
		var err error
		switch k {
		case "s":
			err = parseID(v, &l.SeqnumID)
			seen |= 1
		case "i":
			l.Seqnum, err = strconv.ParseUint(v, 16, 64)
			seen |= 2
		case "b":
			err = parseID(v, &l.BootID)
			seen |= 4
		case "m":
			l.Monotonic, err = strconv.ParseUint(v, 16, 64)
			seen |= 8
		case "t":
			l.Realtime, err = strconv.ParseUint(v, 16, 64)
			seen |= 16
		case "x":
			l.XorHash, err = strconv.ParseUint(v, 16, 64)
			seen |= 32
		}
		if err != nil {
			return l, fmt.Errorf("parse cursor: %s=%q: %w", k, v, err)
		}
	}
	if seen != 63 {
		return l, fmt.Errorf("parse cursor: not all of s, i, b, m, t, x given")
	}
	return l, nil
}

func parseID(s string, id *ID128) error {
	if len(s) != 32 {
		return fmt.Errorf("want 32 hex digits")
	}
	for i := range 16 {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return err
		}
		id[i] = byte(v)
	}
	return nil
}

// Compare orders two locations as journalctl interleaves journal files:
// by sequence number within one sequence number ID, else by monotonic
// time within one boot, else by wall-clock time, then by content hash.
// 0 means the same entry.
func Compare(a, b *Location) int {
	if *a == *b {
		return 0
	}
	if a.SeqnumID == b.SeqnumID {
		if c := cmp.Compare(a.Seqnum, b.Seqnum); c != 0 {
			return c
		}
	}
	if a.BootID == b.BootID {
		if c := cmp.Compare(a.Monotonic, b.Monotonic); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(a.Realtime, b.Realtime); c != 0 {
		return c
	}
	if c := cmp.Compare(a.XorHash, b.XorHash); c != 0 {
		return c
	}
	// Same times and hash, different seqnum IDs: order by the IDs so the
	// order is total.
	return strings.Compare(string(a.SeqnumID[:]), string(b.SeqnumID[:]))
}

// Entry is one entry's location and the offsets of its DATA objects.
type Entry struct {
	Location
	Offset uint64
	Items  []uint64
}

// Entry reads the entry object at off into e (reusing e.Items).
func (f *File) Entry(off uint64, e *Entry) error {
	p, err := f.object(off, objEntry, entryFixedSize)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	e.Offset = off
	e.SeqnumID = f.h.SeqnumID
	e.Seqnum = le.Uint64(p[16:])
	e.Realtime = le.Uint64(p[24:])
	e.Monotonic = le.Uint64(p[32:])
	copy(e.BootID[:], p[40:56])
	e.XorHash = le.Uint64(p[56:])
	items := p[entryFixedSize:]
	e.Items = e.Items[:0]
	if f.h.Compact() {
		for i := 0; i+4 <= len(items); i += 4 {
			e.Items = append(e.Items, uint64(le.Uint32(items[i:])))
		}
	} else {
		for i := 0; i+16 <= len(items); i += 16 {
			e.Items = append(e.Items, le.Uint64(items[i:]))
		}
	}
	return nil
}

// Data returns the payload of the DATA object at off ("FIELD=value"),
// decompressed. It is valid until the next call on f.
func (f *File) Data(off uint64) ([]byte, error) {
	min, start := uint64(dataRegularSize), uint64(dataRegularSize)
	if f.h.Compact() {
		min, start = dataCompactSize, dataCompactSize
	}
	p, err := f.object(off, objData, min)
	if err != nil {
		return nil, err
	}
	payload := p[start:]
	switch fl := p[1] & (objCompressedXZ | objCompressedLZ4 | objCompressedZSTD); fl {
	case 0:
		return payload, nil
	case objCompressedZSTD:
		return f.dec.zstd(payload)
	case objCompressedXZ:
		return f.dec.xz(payload)
	case objCompressedLZ4:
		return f.dec.lz4(payload)
	default:
		return nil, f.corrupt(off, "data object flags %#x", fl)
	}
}

// Position walks the file's global entry array: every entry in the order
// written. The zero Position is at the start.
type Position struct {
	array uint64 // current entry array object; 0: not started
	items uint64 // how many items it has
	index uint64 // next item in it
	seen  uint64 // entries passed
}

// Next returns the offset of the entry at p and advances p, or ok false
// when the header counts no more entries (an online file may count more
// after Refresh; p then goes on where it stopped). Only the item read and
// the header of each array are read: arrays grow to megabytes.
func (f *File) Next(p *Position) (off uint64, ok bool, err error) {
	if p.seen >= f.h.NEntries {
		return 0, false, nil
	}
	if p.array == 0 {
		if f.h.EntryArrayOffset == 0 {
			return 0, false, nil
		}
		if err := f.enterArray(p, f.h.EntryArrayOffset); err != nil {
			return 0, false, err
		}
	}
	for p.index >= p.items {
		if err := f.nextArray(p); err != nil {
			return 0, false, err
		}
	}
	if off, err = f.item(p, p.index); err != nil {
		return 0, false, err
	}
	p.index++
	p.seen++
	return off, true, nil
}

// End moves p past the last entry the header counts and returns that
// entry's offset (ok false for a file without entries). It reads the
// header of each entry array and one item: arrays double in size, so this
// is a few reads however many entries the file holds.
func (f *File) End(p *Position) (last uint64, ok bool, err error) {
	if f.h.NEntries == 0 || f.h.EntryArrayOffset == 0 {
		return 0, false, nil
	}
	*p = Position{}
	if err := f.enterArray(p, f.h.EntryArrayOffset); err != nil {
		return 0, false, err
	}
	for f.h.NEntries-p.seen > p.items {
		p.seen += p.items
		if err := f.nextArray(p); err != nil {
			return 0, false, err
		}
	}
	p.index = f.h.NEntries - p.seen
	p.seen = f.h.NEntries
	if last, err = f.item(p, p.index-1); err != nil {
		return 0, false, err
	}
	return last, true, nil
}

func (f *File) itemSize() uint64 {
	if f.h.Compact() {
		return 4
	}
	return 8
}

// item returns the entry offset in item i of p's array.
func (f *File) item(p *Position, i uint64) (uint64, error) {
	size := f.itemSize()
	it, err := f.read(p.array+arrayFixedSize+i*size, size)
	if err != nil {
		return 0, err
	}
	var off uint64
	if size == 4 {
		off = uint64(binary.LittleEndian.Uint32(it))
	} else {
		off = binary.LittleEndian.Uint64(it)
	}
	if off == 0 {
		return 0, f.corrupt(p.array, "entry array ends after %d of %d entries", p.seen, f.h.NEntries)
	}
	return off, nil
}

// nextArray moves p to the array after its own.
func (f *File) nextArray(p *Position) error {
	hdr, err := f.read(p.array, arrayFixedSize)
	if err != nil {
		return err
	}
	next := binary.LittleEndian.Uint64(hdr[16:])
	if next <= p.array {
		// 0 ends the chain; a chain going backwards would loop.
		return f.corrupt(p.array, "entry array chain ends after %d of %d entries", p.seen, f.h.NEntries)
	}
	return f.enterArray(p, next)
}

// enterArray checks the entry array object at off and moves p to its
// first item.
func (f *File) enterArray(p *Position, off uint64) error {
	if off < f.h.HeaderSize || off%8 != 0 || off+arrayFixedSize > uint64(f.size) {
		return f.corrupt(off, "entry array offset outside the file or unaligned")
	}
	hdr, err := f.read(off, arrayFixedSize)
	if err != nil {
		return err
	}
	size := binary.LittleEndian.Uint64(hdr[8:])
	if hdr[0] != objEntryArray || size < arrayFixedSize || off+size > uint64(f.size) {
		return f.corrupt(off, "not an entry array (type %d, size %d)", hdr[0], size)
	}
	p.array, p.items, p.index = off, (size-arrayFixedSize)/f.itemSize(), 0
	return nil
}
