package tailer

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/logpump/logpump/checkpoint"
	"github.com/logpump/logpump/event"
)

// Following content wherever rotation moved it (FollowRotated).
//
// A checkpoint is kept per identity (device, inode) with the fingerprint of
// the content's first bytes. Rotation moves content in three ways: a rename
// keeps the identity (to a name the patterns may not match), copytruncate
// copies the content to a new identity and empties the old one, compression
// writes it into a new, compressed identity and deletes the old one. After a
// restart, or when a file is truncated before it was read to its end, the
// tailer looks for the content: by identity, then by fingerprint, in the
// directories of the patterns, of the file and in RotatedDirs, among files
// it does not follow, compressed ones decompressed. What it finds is read
// from the acknowledged offset to its end (a draining file), and its
// checkpoint takes over the old one's, pending ranges included, so that a
// crash at any point still resumes below every unacknowledged byte.

// Reasons content was lost, for Stats.LostBytes.
const (
	// LostNotFound: a file with bytes past its acknowledged offset was gone
	// (rotated past every layout looked at, or deleted) when looked for.
	LostNotFound = "not_found"
	// LostTruncated: a file truncated in place (copytruncate) before its
	// end was read, whose copy was not found within rotate_wait.
	LostTruncated = "truncated"
	// LostClosed: a file closed to respect max_open_files was renamed
	// away and could not be found again.
	LostClosed = "closed"
)

// known indexes checkpoint entries by the fingerprint of their content, to
// find the file that holds a content now.
type known struct {
	entries []checkpoint.Entry
	done    []bool // resumed, continued, or given up
	byFP    map[event.Fingerprint][]int
	lens    []int // distinct fingerprint lengths, longest first
	byID    map[devIno]int
}

func newKnown(entries []checkpoint.Entry) *known {
	k := &known{
		entries: entries,
		done:    make([]bool, len(entries)),
		byFP:    map[event.Fingerprint][]int{},
		byID:    map[devIno]int{},
	}
	for i, e := range entries {
		if e.FingerprintLen == 0 {
			k.done[i] = true // no content to recognise
			continue
		}
		fp := event.Fingerprint{Len: e.FingerprintLen, Sum: e.FingerprintSum}
		k.byFP[fp] = append(k.byFP[fp], i)
		if !slices.Contains(k.lens, fp.Len) {
			k.lens = append(k.lens, fp.Len)
		}
		if e.Dev != 0 {
			k.byID[devIno{e.Dev, e.Ino}] = i
		}
	}
	slices.Sort(k.lens)
	slices.Reverse(k.lens)
	return k
}

// resolved marks the entry of key as resumed by its own file at off, with
// the other entries of the same content (a copy begun while its original
// had ranges in flight, then truncated), and returns the lowest of their
// offsets: where the file must resume for no unacknowledged byte to be
// skipped.
func (k *known) resolved(key checkpoint.Key, off int64) (int64, []checkpoint.Key) {
	i, ok := k.byID[devIno{key.Dev, key.Ino}]
	if !ok || k.entries[i].Source != key.Source || k.done[i] {
		return off, nil
	}
	own := k.entries[i].Offset
	e, others := k.claim(i)
	if len(others) == 0 || e.Offset >= own {
		// Only its own entry (whose offset off may be past, where a
		// reader replaced by a reload stopped), or none lower.
		return off, others
	}
	return min(off, e.Offset), others
}

// resume is where a file whose own checkpoint is at off resumes: see
// known.resolved. The other entries of its content are forgotten.
func (r *run) resume(key checkpoint.Key, fp event.Fingerprint, path string, off int64) int64 {
	if r.known == nil {
		return off
	}
	low, others := r.known.resolved(key, off)
	for _, k := range others {
		r.t.cp.Forget(k)
	}
	if low < off {
		r.t.log.Info("file resumes below its checkpoint: a copy of it had ranges in flight",
			"path", path, "offset", low, "checkpoint", off)
		r.t.cp.Begin(key, fp, path, low)
	}
	return low
}

// match returns the first entry not done whose content head starts with,
// and that a file of size bytes (compressed: size unknown) can hold: a copy
// or a rotation of content holds at least every byte that was seen of it,
// while a new file that only starts like it (a header longer than the
// fingerprint) is usually shorter, and must not be skipped into.
func (k *known) match(head []byte, path string, size int64, compressed bool) (int, bool) {
	plainOK := rotatedName(filepath.Base(path))
	for _, l := range k.lens {
		if l > len(head) {
			continue
		}
		fp := event.Fingerprint{Len: l, Sum: fnv1a(fnvOffset, head[:l])}
		for _, i := range k.byFP[fp] {
			e := k.entries[i]
			if !k.done[i] && (compressed || (plainOK && size >= max(e.Size, e.Offset))) {
				return i, true
			}
		}
	}
	return 0, false
}

