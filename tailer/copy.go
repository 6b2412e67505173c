package tailer

import (
	"bytes"
	"path/filepath"
	"time"

	"github.com/logpump/logpump/event"
)

// Copies of followed files (logrotate's copytruncate with the copy's name
// matched): a new file that starts like a followed file, or like one that
// was just truncated, is that file's copy. Its first bytes up to the offset
// already read were delivered from the original, so it is read from that
// offset rather than from 0. Without this the read part of every rotation
// came through twice.

// truncation is what is kept of a file truncated (copytruncate), for a copy
// found after the truncation was noticed.
type truncation struct {
	fp     event.Fingerprint // of the content before the truncation
	offset int64             // read up to here
	at     time.Time
}

// copyWindow is how long after a truncation a new file may be its copy.
func (r *run) copyWindow() time.Duration { return r.opts.RotateWait + 2*r.opts.ScanInterval }

// noteTruncation remembers f's content before it is read again from 0.
func (r *run) noteTruncation(f *file, now time.Time) {
	if f.cur.offset == 0 || f.fp.Len == 0 {
		return
	}
	keep := r.truncs[:0]
	for _, t := range r.truncs {
		if now.Sub(t.at) < r.copyWindow() {
			keep = append(keep, t)
		}
	}
	r.truncs = append(keep, truncation{fp: f.fp, offset: f.cur.offset, at: now})
}

// copyCheck decides, before the first read of a file found while running
// with no checkpoint (f.fresh), whether it is a copy of a followed or just
// truncated file. It returns false when the decision must wait: the file
// starts like a followed file but is shorter than what was read of it (a
// copy being written). Waiting ends when the file grows, or after
// RotateWait; the file is then read from 0.
func (r *run) copyCheck(f *file, now time.Time) bool {
	st, err := f.fd.Stat()
	if err != nil {
		f.fresh = false
		return true
	}
	size := st.Size()
	for _, t := range r.truncs {
		if now.Sub(t.at) < r.copyWindow() && size >= t.offset {
			if same, err := sameStart(f.fd, t.fp, r.fpBuf); err == nil && same {
				r.resumeCopy(f, t.offset, "")
				return true
			}
		}
	}
	// Followed files in the same directory whose start f shares.
	n := min(size, int64(r.opts.FingerprintBytes))
	if cap(r.cmpBuf) < int(2*r.opts.FingerprintBytes) {
		r.cmpBuf = make([]byte, 2*r.opts.FingerprintBytes)
	}
	head := r.cmpBuf[:n]
	if k, _ := f.fd.ReadAt(head, 0); int64(k) < n {
		f.fresh = false
		return true
	}
	dir := filepath.Dir(f.path)
	var cands []*file
	for _, o := range r.t.files {
		if o != f && o.fd != nil && o.cur.offset > 0 && o.fp.Len > 0 && filepath.Dir(o.path) == dir {
			cands = append(cands, o)
		}
	}
	sums := map[int]uint64{} // hash of head[:len] by len
	wait := false
	for _, o := range cands {
		same := false
		if l := o.fp.Len; l <= len(head) {
			sum, ok := sums[l]
			if !ok {
				sum = fnv1a(fnvOffset, head[:l])
				sums[l] = sum
			}
			same = sum == o.fp.Sum
		} else if len(cands) <= maxCopyCandidates {
			// f is shorter than o's fingerprint: compare the bytes it has.
			same = r.sameBytes(o, head, 0)
		}
		if !same {
			continue
		}
		if size < o.cur.offset {
			wait = true // a copy being written, or another file with the same start
			continue
		}
		// The window before the offset must match too: a shared header
		// alone does not make a copy.
		from := max(o.cur.offset-int64(r.opts.FingerprintBytes), 0)
		win := r.cmpBuf[r.opts.FingerprintBytes : r.opts.FingerprintBytes+int(o.cur.offset-from)]
		if k, _ := f.fd.ReadAt(win, from); k == len(win) && r.sameBytes(o, win, from) {
			r.resumeCopy(f, o.cur.offset, o.path)
			return true
		}
	}
	if wait && now.Sub(f.found) < r.opts.RotateWait {
		r.nextMaint = earliest(r.nextMaint, f.found.Add(r.opts.RotateWait))
		return false
	}
	f.fresh = false
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

// resumeCopy starts f at offset, recording it as its checkpoint so that a
// restart resumes there too.
func (r *run) resumeCopy(f *file, offset int64, of string) {
	r.t.log.Info("file is a copy of a followed file; reading it from the offset already read",
		"path", f.path, "copy_of", of, "offset", offset)
	r.t.counters.copies.Add(1)
	f.fresh = false
	f.cur = cursor{offset: offset}
	f.offset.Store(offset)
	if ack, err := r.t.cp.Track(r.ctx, f.key, f.fp, f.path, offset, offset); err == nil {
		ack()
	}
}
