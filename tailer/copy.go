package tailer

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
)

// Copies of followed files (logrotate's copytruncate with the copy's name
// matched): a new file that starts like a followed file, or like one that
// was just truncated, is that file's copy. Its first bytes up to the offset
// already read were delivered from the original, so it is read from that
// offset rather than from 0. Without this the read part of every rotation
// came through twice.

// truncation is what is kept of a file truncated (copytruncate) or deleted
// (logrotate's compress), for a copy found after that was noticed.
type truncation struct {
	fp     event.Fingerprint // of the content before the truncation
	offset int64             // read up to here
	at     time.Time
	moved  *movedContent // its unread end, looked for (nil: all read)
}

// copyWindow is how long after a truncation a new file may be its copy.
func (r *run) copyWindow() time.Duration { return r.opts.RotateWait + 2*r.opts.ScanInterval }

// noteGone remembers f's content, read up to its offset, when it is gone:
// truncated (read again from 0) or deleted.
func (r *run) noteGone(f *file, now time.Time, m *movedContent) {
	if f.cur.offset == 0 || f.fp.Len == 0 || f.gz != nil {
		return
	}
	keep := r.truncs[:0]
	for _, t := range r.truncs {
		if now.Sub(t.at) < r.copyWindow() {
			keep = append(keep, t)
		}
	}
	r.truncs = append(keep, truncation{fp: f.fp, offset: f.cur.offset, at: now, moved: m})
}

// copyCheck decides, before the first read of a file found while running
// with no checkpoint (f.fresh), whether it is a copy of a followed or just
// truncated or deleted file, compressed or not. It returns false when the
// decision must wait: the file starts like such a file but holds less than
// was read of it, or is compressed with nothing to decompress yet (a copy
// being written). Waiting ends when the file grows, or after RotateWait; the
// file is then read from 0.
func (r *run) copyCheck(f *file, now time.Time) bool {
	var src io.ReaderAt = f.fd
	if f.gz != nil {
		src = f.gz
	}
	// has reports whether src holds at least off bytes.
	var one [1]byte
	has := func(off int64) bool {
		if off == 0 {
			return true
		}
		k, _ := src.ReadAt(one[:], off-1)
		return k == 1
	}
	n := r.opts.FingerprintBytes
	if cap(r.cmpBuf) < 2*n {
		r.cmpBuf = make([]byte, 2*n)
	}
	k, err := src.ReadAt(r.cmpBuf[:n], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.fresh = false
		return true
	}
	head := r.cmpBuf[:k]
	// gzip holds its input until a block is full: a compressed file still
	// being written (logrotate's compress) can have nothing to decompress
	// yet, and nothing to compare. It may be a copy.
	wait := k == 0 && f.gz != nil && !f.gz.complete
	sums := map[int]uint64{} // hash of head[:len] by len
	sum := func(l int) uint64 {
		s, ok := sums[l]
		if !ok {
			s = fnv1a(fnvOffset, head[:l])
			sums[l] = s
		}
		return s
	}
	// Followed files in the same directory whose start f may share, and
	// in other directories (logrotate's olddir) those whose fingerprint f
	// starts with.
	dir := filepath.Dir(f.path)
	var cands []*file
	for _, o := range r.t.files {
		if o == f || o.fd == nil || o.gz != nil {
			continue
		}
		if filepath.Dir(o.path) == dir || (o.fp.Len > 0 && o.fp.Len <= len(head) && sum(o.fp.Len) == o.fp.Sum) {
			cands = append(cands, o)
		}
	}
	// copytruncate truncates right after copying, so the copy is often
	// looked at before a scan or a read noticed the truncation. A followed
	// file whose fingerprint f starts with, but whose own start changed,
	// is noticed as truncated now: f is then matched with what it held.
	for _, o := range cands {
		if o.state == live && o.cur.offset > 0 && o.fp.Len > 0 && o.fp.Len <= len(head) && sum(o.fp.Len) == o.fp.Sum {
			if same, err := sameStart(o.fd, o.fp, r.fpBuf); err == nil && !same {
				r.truncated(o, -1)
				r.markReady(o)
			}
		}
	}
	for _, t := range r.truncs {
		if now.Sub(t.at) >= r.copyWindow() || t.fp.Len > len(head) || sum(t.fp.Len) != t.fp.Sum {
			continue
		}
		if !has(t.offset) {
			wait = true
			continue
		}
		r.adoptCopy(f, t)
		return true
	}
	for _, o := range cands {
		same := false
		switch l := o.fp.Len; {
		case l == len(head) && l > 0:
			same = sum(l) == o.fp.Sum
		case len(cands) <= maxCopyCandidates:
			// Fingerprints of other lengths: compare the bytes.
			same = len(head) > 0 && r.sameBytes(o, head, 0)
		case l > 0 && l < len(head):
			same = sum(l) == o.fp.Sum
		}
		if !same {
			continue
		}
		if o.cur.offset == 0 && o.state == live {
			// Nothing read of o yet: whether f is a copy to skip (o renamed
			// away) or to read (o truncated) shows soon.
			wait = true
			continue
		}
		if !has(o.cur.offset) {
			wait = true // a copy being written, or another file with the same start
			continue
		}
		// The window before the offset must match too: a shared header
		// alone does not make a copy.
		from := max(o.cur.offset-int64(n), 0)
		win := r.cmpBuf[n : n+int(o.cur.offset-from)]
		if k, _ := src.ReadAt(win, from); k == len(win) && r.sameBytes(o, win, from) {
			if o.state == draining {
				// o, renamed or deleted, is read to its end through its
				// descriptor, with any lines written to it after the copy:
				// the copy holds nothing else.
				r.skipCopy(f, o)
				return true
			}
			if st, err := o.fd.Stat(); err == nil && st.Size() < o.cur.offset {
				// Truncated already (copytruncate): take the copy over
				// from the truncation, ranges in flight included.
				ofp, off := o.fp, o.cur.offset
				r.truncated(o, st.Size())
				r.markReady(o)
				if n := len(r.truncs); n > 0 && r.truncs[n-1].fp == ofp {
					r.adoptCopy(f, r.truncs[n-1])
				} else {
					r.resumeCopy(f, off, o.path)
				}
				return true
			}
			if now.Sub(f.found) < r.opts.RotateWait {
				// The truncation that follows a copy usually comes within
				// milliseconds: reading the copy before it would read
				// again what the original delivers meanwhile.
				wait = true
				continue
			}
			r.resumeCopy(f, o.cur.offset, o.path)
			return true
		}
	}
	if wait && now.Sub(f.found) < r.opts.RotateWait {
		r.nextMaint = earliest(r.nextMaint, f.found.Add(r.opts.RotateWait))
		return false
	}
	if !wait && r.opts.FollowRotated && r.continueEntry(f, head) {
		return true
	}
	f.fresh = false
	// A new file, read from 0: the checkpoints know it from now on, so
	// that a restart looks for it (by identity or content) if it rotates
	// away before any of it was read, found while reading waited, rather
	// than taking it for a rotation read before.
	r.t.cp.Begin(f.key, f.fp, f.path, 0)
	return true
}

