package jfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Journal reads the journal files of some directories or globs as one
// journal: entries interleaved as journalctl interleaves them (see
// [Compare]), each once. It follows the files as they grow, are rotated
// (renamed: the open descriptor follows the file) and vacuumed (deleted:
// entries not yet read stay readable until the file is left). It is not
// safe for concurrent use.
type Journal struct {
	dirs  []string // directories whose *.journal files are read
	globs []string // file globs
	// OnSkip is called when a file is left unread or partly read because
	// it is damaged or unreadable (nil: ignored). The journal goes on with
	// the other files. A file being written (online) is tried again from
	// where it failed once its header counts more entries.
	OnSkip func(path string, err error)

	files []*jf
	// failed holds the files that could not be opened, by path, with
	// when that was first seen (zero once reported): each is tried again
	// at every Scan, and reported once (a file journald has just created
	// has no header yet: reported only if it still has none after
	// newFileGrace).
	failed  map[string]time.Time
	cache   cache
	dec     decompressor
	last    Location
	started bool
}

// jf is one open file of a journal and where reading it stands.
type jf struct {
	f       *File
	id      os.FileInfo // the open file's identity (os.SameFile)
	pos     Position
	head    Entry // the next entry not yet returned, when hasHead
	hasHead bool
	gone    bool // no longer found by Scan
	bad     bool // skipped after an error
	// badAt is the header's entry count when an online file failed: it is
	// tried again, from where it failed, once journald wrote more to it.
	badAt uint64
}

// Directories returns a journal of the files in dirs and, as journalctl
// --directory, in their subdirectories named by a machine ID.
func Directories(dirs ...string) *Journal { return &Journal{dirs: dirs} }

// Files returns a journal of the files matching the globs.
func Files(globs ...string) *Journal { return &Journal{globs: globs} }

// Close closes every file.
func (j *Journal) Close() {
	for _, f := range j.files {
		f.f.Close()
	}
	j.files = nil
}

// isJournal reports whether name is a journal file: NAME.journal
// (online or archived as NAME@….journal) or NAME.journal~ (archived
// after an unclean shutdown).
func isJournal(name string) bool {
	return strings.HasSuffix(name, ".journal") || strings.HasSuffix(name, ".journal~")
}

func isMachineID(name string) bool {
	if len(name) != 32 {
		return false
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Scan finds the journal's files: it opens new ones and marks those no
// longer found. An error means the journal cannot be listed (a directory
// is missing or unreadable); a file that cannot be opened is skipped
// (OnSkip) and tried again at the next Scan.
func (j *Journal) Scan() error {
	var paths []string
	var errs []error
	for _, d := range j.dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			errs = append(errs, listError(d, err))
			continue
		}
		for _, e := range ents {
			switch {
			case e.IsDir() && isMachineID(e.Name()):
				sub, err := os.ReadDir(filepath.Join(d, e.Name()))
				if err != nil {
					errs = append(errs, listError(filepath.Join(d, e.Name()), err))
					continue
				}
				for _, s := range sub {
					if !s.IsDir() && isJournal(s.Name()) {
						paths = append(paths, filepath.Join(d, e.Name(), s.Name()))
					}
				}
			case !e.IsDir() && isJournal(e.Name()):
				paths = append(paths, filepath.Join(d, e.Name()))
			}
		}
	}
	for _, g := range j.globs {
		m, err := filepath.Glob(g)
		if err != nil {
			errs = append(errs, fmt.Errorf("journal files %s: %w", g, err))
		}
		paths = append(paths, m...)
	}
	if len(errs) == len(j.dirs)+len(j.globs) && len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, f := range j.files {
		f.gone = true
	}
	for p := range j.failed {
		if !slices.Contains(paths, p) {
			delete(j.failed, p)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue // removed since listed
		}
		i := slices.IndexFunc(j.files, func(f *jf) bool { return os.SameFile(f.id, fi) })
		if i >= 0 {
			j.files[i].gone = false
			j.files[i].f.path = p
			continue
		}
		f, err := open(p, &j.cache, &j.dec)
		if err != nil {
			j.openFailed(p, err)
			continue
		}
		delete(j.failed, p)
		id, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		j.files = append(j.files, &jf{f: f, id: id})
	}
	return nil
}

// newFileGrace is how long a file may lack a journal header before it is
// reported: journald creates a file, then writes its header.
const newFileGrace = 10 * time.Second

func (j *Journal) openFailed(p string, err error) {
	if j.failed == nil {
		j.failed = map[string]time.Time{}
	}
	first, seen := j.failed[p]
	if seen && first.IsZero() {
		return // reported
	}
	var ce *CorruptError
	if errors.As(err, &ce) && ce.Offset == 0 && ce.young {
		if !seen {
			j.failed[p] = time.Now()
			return
		}
		if time.Since(first) < newFileGrace {
			return
		}
	}
	j.failed[p] = time.Time{}
	if j.OnSkip != nil {
		j.OnSkip(p, openError(err))
	}
}