// rotatedName reports whether name carries a rotation suffix: '.', '-' or
// '_' and a digit after its root (app.log.1, app.log-20261207,
// 0.log.20261207-101500). Content is looked for by fingerprint only in
// compressed files and in files so named: a new app.log whose first bytes
// are a header longer than the fingerprint is not an old file's rotation.
func rotatedName(name string) bool {
	for i := 1; i+1 < len(name); i++ {
		switch name[i] {
		case '.', '-', '_':
			if c := name[i+1]; c >= '0' && c <= '9' {
				return true
			}
		}
	}
	return false
}

// claim marks entry i done, with every other entry not done of the same
// content (a content followed under two keys: its copy or compressed file
// begun while the content's own entry still had ranges pending), and
// returns it with the lowest of their offsets, so that no unacknowledged
// byte is skipped, and the keys of the others, to forget.
func (k *known) claim(i int) (checkpoint.Entry, []checkpoint.Key) {
	e := k.entries[i]
	k.done[i] = true
	var others []checkpoint.Key
	fp := event.Fingerprint{Len: e.FingerprintLen, Sum: e.FingerprintSum}
	for _, j := range k.byFP[fp] {
		if k.done[j] {
			continue
		}
		k.done[j] = true
		o := k.entries[j]
		e.Offset = min(e.Offset, o.Offset)
		e.Size = max(e.Size, o.Size)
		others = append(others, checkpoint.Key{Source: o.Source, Dev: o.Dev, Ino: o.Ino})
	}
	return e, others
}

func (k *known) pending() bool {
	return slices.Contains(k.done, false)
}

// knows reports whether a file of identity id starting with head (raw, and
// decompressed when compressed) is the file or the content of an entry,
// done or not. An entry's identity counts only with its content: file
// systems hand out the inodes of deleted files again (logrotate's compress
// frees one right before its create takes one), and a file rotated away
// unseen on such an inode is not the deleted content.
func (k *known) knows(id devIno, raw, head []byte) bool {
	if i, ok := k.byID[id]; ok {
		e := k.entries[i]
		for _, h := range [][]byte{raw, head} {
			if e.FingerprintLen <= len(h) && fnv1a(fnvOffset, h[:e.FingerprintLen]) == e.FingerprintSum {
				return true
			}
		}
	}
	for _, l := range k.lens {
		if l <= len(head) && len(k.byFP[event.Fingerprint{Len: l, Sum: fnv1a(fnvOffset, head[:l])}]) > 0 {
			return true
		}
	}
	return false
}

