package tailer

import (
	"errors"
	"io/fs"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// hints collects directory events from one fsnotify watcher as wake-up
// hints: the names that changed and whether the kernel queue overflowed.
// Events are only hints; the periodic scan decides what exists.
//
// One goroutine (started by newHints, ended by close) drains the watcher's
// channels; the tailer's loop calls add, remove and take.
type hints struct {
	w    *fsnotify.Watcher
	wake chan struct{} // capacity 1: a pending wake-up
	done chan struct{}

	mu       sync.Mutex
	names    map[string]fsnotify.Op
	overflow bool

	dirs   map[string]bool // watched directories; owned by the loop
	failed map[string]bool // directories whose watch could not be added; owned by the loop
}

// maxHintNames bounds the names kept between two takes; past it the hints
// are dropped and reported as an overflow (a rescan).
const maxHintNames = 1 << 16

func newHints() (*hints, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	h := &hints{
		w: w, wake: make(chan struct{}, 1), done: make(chan struct{}),
		names: map[string]fsnotify.Op{}, dirs: map[string]bool{}, failed: map[string]bool{},
	}
	go h.drain()
	return h, nil
}

func (h *hints) drain() {
	defer close(h.done)
	events, errs := h.w.Events, h.w.Errors
	for events != nil || errs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			h.mu.Lock()
			if len(h.names) < maxHintNames {
				h.names[ev.Name] |= ev.Op
			} else {
				h.overflow = true
			}
			h.mu.Unlock()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				continue // other errors are per-watch and show up again on Add
			}
			h.mu.Lock()
			h.overflow = true
			h.mu.Unlock()
		}
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// take hands the collected names to f and clears them; it reports whether
// the queue overflowed since the last take.
func (h *hints) take(f func(name string, op fsnotify.Op)) (overflow bool) {
	h.mu.Lock()
	var names map[string]fsnotify.Op
	if len(h.names) > 0 {
		names = h.names
		h.names = make(map[string]fsnotify.Op, len(names))
	}
	overflow = h.overflow
	h.overflow = false
	h.mu.Unlock()
	for name, op := range names {
		f(name, op)
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
	<-h.done
}
