package tailer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/logpump/logpump/checkpoint"
)

// fullScanEvery is how many scans apart full scans are. A full scan lists
// every directory and stats every matched path; the scans between list only
// directories whose watch reported a change of names and stat only paths
// that are new or changed, so that quiet watched files cost nothing. Files
// no watch covers are looked at by every scan.
const fullScanEvery = 30

// scan expands the include patterns, starts following new files, notices
// renamed, grown, truncated and vanished ones, touches the checkpoints of
// live files and updates the directory watches.
func (r *run) scan(now time.Time, startup bool) {
	r.gen++
	r.t.counters.scans.Add(1)
	r.lastScan, r.nextScan, r.scanSoon = now, now.Add(r.opts.ScanInterval), false
	r.full = startup || r.hints == nil || !now.Before(r.nextFull)
	if r.full {
		r.nextFull = now.Add(fullScanEvery * r.opts.ScanInterval)
	}
	clear(r.glob.dirs)
	var fresh []*file
	// The source ran before if it has checkpoints: of a file matched now
	// (resumed or not), or of one rotated away since.
	anyKnown := r.known != nil && len(r.known.entries) > 0
	for _, pattern := range r.opts.Include {
		r.glob.expand(pattern, func(path string, clean bool, link linkKind) {
			if clean && r.quiet(path) {
				return
			}
			f, known := r.visit(path, now, startup, link)
			anyKnown = anyKnown || known
			if f != nil {
				fresh = append(fresh, f)
			}
		})
	}
	// Where to start files no checkpoint knows: on a first run (no file of
	// this source known) the start_at rule; otherwise they are new since the
	// last run and read from the beginning.
	for _, f := range fresh {
		if f.cur.offset >= 0 || (r.known != nil && r.continueKnown(f)) {
			continue
		}
		f.cur.offset = 0
		if startup && !anyKnown && r.opts.StartAt == StartEnd && f.gz != nil {
			// Skipped like the text files' starts: checkpointed at the end
			// its trailer records, so that a restart skips it too.
			if size, ok := f.gz.size(); ok {
				r.t.cp.Begin(f.key, f.fp, f.path, size)
			}
			r.finishCompressed(f)
			continue
		}
		if startup && !anyKnown && r.opts.StartAt == StartEnd {
			f.cur.offset = f.size
			// Record the start so that a restart resumes here rather than
			// skipping what was written while stopped.
			r.t.cp.Begin(f.key, f.fp, f.path, f.size)
		}
		if startup && anyKnown {
			// New since the last run: maybe the copy of a followed file
			// made while the agent was stopped (logrotate compressing a
			// rotated file it resumed), checked before its first read.
			f.fresh, f.found = true, now
		}
		f.offset.Store(f.cur.offset)
		f.atEOF = f.size == f.cur.offset
		if f.size > f.cur.offset {
			r.markReady(f)
		}
	}
	r.polls = r.polls[:0]
	for _, f := range r.t.files {
		if f.gen != r.gen && f.state == live {
			r.orphan(f, now)
		}
		if f.polled || f.state == draining {
			r.polls = append(r.polls, f)
		}
	}
	if r.full {
		for id, sk := range r.skipped {
			if sk.gen != r.gen {
				delete(r.skipped, id)
			}
		}
		r.forgetUnreadable()
	}
	if len(r.moved) > 0 {
		r.findMoved(now)
	}
	if !startup {
		r.t.cp.Scanned(r.t.name, now)
	}
	r.evict(now, nil)
	r.syncWatches()
}

// quiet reports whether path, found in a clean watched directory, is a live
// file the scan need not stat: its path still leads to it (no name changed
// in the directory) and no polling is needed. A file with no write reported
// since the last scan costs no system call; a written one gets its start
// compared with its fingerprint (content replaced in place, see rescan).
func (r *run) quiet(path string) bool {
	f := r.byPath[path]
	if f == nil || f.gen == r.gen || f.state != live || f.polled {
		return false
	}
	f.gen = r.gen
	short := f.fp.Len < r.opts.FingerprintBytes && f.gz == nil
	if f.changed {
		f.changed = false
		if f.fd != nil && f.fp.Len > 0 && f.gz == nil {
			if same, err := sameStart(f.fd, f.fp, r.fpBuf); err == nil && !same {
				r.truncated(f, -1)
				r.markReady(f)
			}
		}
		if r.away.Load() {
			r.noteUnread(f)
		}
	} else if short && r.away.Load() {
		r.noteUnread(f)
	}
	return true
}