// contentHead reads the first FingerprintBytes of a file's content (decompressed
// when gz is set) into r.headBuf (not cmpBuf: a copy check that notices a
// truncation searches while it holds cmpBuf).
func (r *run) contentHead(fd *os.File, gz *gzReader) []byte {
	n := r.opts.FingerprintBytes
	if cap(r.headBuf) < n {
		r.headBuf = make([]byte, n)
	}
	var src io.ReaderAt = fd
	if gz != nil {
		src = gz
	}
	k, err := src.ReadAt(r.headBuf[:n], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return r.headBuf[:k]
}

// continueKnown starts f, found by the first scan with no checkpoint of its
// own, where a checkpoint of the content it holds says: a copy or a
// compressed rotation made while the agent was stopped.
func (r *run) continueKnown(f *file) bool {
	h := r.contentHead(f.fd, f.gz)
	i, ok := r.known.match(h, f.path, f.size, f.gz != nil)
	if !ok {
		return false
	}
	e, others := r.known.claim(i)
	next := r.continueContent(f, e, others)
	f.atEOF = f.gz == nil && f.size == next
	if f.size > next || f.gz != nil {
		r.markReady(f)
	}
	return true
}

// continueContent starts f, found to hold the content of entry e, where
// e's checkpoint says, and returns that offset.
func (r *run) continueContent(f *file, e checkpoint.Entry, others []checkpoint.Key) int64 {
	next := r.takeOver(e, f, others)
	r.t.log.Info("file holds the content of a file read before; reading it from the acknowledged offset",
		"path", f.path, "was", e.Path, "offset", next)
	r.t.counters.recovered.Add(1)
	f.fresh = false
	f.cur = cursor{offset: next}
	f.offset.Store(next)
	return next
}

// takeOver gives f the checkpoint of entry e, whose content f holds, and
// returns where f is read from.
func (r *run) takeOver(e checkpoint.Entry, f *file, others []checkpoint.Key) int64 {
	for _, k := range others {
		r.t.cp.Forget(k)
	}
	from := checkpoint.Key{Source: e.Source, Dev: e.Dev, Ino: e.Ino}
	if len(others) == 0 {
		if from != f.key {
			if next, ok := r.t.cp.Move(from, f.key, false); ok {
				// Content truncated while a batch of it waited to be
				// tracked (reading blocked at the in-flight cap): e's
				// offset, where reading stopped, is past the last range
				// tracked, and that batch is delivered from the original.
				return max(next, e.Offset)
			}
		} else if off, _, ok := r.t.cp.Resume(f.key); ok {
			return off
		}
	} else if from != f.key {
		r.t.cp.Forget(from)
	}
	r.t.cp.Begin(f.key, f.fp, f.path, e.Offset)
	return e.Offset
}

// searchDirs returns the directories rotated content of the files in paths
// may be in: theirs and RotatedDirs, and with all, every directory the
// patterns lead to (after a restart, once; a truncation while running looks
// in its own directory only, not in the hundreds a pattern such as
// /var/log/pods/*/*/*.log leads to).
func (r *run) searchDirs(all bool, paths ...string) []string {
	var dirs []string
	add := func(d string) {
		if d != "" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, p := range paths {
		add(filepath.Dir(p))
	}
	for _, d := range r.opts.RotatedDirs {
		add(filepath.Clean(d))
	}
	if all {
		for d := range r.glob.dirs {
			add(d)
		}
	}
	return dirs
}

// recoverUnresolved looks, after the first scan, for the content of every
// checkpoint entry no followed file resumed or continued: renamed out of
// the patterns, copied or compressed while the agent was stopped. What is
// found is read from its acknowledged offset; what is not is reported lost
// when bytes past that offset were known, and forgotten.
func (r *run) recoverUnresolved(now time.Time) {
	k := r.known
	if len(k.entries) == 0 {
		return // a first run: nothing was followed before
	}
	var paths []string
	for i, e := range k.entries {
		if !k.done[i] {
			paths = append(paths, e.Path)
		}
	}
	dirs := r.searchDirs(true, paths...)
	r.search(dirs, k, now)
	r.unseenRotations(dirs, now)
	for i, e := range k.entries {
		if k.done[i] {
			continue
		}
		key := checkpoint.Key{Source: e.Source, Dev: e.Dev, Ino: e.Ino}
		if e.Size > e.Offset {
			r.lose(LostNotFound, e.Path, e.Offset, e.Size)
		} else {
			r.t.log.Debug("file read before is gone", "path", e.Path, "offset", e.Offset)
		}
		r.t.cp.Forget(key)
	}
}

// unseenRotations reads from their start the files that were created and
// rotated away while the agent was stopped, never seen by it: in the
// directories searched, files no pattern matches and no checkpoint knows
// (by identity or content), named as a rotation of a file the source
// followed (its name, then '.', '-' or '_': app.log.1, app.log-20261207.gz,
// kubelet's 0.log.20261207-101500), and modified after the source's
// checkpoints were last written. A file rotated whole during a restart of a
// chatty container is such a file.
func (r *run) unseenRotations(dirs []string, now time.Time) {
	k := r.known
	// The last scan of the run before, as saved (to the second): content
	// rotated before it was seen then. Without one, the newest time a file
	// was seen, less a scan interval.
	since := r.since
	bases := map[string]bool{}
	for _, e := range k.entries {
		if r.since.IsZero() && e.Seen.Add(-r.opts.ScanInterval).After(since) {
			since = e.Seen.Add(-r.opts.ScanInterval)
		}
		bases[filepath.Base(e.Path)] = true
	}
	for _, f := range r.t.files {
		bases[filepath.Base(f.path)] = true
	}
	since = since.Add(-time.Second)
	all := newKnown(k.entries)
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range ents {
			if !de.Type().IsRegular() || !rotationOf(de.Name(), bases) {
				continue
			}
			path := filepath.Join(dir, de.Name())
			if r.matched(path) {
				continue // the scan decided about it
			}
			st, id, err := statID(path)
			if err != nil || !st.ModTime().After(since) || st.Size() == 0 {
				continue
			}
			if r.t.files[id] != nil || r.skipped[id].read {
				continue
			}
			fd, err := openID(path, id)
			if err != nil {
				continue
			}
			raw := r.contentHead(fd, nil)
			var gz *gzReader
			if formatOf(raw) != formatNone {
				gz = newGzReader(fd, r.opts, id)
			}
			raw = append(r.rawHead[:0], raw...) // contentHead reuses its buffer
			r.rawHead = raw
			if all.knows(id, raw, r.contentHead(fd, gz)) {
				fd.Close()
				continue
			}
			r.t.log.Info("file rotated while the agent was stopped, never read; reading it from the start", "path", path)
			if _, stale := all.byID[id]; stale {
				// The checkpoint under its identity is another content's
				// (a recycled inode), looked for above: not where this
				// one starts.
				r.t.cp.Forget(checkpoint.Key{Source: r.t.name, Dev: id.dev, Ino: id.ino})
			}
			r.followRotated(fd, gz, path, id, st.Size(), checkpoint.Entry{Source: r.t.name, Dev: id.dev, Ino: id.ino, Path: path}, nil, now)
		}
	}
}

// rotationOf reports whether name is a rotated name of one of bases.
func rotationOf(name string, bases map[string]bool) bool {
	for i := range len(name) {
		switch name[i] {
		case '.', '-', '_':
			if i > 0 && i < len(name)-1 && bases[name[:i]] {
				return true
			}
		}
	}
	return false
}

// openID opens path if it is still the file of identity id: a rename
// between the listing's stat and the open would otherwise hand over
// another file than the one checked.
func openID(path string, id devIno) (*os.File, error) {
	fd, err := openFile(path)
	if err != nil {
		return nil, err
	}
	st, err := fd.Stat()
	if err == nil && fileID(fd, st) != id {
		err = errors.New("replaced since it was listed")
	}
	if err != nil {
		fd.Close()
		return nil, err
	}
	return fd, nil
}

// lose reports bytes [from, to) of path as lost, once, and counts them.
func (r *run) lose(reason, path string, from, to int64) {
	r.t.log.Warn("unread end of a rotated file not found; its bytes are lost",
		"path", path, "reason", reason, "from", from, "to", to, "bytes", to-from)
	r.t.counters.lost(reason, to-from)
}

// search lists dirs and follows, as draining files, those not followed
// whose identity or content is an entry of k not done yet.
func (r *run) search(dirs []string, k *known, now time.Time) {
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range ents {
			if !de.Type().IsRegular() || !k.pending() {
				continue
			}
			path := filepath.Join(dir, de.Name())
			st, id, err := statID(path)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			if r.t.files[id] != nil || r.skipped[id].read {
				continue // followed, or read to its end
			}
			r.searchFile(path, id, st.Size(), k, now)
		}
	}
}