// Pending reports whether a file was found without a header yet: Scan
// should run again soon, not only when files are created or removed.
func (j *Journal) Pending() bool {
	for _, first := range j.failed {
		if !first.IsZero() {
			return true
		}
	}
	return false
}

func listError(dir string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("list journal directory %s: %w (the agent must be root, in the group systemd-journal, or have CAP_DAC_READ_SEARCH)", dir, err)
	}
	return fmt.Errorf("list journal directory %s: %w", dir, err)
}

func openError(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (the agent must be root, in the group systemd-journal, or have CAP_DAC_READ_SEARCH)", err)
	}
	return err
}

// NumFiles returns how many files the journal holds open.
func (j *Journal) NumFiles() int { return len(j.files) }

// Seek makes the journal go on after the entry at loc (that entry not
// returned again). It reports whether any file holds that entry; when none
// does (vacuumed), reading goes on at the first entry after it.
func (j *Journal) Seek(loc Location) bool {
	j.last, j.started = loc, true
	found := false
	for _, f := range j.files {
		f.hasHead = false
		if f.f.h.SeqnumID == loc.SeqnumID && f.f.h.NEntries > 0 && f.f.h.TailEntrySeqnum < loc.Seqnum && f.f.h.State != StateOnline {
			// An archived file of the same writer, wholly before loc.
			f.pos = Position{seen: f.f.h.NEntries}
			continue
		}
		if j.load(f, &found) && Compare(&f.head.Location, &loc) == 0 {
			found = true
		}
	}
	return found
}

// SeekTail makes the journal go on after its last entry now, without
// reading the entries before it.
func (j *Journal) SeekTail() {
	var last, e Entry
	found := false
	for _, f := range j.files {
		f.hasHead = false
		if f.bad {
			continue
		}
		off, ok, err := f.f.End(&f.pos)
		if err == nil && ok {
			err = f.f.Entry(off, &e)
		}
		if err != nil {
			j.skip(f, err)
			continue
		}
		if ok && (!found || Compare(&e.Location, &last.Location) > 0) {
			last.Location, found = e.Location, true
		}
	}
	if found {
		j.last, j.started = last.Location, true
	}
}

// Refresh reads the headers of the files being written again, so that
// their new entries are read, and closes the files that Scan no longer
// found once they are read to their end.
func (j *Journal) Refresh() {
	for _, f := range j.files {
		retry := f.bad && f.f.h.State == StateOnline
		if f.bad && !retry || f.hasHead || f.f.h.State == StateArchived && f.pos.seen >= f.f.h.NEntries {
			continue
		}
		if err := f.f.Refresh(); err != nil {
			if !retry {
				j.skip(f, err)
			}
			continue
		}
		if retry && f.f.h.NEntries != f.badAt {
			f.bad = false
		}
	}
	j.files = slices.DeleteFunc(j.files, func(f *jf) bool {
		if f.gone && !f.hasHead && (f.bad || f.pos.seen >= f.f.h.NEntries) {
			f.f.Close()
			return true
		}
		return false
	})
}

func (j *Journal) skip(f *jf, err error) {
	f.bad, f.hasHead, f.badAt = true, false, f.f.h.NEntries
	if j.OnSkip != nil {
		j.OnSkip(f.f.path, err)
	}
}

// load reads f's next entry after the journal's last one into f.head.
// found is set when f holds the entry at the last location.
func (j *Journal) load(f *jf, found *bool) bool {
	if f.hasHead {
		return true
	}
	if f.bad {
		return false
	}
	for {
		at := f.pos
		off, ok, err := f.f.Next(&f.pos)
		if err != nil {
			j.skip(f, err)
			return false
		}
		if !ok {
			return false
		}
		if err := f.f.Entry(off, &f.head); err != nil {
			f.pos = at // an online file is tried again from this entry
			j.skip(f, err)
			return false
		}
		if j.started {
			c := Compare(&f.head.Location, &j.last)
			if c == 0 && found != nil {
				*found = true
			}
			if c <= 0 {
				continue // read already, or the same entry in another file
			}
		}
		f.hasHead = true
		return true
	}
}

// Next returns the next entry (its location and data offsets, copied into
// e) and the file to read its data from, valid until the next Scan; ok
// false when no file holds more now (call Refresh, and Scan, then try
// again).
func (j *Journal) Next(e *Entry) (*File, bool) {
	var min *jf
	for _, f := range j.files {
		if !j.load(f, nil) {
			continue
		}
		if min == nil || Compare(&f.head.Location, &min.head.Location) < 0 {
			min = f
		}
	}
	if min == nil {
		return nil, false
	}
	e.Location, e.Offset = min.head.Location, min.head.Offset
	e.Items = append(e.Items[:0], min.head.Items...)
	min.hasHead = false
	j.last, j.started = e.Location, true
	return min.f, true
}

// Last returns the location of the last entry returned or sought.
func (j *Journal) Last() (Location, bool) { return j.last, j.started }