// noteUnread looks at the size of a file while reading waits for the
// pipeline: what is on disk and not delivered is what the checkpoint
// records (lag, and what a loss would be if the file went), and a file
// found empty or short gets the fingerprint of what it holds now, so that
// its content can be recognised wherever rotation moves it before it is
// read.
func (r *run) noteUnread(f *file) {
	if f.fd == nil {
		return
	}
	st, err := f.fd.Stat()
	if err != nil || st.Size() <= f.cur.offset {
		return
	}
	f.statSize.Store(st.Size())
	f.maxSize = max(f.maxSize, st.Size())
	f.growth.note(f.maxSize, time.Now())
	if f.fp.Len < r.opts.FingerprintBytes && int64(f.fp.Len) < st.Size() && f.gz == nil {
		r.refingerprint(f)
	}
	r.t.cp.Touch(f.key, f.fp, f.path, f.maxSize)
}

// gzipMagic starts every gzip file (RFC 1952, deflate method).
const gzipMagic = "\x1f\x8b\x08"

// visit looks at one path the patterns produced: a known file is rescanned,
// an unknown one discovered. It returns a file discovered at startup whose
// start is not decided yet (cur.offset -1), and whether a checkpoint knew it.
func (r *run) visit(path string, now time.Time, startup bool, link linkKind) (*file, bool) {
	for _, ex := range r.opts.Exclude {
		if match(ex, path) {
			return nil, false
		}
	}
	st, id, err := statID(path)
	if err != nil || !st.Mode().IsRegular() {
		return nil, false
	}
	if f := r.t.files[id]; f != nil {
		r.rescan(f, path, st, link)
		return nil, false
	}
	if sk, ok := r.skipped[id]; ok && sk.size == st.Size() && sk.mtime.Equal(st.ModTime()) {
		sk.gen = r.gen
		r.skipped[id] = sk
		return nil, false
	}
	if r.opts.ExcludeOlderThan > 0 && now.Sub(st.ModTime()) > r.opts.ExcludeOlderThan {
		return nil, false
	}
	f, known := r.discover(path, id, startup, now, link)
	if f == nil || f.cur.offset >= 0 {
		return nil, known
	}
	return f, known
}

// created handles a directory event announcing path: if the patterns match
// it, it is discovered now rather than at the next scan, so that a file
// renamed away soon after its creation is not missed.
func (r *run) created(path string, now time.Time) {
	if r.matched(path) {
		r.visit(path, now, false, linkUnknown)
	}
}

// matched reports whether an include pattern and no exclude pattern matches
// path.
func (r *run) matched(path string) bool {
	for _, ex := range r.opts.Exclude {
		if match(ex, path) {
			return false
		}
	}
	for _, p := range r.opts.Include {
		if match(p, path) {
			return true
		}
	}
	return false
}