func (r *run) searchFile(path string, id devIno, size int64, k *known, now time.Time) {
	i, byID := k.byID[id]
	if byID && k.done[i] {
		byID = false
	}
	if !byID && len(k.lens) > 0 && size == 0 {
		return
	}
	fd, err := openID(path, id)
	if err != nil {
		return
	}
	var gz *gzReader
	if formatOf(r.contentHead(fd, nil)) != formatNone {
		gz = newGzReader(fd, r.opts, id)
	}
	head := r.contentHead(fd, gz)
	if byID {
		// The same inode: the same content if it starts as the entry
		// says (decompressed: an entry a compressed file took over keeps
		// the fingerprint of the text until a range of it is tracked).
		e := k.entries[i]
		fp := event.Fingerprint{Len: e.FingerprintLen, Sum: e.FingerprintSum}
		same := fp.Len <= len(head) && fnv1a(fnvOffset, head[:fp.Len]) == fp.Sum
		if !same && gz != nil {
			same, _ = sameStart(fd, fp, r.fpBuf)
		}
		byID = same // otherwise the inode holds other content now
	}
	if !byID {
		var ok bool
		if i, ok = k.match(head, path, size, gz != nil); !ok {
			fd.Close()
			return
		}
	}
	e, others := k.claim(i)
	r.followRotated(fd, gz, path, id, size, e, others, now)
}