// continueEntry starts f, a new file no followed file explains, where the
// checkpoint of the content it starts with says: the compressed rotation
// of a file read, closed and deleted before it appeared, or of one whose
// entry a restart handed on. Entries of followed files are left out (the
// copy check above covers them).
func (r *run) continueEntry(f *file, head []byte) bool {
	var entries []checkpoint.Entry
	for _, e := range r.t.cp.Entries(r.t.name) {
		if r.t.files[devIno{e.Dev, e.Ino}] == nil {
			entries = append(entries, e)
		}
	}
	size := int64(-1)
	if st, err := f.fd.Stat(); err == nil {
		size = st.Size()
	}
	k := newKnown(entries)
	i, ok := k.match(head, f.path, size, f.gz != nil)
	if !ok {
		return false
	}
	e, others := k.claim(i)
	r.continueContent(f, e, others)
	return true
}

// maxCopyCandidates bounds the files whose first bytes are read to compare
// with a new short file; past it only fingerprints are compared.
const maxCopyCandidates = 64

// sameBytes reports whether o holds p at off.
func (r *run) sameBytes(o *file, p []byte, off int64) bool {
	if len(p) == 0 {
		return true
	}
	if cap(r.cmpBuf2) < len(p) {
		r.cmpBuf2 = make([]byte, len(p))
	}
	q := r.cmpBuf2[:len(p)]
	k, _ := o.fd.ReadAt(q, off)
	return k == len(p) && bytes.Equal(p, q)
}

// skipCopy marks f, a copy of the draining file o, as read.
func (r *run) skipCopy(f *file, o *file) {
	r.t.log.Info("file is a copy of a file being read to its end; not read again", "path", f.path, "copy_of", o.path)
	r.t.counters.copies.Add(1)
	f.fresh = false
	// The copy gets no checkpoint of its own: the original's, which keeps
	// its ranges in flight, stays (o.copied) and says how much of the
	// content was delivered; a restart finds the copy by its content.
	o.copied = true
	if f.gz != nil {
		r.finishCompressed(f)
		return
	}
	if st, err := f.fd.Stat(); err == nil {
		f.cur = cursor{offset: st.Size()}
		f.offset.Store(st.Size())
	}
}

// resumeCopy starts f at offset, recording it as its checkpoint so that a
// restart resumes there too.
func (r *run) resumeCopy(f *file, offset int64, of string) {
	r.t.log.Info("file is a copy of a followed file; reading it from the offset already read",
		"path", f.path, "copy_of", of, "offset", offset)
	r.t.counters.copies.Add(1)
	r.startAt(f, offset)
}

// adoptCopy starts f, the copy of the content truncation t took out of its
// file, where reading of that content stopped, and hands it the content's
// checkpoint with its pending ranges.
func (r *run) adoptCopy(f *file, t truncation) {
	r.t.log.Info("file is a copy of a truncated file; reading it from the offset already read",
		"path", f.path, "offset", t.offset)
	r.t.counters.copies.Add(1)
	if t.moved != nil {
		t.moved.resolved = true
	}
	if _, ok := r.t.cp.Move(checkpoint.MovedKey(r.t.name, t.fp), f.key, false); !ok {
		r.startAt(f, t.offset)
		return
	}
	f.fresh = false
	f.cur = cursor{offset: t.offset}
	f.offset.Store(t.offset)
}

// startAt sets f's offset and checkpoint.
func (r *run) startAt(f *file, offset int64) {
	f.fresh = false
	f.cur = cursor{offset: offset}
	f.offset.Store(offset)
	r.t.cp.Begin(f.key, f.fp, f.path, offset)
}