// rescan updates a known file found again by a scan at path.
func (r *run) rescan(f *file, path string, st fs.FileInfo, link linkKind) {
	if f.gen == r.gen {
		return // a second path to the same file (link): read it once
	}
	f.gen = r.gen
	if f.state != live {
		// Moved back into the patterns before it was retired.
		r.t.mu.Lock()
		f.state = live
		r.t.mu.Unlock()
		if f.fd != nil {
			r.t.counters.open.Add(1)
		}
	}
	moved := f.path != path
	if moved {
		if r.byPath[f.path] == f {
			delete(r.byPath, f.path)
		}
		r.t.mu.Lock()
		f.path = path
		f.attrs = fileAttrs(r.opts, path)
		r.t.mu.Unlock()
	}
	if r.full || moved || !r.clean[filepath.Dir(path)] {
		f.polled = r.polledPath(path, link) // a link, or a directory without watch
	}
	r.byPath[path] = f
	f.changed = false
	size := st.Size()
	f.statSize.Store(size)
	if size > f.cur.offset {
		f.maxSize = max(f.maxSize, size)
		f.growth.note(f.maxSize, time.Now())
	}
	if mt := st.ModTime(); size != f.scanSize || !mt.Equal(f.scanTime) {
		// Content replaced in place (copytruncate refilled up to or past
		// our offset before we looked) shows as a changed start.
		if f.fd != nil && f.fp.Len > 0 {
			if same, err := sameStart(f.fd, f.fp, r.fpBuf); err == nil && !same {
				r.truncated(f, size)
			}
		}
		f.scanSize, f.scanTime = size, mt
	}
	if size != f.cur.offset+int64(f.partial) && !f.queued {
		f.size = size
		r.markReady(f)
	}
	if r.away.Load() && f.fp.Len < r.opts.FingerprintBytes {
		r.noteUnread(f)
	}
	r.t.cp.Touch(f.key, f.fp, path, size)
}

// discover opens a file seen for the first time and looks up its
// checkpoint. It returns the file with cur.offset set when a checkpoint of
// the same content was found and -1 otherwise, and whether any checkpoint
// of the key existed.
func (r *run) discover(path string, id devIno, startup bool, now time.Time, link linkKind) (*file, bool) {
	fd, err := r.t.open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			r.denied(path, err)
		} else {
			r.t.log.Debug("open file", "path", path, "err", err)
		}
		return nil, false
	}
	r.readable(path)
	st, err := fd.Stat()
	if err != nil || fileID(fd, st) != id {
		fd.Close() // replaced between stat and open: the next scan sees it
		return nil, false
	}
	fp, err := fingerprint(fd, r.opts.FingerprintBytes, r.fpBuf)
	if err != nil {
		r.t.log.Warn("read file start", "path", path, "err", err)
		fd.Close()
		return nil, false
	}
	gz := formatOf(r.fpBuf[:fp.Len]) != formatNone
	if gz && !r.opts.readsGzip(path) {
		// A rotated log compressed by logrotate: its lines were read from
		// the original (or are in an older rotation); never read as text.
		r.t.log.Debug("skipping compressed file", "path", path)
		r.skipped[id] = skipped{st.Size(), st.ModTime(), r.gen, false}
		fd.Close()
		return nil, false
	}
	f := &file{
		id:    id,
		key:   checkpoint.Key{Source: r.t.name, Dev: id.dev, Ino: id.ino},
		path:  path,
		attrs: fileAttrs(r.opts, path),
		fd:    fd,
		fp:    fp,
		size:  st.Size(), scanSize: st.Size(), scanTime: st.ModTime(),
		maxSize:    st.Size(),
		gen:        r.gen,
		polled:     r.polledPath(path, link),
		lastGrowth: now,
	}
	f.cur.offset = -1
	f.statSize.Store(f.size)
	f.growth.note(f.size, now)
	if gz {
		f.gz = newGzReader(fd, r.opts, id)
	}
	off, stored, known := r.t.cp.Resume(f.key)
	if known {
		same, err := sameStart(fd, stored, r.fpBuf)
		switch {
		case err == nil && same && gz:
			// Offsets count decompressed bytes. A checkpoint at the size
			// the trailer records means the file was read: skip it without
			// decompressing it again.
			off = r.resume(f.key, stored, path, off)
			if readTo(fd, off) {
				r.t.log.Debug("compressed file read before", "path", path, "offset", off)
				r.skipped[id] = skipped{st.Size(), st.ModTime(), r.gen, true}
				fd.Close()
				return nil, true
			}
			f.cur.offset = off
		case err == nil && same && off <= f.size:
			off = r.resume(f.key, stored, path, off)
			f.cur.offset = off
			r.t.log.Debug("resume file", "path", path, "offset", off)
		default:
			// Recycled inode, or truncated while we were stopped.
			if r.t.cp.Pending(f.key) > 0 {
				// The content that had this identity (a deleted
				// rotation, its compressed copy elsewhere) still has
				// ranges in flight: they stay under the content's own
				// key, where a restart looks for them, until they are
				// acknowledged.
				r.t.cp.Move(f.key, checkpoint.MovedKey(r.t.name, stored), true)
			} else {
				r.t.cp.Forget(f.key)
			}
		}
	}
	if f.cur.offset < 0 && !startup {
		f.cur.offset = 0
		f.fresh, f.found = true, now // maybe a copy of a followed file
	}
	if f.cur.offset >= 0 {
		f.offset.Store(f.cur.offset)
		f.atEOF = f.size == f.cur.offset && f.gz == nil
		if f.size > f.cur.offset || f.gz != nil {
			r.markReady(f)
		}
	}
	r.t.log.Debug("new file", "path", path, "ino", id.ino, "offset", f.cur.offset, "size", f.size)
	r.t.mu.Lock()
	r.t.files[id] = f
	r.t.mu.Unlock()
	r.byPath[path] = f
	r.t.counters.open.Add(1)
	if f.polled {
		r.polls = append(r.polls, f)
	}
	return f, known
}

