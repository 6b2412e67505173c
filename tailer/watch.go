package tailer

import (
	"errors"
	"io/fs"
	"sync"
	"time"
)

// op is what a directory event says happened to a name.
type op uint8

const (
	opCreate op = 1 << iota // created, or moved in
	opWrite                 // written or truncated
	opRemove                // removed (for a watched directory: the watch is gone)
	opRename                // moved away
)

// dirWatcher watches directories for changes of the names in them and
// writes to the files they hold, reporting to the hints it was made for.
// The production watcher is inotify (newInotify); tests inject others
// through Tailer.newWatcher.
type dirWatcher interface {
	// Add watches dir. Errors: fs.ErrNotExist when dir is gone; ENOSPC
	// when the kernel's watch limit (max_user_watches) is reached.
	Add(dir string) error
	Remove(dir string) error
	// Close stops the watcher; no report follows its return.
	Close() error
}

// newWatcherFunc makes a watcher reporting to h. The inotify one fails with
// EMFILE when the kernel's instance limit (max_user_instances) is reached.
type newWatcherFunc func(h *hints) (dirWatcher, error)

// hints collects directory events as wake-up hints: the names that changed
// and whether the kernel's event queue overflowed. Events are only hints;
// the periodic scan decides what exists.
//
// The watcher's goroutine reports through event, overflowed and signal;
// the tailer's loop calls sync, lost and take.
type hints struct {
	w    dirWatcher
	wake chan struct{} // capacity 1: a pending wake-up

	mu       sync.Mutex
	names    map[string]op
	overflow bool

	dirs   map[string]bool // watched directories; owned by the loop
	failed map[string]bool // directories whose watch could not be added; owned by the loop
}

// maxHintNames bounds the names kept between two takes; past it the hints
// are dropped and reported as an overflow (a rescan).
const maxHintNames = 1 << 16

// hintWindow is the least time between two wake-ups of the tailer by
// directory events. The first event of a quiet period wakes it at once; the
// events of the window after it wait in the kernel's queue (which merges
// repeated writes to one file) and are read and handed over together, so
// that a steady trickle of lines into many files costs one read and one
// wake-up per window rather than one per line.
const hintWindow = 250 * time.Millisecond

func newHints(newWatcher newWatcherFunc) (*hints, error) {
	h := &hints{
		wake:  make(chan struct{}, 1),
		names: map[string]op{}, dirs: map[string]bool{}, failed: map[string]bool{},
	}
	w, err := newWatcher(h)
	if err != nil {
		return nil, err
	}
	h.w = w
	return h, nil
}

// event records that something happened to name (watcher goroutine).
func (h *hints) event(name string, o op) {
	h.mu.Lock()
	if len(h.names) < maxHintNames {
		h.names[name] |= o
	} else {
		h.overflow = true
	}
	h.mu.Unlock()
}

// overflowed records that events were lost (watcher goroutine).
func (h *hints) overflowed() {
	h.mu.Lock()
	h.overflow = true
	h.mu.Unlock()
}

// signal wakes the tailer's loop after a run of events (watcher goroutine).
func (h *hints) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// take hands the collected names to f and clears them; it reports whether
// the queue overflowed since the last take.
func (h *hints) take(f func(name string, o op)) (overflow bool) {
	h.mu.Lock()
	var names map[string]op
	if len(h.names) > 0 {
		names = h.names
		h.names = make(map[string]op, len(names))
	}
	overflow = h.overflow
	h.overflow = false
	h.mu.Unlock()
	for name, o := range names {
		f(name, o)
	}
	return overflow
}

// sync watches exactly the directories in want. It returns the directories
// watched from now on, and those whose watch failed for the first time (to
// log) with the error.
func (h *hints) sync(want map[string]struct{}) (added map[string]bool, newlyFailed []string, err error) {
	for dir := range h.dirs {
		if _, ok := want[dir]; !ok {
			_ = h.w.Remove(dir) // the directory may be gone already
			delete(h.dirs, dir)
		}
	}
	for dir := range h.failed {
		if _, ok := want[dir]; !ok {
			delete(h.failed, dir)
		}
	}
	for dir := range want {
		if h.dirs[dir] || h.failed[dir] {
			continue
		}
		if e := h.w.Add(dir); e != nil {
			if errors.Is(e, fs.ErrNotExist) {
				continue // not there yet; the next scan tries again
			}
			h.failed[dir] = true
			newlyFailed = append(newlyFailed, dir)
			err = e
			continue
		}
		h.dirs[dir] = true
		if added == nil {
			added = map[string]bool{}
		}
		added[dir] = true
	}
	return added, newlyFailed, err
}

// lost forgets the watch of dir, which was removed or renamed (a watch
// follows the directory's inode, not its path). The next scan adds it again
// if the path is still a directory to watch.
func (h *hints) lost(dir string) {
	_ = h.w.Remove(dir) // gone already when the directory was removed
	delete(h.dirs, dir)
}

func (h *hints) close() {
	h.w.Close()
}
