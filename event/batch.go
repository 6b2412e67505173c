package event

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// FileID identifies a file independently of its path: the device and inode,
// plus a fingerprint of its first bytes so that a recycled inode is
// recognised as a new file.
type FileID struct {
	Dev, Ino    uint64
	Fingerprint Fingerprint
}

// Fingerprint is a hash of the first Len bytes of a file. A file shorter than
// the configured fingerprint size has a fingerprint that grows with it.
type Fingerprint struct {
	Len int
	Sum uint64
}

// Batch is a run of records read from one file, covering the bytes
// [Start, End) of that file. End-Start may exceed the records' bytes (skipped
// parts of truncated lines, blank regions).
//
// Ownership: whoever holds a batch must call [Batch.Done] exactly once when it
// no longer needs it; the last Done acknowledges the range (advancing the
// file's checkpoint) and recycles the batch. A batch handed to another
// goroutine (an export queue) is handed over with its reference. [Batch.Retain]
// adds references for fan-out. After Done the batch and every string its
// records hold must not be used.
//
// A holder that is done reading the records but cannot acknowledge them yet
// (an exporter that encoded them and waits for the destination's answer)
// calls [Batch.Detach] and later [Batch.Settle] instead of Done: once no
// holder reads the records any more, they and the arena are recycled while
// the acknowledgement still waits.
//
// A batch is not safe for concurrent mutation; several goroutines may read it
// concurrently after fan-out.
type Batch struct {
	// Source names the configured source the batch came from.
	Source string
	// File identifies the file; Path is where it was found.
	File FileID
	Path string
	// Start and End delimit the bytes of the file this batch accounts for.
	Start, End int64
	// Records read from [Start, End), in file order.
	Records []Record
	// Resource is shared by the batch's records unless a record sets its own.
	Resource *Resource

	arena []byte
	// refs counts the holders that owe a Done or a Settle, readers those
	// that may still read the records (every holder but the detached ones).
	refs, readers atomic.Int32
	ack           func()
	pool          *Pool
	// parent is set on views made by View; Done is forwarded to it.
	parent *Batch
	// dirty counts the records at the start of the Records array that Next
	// handed out since the last reset; the rest are still zero. Stages only
	// ever shorten Records, so this bounds what reset must clear: a batch
	// of one line in a pooled array of 1,000 records clears one.
	dirty int
}

// Pool recycles batches, their record slices and arenas. The zero value is
// ready to use. A Pool is safe for concurrent use.
type Pool struct {
	p sync.Pool
	// shells holds batches without records or arena: a batch whose records
	// were recycled before its acknowledgement (see [Batch.Detach]) gives
	// them to a shell, and becomes one itself once settled.
	shells sync.Pool
}

// Get returns an empty batch holding one reference.
func (p *Pool) Get() *Batch {
	b, _ := p.p.Get().(*Batch)
	if b == nil {
		b = &Batch{}
	}
	b.pool = p
	b.refs.Store(1)
	b.readers.Store(1)
	return b
}

// NewBatch returns an empty batch that is not pooled, holding one reference.
func NewBatch() *Batch {
	b := &Batch{}
	b.refs.Store(1)
	b.readers.Store(1)
	return b
}

// SetAck sets the function called once when the last reference is released.
// It is called from whichever goroutine releases last and must not block.
func (b *Batch) SetAck(ack func()) { b.ack = ack }

// Retain adds n references, one for each additional holder (fan-out).
func (b *Batch) Retain(n int) {
	if b.parent != nil {
		b.parent.Retain(n)
		return
	}
	b.refs.Add(int32(n))
	b.readers.Add(int32(n))
}

// Done releases one reference. The last release acknowledges the batch's range
// and recycles it.
func (b *Batch) Done() {
	if b.parent != nil {
		p := b.parent
		b.parent = nil
		p.Done()
		return
	}
	if b.readers.Add(-1) == 0 && b.refs.Load() > 1 {
		// Every other holder is detached and still owes its Settle.
		b.recycleRecords()
	}
	b.release()
}

// Detach tells the batch that its holder no longer reads the records: the
// holder keeps its reference, which it releases with [Batch.Settle] (not
// Done). Once no holder reads them, the records and the arena are recycled
// and must not be used; the range, Source, File and Path stay valid until
// the last reference is released, and the acknowledgement waits for it.
func (b *Batch) Detach() {
	if root := b.root(); root.readers.Add(-1) == 0 {
		root.recycleRecords()
	}
}