// orphan starts draining a file no pattern matches any more: renamed,
// deleted, or a link now pointing elsewhere. Its descriptor stays open until
// it was read to its end and stayed idle for RotateWait.
func (r *run) orphan(f *file, now time.Time) {
	r.t.counters.rotations.Add(1)
	if r.byPath[f.path] == f {
		delete(r.byPath, f.path)
	}
	if f.fd == nil {
		// Closed for max_open_files and now unreachable by path: look for
		// it where rotation puts files, by identity or content.
		r.forget(f, false)
		if r.opts.FollowRotated {
			k := newKnown([]checkpoint.Entry{{Source: r.t.name, Dev: f.id.dev, Ino: f.id.ino,
				FingerprintLen: f.fp.Len, FingerprintSum: f.fp.Sum, Offset: f.cur.offset, Size: f.maxSize, Path: f.path}})
			r.search(r.searchDirs(false, f.path), k, now)
			if k.done[0] {
				return
			}
		}
		if f.maxSize > f.cur.offset {
			r.lose(LostClosed, f.path, f.cur.offset, f.maxSize)
		}
		return
	}
	r.t.log.Debug("file no longer matches; draining it", "path", f.path, "offset", f.cur.offset)
	r.t.mu.Lock()
	f.state = draining
	r.t.mu.Unlock()
	r.t.counters.open.Add(-1)
	f.lastGrowth = now
	r.markReady(f)
	r.nextMaint = earliest(r.nextMaint, now.Add(r.opts.PollInterval))
}

// polledPath reports whether no directory watch reports writes to path.
func (r *run) polledPath(path string, link linkKind) bool {
	if r.hints == nil {
		return true
	}
	if link == linkUnknown {
		link = linkNo
		if lst, err := os.Lstat(path); err == nil && lst.Mode()&os.ModeSymlink != 0 {
			link = linkYes
		}
	}
	if link == linkYes {
		return true // writes happen in the target's directory
	}
	dir := filepath.Dir(path)
	return r.hints.failed[dir] || !r.hints.dirs[dir]
}

// syncWatches watches the directories the scan listed, and marks clean
// those whose watch was in place before this scan: their listing stays true
// until an event says otherwise (see takeHints).
func (r *run) syncWatches() {
	if r.hints == nil {
		return
	}
	added, failed, err := r.hints.sync(r.glob.dirs)
	clear(r.clean)
	for dir := range r.glob.dirs {
		if r.hints.dirs[dir] && !added[dir] {
			r.clean[dir] = true
		}
	}
	r.glob.forget(func(dir string) bool { return r.hints.dirs[dir] })
	if len(failed) > 0 {
		r.t.counters.pollFallbacks.Add(uint64(len(failed)))
		r.fallback("cannot watch directories; polling their files", "dirs", len(failed), "first", failed[0],
			"err", err, "poll_interval", r.opts.PollInterval)
	}
	r.t.counters.watched.Store(int64(len(r.hints.dirs)))
	r.t.counters.polledDirs.Store(int64(len(r.hints.failed)))
}