// followRotated reads fd, found to hold the content of entry e, from e's
// acknowledged offset to its end, as a draining file.
func (r *run) followRotated(fd *os.File, gz *gzReader, path string, id devIno, size int64, e checkpoint.Entry, others []checkpoint.Key, now time.Time) {
	fp, err := fingerprint(fd, r.opts.FingerprintBytes, r.fpBuf)
	if err != nil {
		fd.Close()
		return
	}
	f := &file{
		id:    id,
		key:   checkpoint.Key{Source: r.t.name, Dev: id.dev, Ino: id.ino},
		path:  path,
		attrs: fileAttrs(r.opts, path),
		fd:    fd,
		gz:    gz,
		fp:    fp,
		state: draining,
		size:  size, scanSize: size,
		gen:        r.gen,
		lastGrowth: now,
		maxSize:    size,
	}
	next := r.takeOver(e, f, others)
	if gz == nil && size <= next {
		fd.Close() // nothing past the offset
		return
	}
	if gz != nil && readTo(fd, next) {
		fd.Close() // read to its end before
		return
	}
	// The entry taken over may carry a shorter fingerprint (the file was
	// young when it was last seen): record what the file holds now, so that
	// a compressed copy of it is recognised after another restart.
	r.t.cp.Touch(f.key, f.fp, f.path, size)
	r.t.log.Info("reading the unread end of a rotated file", "path", path, "was", e.Path, "offset", next, "size", size)
	r.t.counters.recovered.Add(1)
	f.cur = cursor{offset: next}
	f.offset.Store(next)
	f.statSize.Store(size)
	r.t.mu.Lock()
	r.t.files[id] = f
	r.t.mu.Unlock()
	r.polls = append(r.polls, f)
	r.markReady(f)
	r.nextMaint = earliest(r.nextMaint, now.Add(r.opts.PollInterval))
}

// movedContent is content a truncation (copytruncate) took out of a file
// before it was read to its end; its checkpoint is at its MovedKey until a
// copy is found.
type movedContent struct {
	fp       event.Fingerprint
	path     string
	offset   int64 // read up to here
	size     int64 // the largest size seen before the truncation
	at       time.Time
	resolved bool
}

// findMoved looks for the copies of content truncated before it was read
// to its end; content whose copy was not found within the copy window is
// reported lost.
func (r *run) findMoved(now time.Time) {
	keep := r.moved[:0]
	for _, m := range r.moved {
		if m.resolved {
			continue
		}
		e := checkpoint.Entry{Source: r.t.name, Ino: m.fp.Sum, FingerprintLen: m.fp.Len, FingerprintSum: m.fp.Sum,
			Offset: m.offset, Size: m.size, Path: m.path}
		if r.followedCopy(m) {
			continue // a followed file holds it (a copy the patterns match)
		}
		if r.opts.FollowRotated {
			k := newKnown([]checkpoint.Entry{e})
			r.search(r.searchDirs(false, m.path), k, now)
			if k.done[0] {
				continue
			}
		}
		if now.Sub(m.at) >= r.copyWindow() {
			if m.size > m.offset {
				r.lose(LostTruncated, m.path, m.offset, m.size)
			}
			// Nothing will take the content over: drop its entry once its
			// pending ranges are acknowledged.
			mk := checkpoint.MovedKey(r.t.name, m.fp)
			r.t.cp.Move(mk, mk, true)
			continue
		}
		keep = append(keep, m)
	}
	clear(r.moved[len(keep):])
	r.moved = keep
}

// followedCopy reports whether a followed file in m's directory starts with
// m's content: a copy the patterns match, read as a new file (nothing of m
// was read) or taken over by the copy check.
func (r *run) followedCopy(m *movedContent) bool {
	dir := filepath.Dir(m.path)
	for _, o := range r.t.files {
		if o.fd == nil || o.gz != nil || o.fp.Len < m.fp.Len || filepath.Dir(o.path) != dir {
			continue
		}
		if same, err := sameStart(o.fd, m.fp, r.fpBuf); err == nil && same {
			return true
		}
	}
	return false
}

// start runs the first scan. With FollowRotated, the checkpoints loaded are
// matched with the files found first: files with no checkpoint of their own
// that hold the content of one (copied or compressed while the agent was
// stopped) continue from its offset, and the content no followed file holds
// is looked for outside the patterns.
func (r *run) start() {
	now := time.Now()
	if r.opts.FollowRotated {
		r.known = newKnown(r.t.cp.Entries(r.t.name))
		r.since = r.t.cp.LastScan(r.t.name)
	}
	r.scan(now, true)
	if r.known != nil {
		r.recoverUnresolved(now)
		r.known = nil
	}
}