// Settle releases the reference of a holder that called [Batch.Detach].
func (b *Batch) Settle() {
	if b.parent != nil {
		p := b.parent
		b.parent = nil
		p.Settle()
		return
	}
	b.release()
}

// release drops one reference; the last acknowledges the range and
// recycles the batch.
func (b *Batch) release() {
	n := b.refs.Add(-1)
	if n > 0 {
		return
	}
	if n < 0 {
		panic("event: Batch.Done or Settle called more often than the batch was retained")
	}
	if b.ack != nil {
		ack := b.ack
		b.ack = nil
		ack()
	}
	pool := b.pool
	if pool == nil {
		return
	}
	if b.Records == nil && b.arena == nil {
		*b = Batch{}
		pool.shells.Put(b)
		return
	}
	b.reset()
	pool.p.Put(b)
}

// recycleRecords hands the records and the arena of b, which no holder
// reads any more but some holder has yet to settle, to a shell that goes
// back to the pool, so that they serve the next batch while b waits for its
// acknowledgement.
func (b *Batch) recycleRecords() {
	pool := b.pool
	if pool == nil {
		b.Records, b.arena, b.dirty = nil, nil, 0
		return
	}
	s, _ := pool.shells.Get().(*Batch)
	if s == nil {
		s = &Batch{}
	}
	s.Records, s.arena, s.dirty = b.Records, b.arena, b.dirty
	b.Records, b.arena, b.dirty = nil, nil, 0
	s.reset()
	pool.p.Put(s)
}

// root returns the batch that owns b's records and acknowledgement: b
// itself, or the batch a view was made from.
func (b *Batch) root() *Batch {
	for b.parent != nil {
		b = b.parent
	}
	return b
}

// View returns a batch that shares b's arena, range and acknowledgement but
// holds only records. It takes one reference of b, released by the view's
// Done. Used to send part of a batch to one route.
func (b *Batch) View(records []Record) *Batch {
	root := b.root()
	root.refs.Add(1)
	root.readers.Add(1)
	return &Batch{
		Source: b.Source, File: b.File, Path: b.Path, Start: b.Start, End: b.End,
		Records: records, Resource: b.Resource, parent: root,
	}
}

func (b *Batch) reset() {
	recs := b.Records[:cap(b.Records)]
	for i := range recs[:b.dirty] {
		recs[i].Reset()
	}
	arena := b.arena[:0]
	if cap(arena) > maxPooledArena {
		arena = nil
	}
	*b = Batch{Records: recs[:0], arena: arena}
}

// maxPooledArena keeps an arena grown by one huge line from staying in the pool.
const maxPooledArena = 4 << 20

// Next appends a zeroed record and returns a pointer to it, reusing a
// recycled record's attribute slice. The pointer is valid until the next call
// to Next.
func (b *Batch) Next() *Record {
	n := len(b.Records)
	if n < cap(b.Records) {
		b.Records = b.Records[:n+1]
	} else {
		b.Records = append(b.Records, Record{})
	}
	b.dirty = max(b.dirty, n+1)
	return &b.Records[n]
}

// Copy copies p into the batch's arena and returns it as a string that stays
// valid until the batch is released. It allocates only when the arena grows.
func (b *Batch) Copy(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	if len(b.arena)+len(p) > cap(b.arena) {
		// Start a new block rather than growing in place: strings already
		// handed out keep pointing at the old block, which stays alive.
		size := max(2*cap(b.arena), len(p), 4096)
		b.arena = make([]byte, 0, size)
	}
	start := len(b.arena)
	b.arena = append(b.arena, p...)
	return unsafe.String(&b.arena[start], len(p))
}

// Room returns how many bytes Copy can take without allocating: the free
// part of the arena's current block, kept when a pooled batch is reused.
func (b *Batch) Room() int { return cap(b.arena) - len(b.arena) }

// CopyString is Copy for a string.
func (b *Batch) CopyString(s string) string {
	return b.Copy(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// Bytes returns the total length of the records' bodies, a cheap size
// estimate used for batching by bytes.
func (b *Batch) Bytes() int {
	n := 0
	for i := range b.Records {
		n += len(b.Records[i].Body.Str)
	}
	return n
}
