//go:build !linux || portablewatch

package tailer

import (
	"errors"

	"github.com/fsnotify/fsnotify"
)

// fsnotifyWatcher is the watcher where inotify is not available: each
// fsnotify event is handed over as it comes.
type fsnotifyWatcher struct {
	w    *fsnotify.Watcher
	done chan struct{}
}

func newInotify(h *hints) (dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &fsnotifyWatcher{w: w, done: make(chan struct{})}
	go fw.drain(h)
	return fw, nil
}

func (fw *fsnotifyWatcher) Add(dir string) error    { return fw.w.Add(dir) }
func (fw *fsnotifyWatcher) Remove(dir string) error { return fw.w.Remove(dir) }

func (fw *fsnotifyWatcher) Close() error {
	err := fw.w.Close()
	<-fw.done
	return err
}

func (fw *fsnotifyWatcher) drain(h *hints) {
	defer close(fw.done)
	events, errs := fw.w.Events, fw.w.Errors
	for events != nil || errs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			var o op
			if ev.Has(fsnotify.Create) {
				o |= opCreate
			}
			if ev.Has(fsnotify.Write) {
				o |= opWrite
			}
			if ev.Has(fsnotify.Remove) {
				o |= opRemove
			}
			if ev.Has(fsnotify.Rename) {
				o |= opRename
			}
			if o != 0 {
				h.event(ev.Name, o)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				h.overflowed()
			}
		}
		h.signal()
	}
}
