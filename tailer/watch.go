package tailer

import (
	"errors"
	"fmt"
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
// The watcher's goroutine reports through event (or eventIn), overflowed and signal;
// the tailer's loop calls sync, lost and take.
type hints struct {
	w    dirWatcher
	wake chan struct{} // capacity 1: a pending wake-up
	// window is the least time between two reads of write events
	// (Options.WriteWindow). The first write after a quiet period is
	// reported at once; the writes of the window after it wait in the
	// kernel's queue (which merges repeated writes to one file) and are
	// reported together, so that a steady trickle of lines into many files
	// costs one read and one wake-up of the tailer per window rather than
	// one per line.
	window time.Duration

	mu       sync.Mutex
	names    map[string]op
	overflow bool
	path     []byte        // scratch for eventIn
	spare    map[string]op // an empty map for take to swap in; owned by the loop

	max    int             // at most this many watched directories; 0: no bound
	dirs   map[string]bool // watched directories; owned by the loop
	failed map[string]bool // directories whose watch could not be added; owned by the loop
}

// maxHintNames bounds the names kept between two takes; past it the hints
// are dropped and reported as an overflow (a rescan).
const maxHintNames = 1 << 16

// maxSpareNames bounds the map kept for reuse after a take, so that a burst
// of events does not keep a large map for good.
const maxSpareNames = 4096

func newHints(newWatcher newWatcherFunc, window time.Duration) (*hints, error) {
	h := &hints{
		wake: make(chan struct{}, 1), window: window,
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
func (h *hints) event(name string, o op) { h.eventIn(name, nil, o) }

// eventIn records that something happened to name in dir, or to dir itself
// when name is empty (watcher goroutine). A name already recorded since the
// last take costs no allocation: a trickle of lines into a few files is many
// events for the same names.
func (h *hints) eventIn(dir string, name []byte, o op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.path = append(h.path[:0], dir...)
	if len(name) > 0 {
		h.path = append(append(h.path, '/'), name...)
	}
	if old, ok := h.names[string(h.path)]; ok {
		if old|o != old {
			h.names[string(h.path)] = old | o
		}
		return
	}
	if len(h.names) >= maxHintNames {
		h.overflow = true
		return
	}
	h.names[string(h.path)] = o
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
		h.names = h.spare
		if h.names == nil {
			h.names = make(map[string]op, len(names))
		}
		h.spare = nil
	}
	overflow = h.overflow
	h.overflow = false
	h.mu.Unlock()
	for name, o := range names {
		f(name, o)
	}
	if len(names) <= maxSpareNames {
		clear(names)
		h.spare = names // reused by the next take: no map per window
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
		if h.max > 0 && len(h.dirs) >= h.max {
			h.failed[dir] = true
			newlyFailed = append(newlyFailed, dir)
			err = fmt.Errorf("more than max_watches (%d) directories to watch: raise max_watches or narrow the patterns", h.max)
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
