//go:build linux && !portablewatch

package tailer

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify watches directories with two inotify instances, each read by its
// own goroutine:
//
//   - names: creations, moves and deletions in the directories, and of the
//     directories themselves. They are rare and read as they come, so that a
//     file created and renamed away at once is still seen under its name.
//   - writes: files in the directories written or truncated. Its goroutine
//     reads every queued event at once, reports them, then leaves the
//     instance alone for the hints' window while the kernel queues (and
//     merges) the next ones, so that a steady trickle of lines costs one read
//     and one wake-up of the tailer per window rather than per line.
//
// An instance is not put in the Go runtime's poller itself: registered there
// (edge-triggered, for good), it would wake the poller's thread at every
// event queued, even while nobody reads it: about 100 wake-ups a second for
// 1,000 lines/s into 100 files written in rounds every 10 ms. Each instance sits
// in a small epoll instance of its own, one-shot: it wakes the runtime's
// poller (which holds that epoll instance) for its first event only, and is
// armed again once its events were read and its window is over.
//
// fsnotify was used before; its reader hands over each event as it comes,
// which costs a read and two goroutine switches per written line.
type inotify struct {
	names, writes *inotifyFD
}

// Event masks of the two instances. IN_IGNORED (the watch is gone) comes
// with either.
const (
	namesMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	writesMask = unix.IN_MODIFY | unix.IN_ONLYDIR
)

func newInotify(h *hints) (dirWatcher, error) {
	names, err := newInotifyFD(h, namesMask, 0)
	if err != nil {
		return nil, err
	}
	writes, err := newInotifyFD(h, writesMask, h.window)
	if err != nil {
		names.close()
		return nil, err
	}
	return &inotify{names: names, writes: writes}, nil
}

// Add watches dir with both instances, or with neither.
func (w *inotify) Add(dir string) error {
	if err := w.names.add(dir); err != nil {
		return err
	}
	if err := w.writes.add(dir); err != nil {
		_ = w.names.remove(dir)
		return err
	}
	return nil
}

func (w *inotify) Remove(dir string) error {
	return errors.Join(w.names.remove(dir), w.writes.remove(dir))
}

func (w *inotify) Close() error {
	return errors.Join(w.names.close(), w.writes.close())
}

// inotifyFD is one inotify instance, its one-shot gate and the goroutine
// reading it.
type inotifyFD struct {
	fd     int      // the instance, non-blocking; not in the runtime's poller
	gate   *os.File // epoll instance holding fd one-shot, in the runtime's poller: Close ends a wait
	h      *hints
	mask   uint32
	window time.Duration // pause after each read
	stop   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	closed bool
	byWd   map[int32]string
	byDir  map[string]int32
}

// gateEvents arms the instance in its gate for one report of readability.
const gateEvents = unix.EPOLLIN | unix.EPOLLONESHOT

func newInotifyFD(h *hints, mask uint32, window time.Duration) (*inotifyFD, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err) // EMFILE: max_user_instances
	}
	gate, err := newGate(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &inotifyFD{
		fd: fd, gate: gate, h: h, mask: mask, window: window,
		stop: make(chan struct{}), done: make(chan struct{}),
		byWd: map[int32]string{}, byDir: map[string]int32{},
	}
	go w.read()
	return w, nil
}

// newGate returns a non-blocking epoll instance holding fd, armed, as a file
// in the runtime's poller.
func newGate(fd int) (*os.File, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	ev := unix.EpollEvent{Events: gateEvents, Fd: int32(fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(ep), "inotify-gate"), nil
}

func (w *inotifyFD) add(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return os.ErrClosed
	}
	wd, err := unix.InotifyAddWatch(w.fd, dir, w.mask)
	if err != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: err} // ENOSPC: max_user_watches
	}
	if old, ok := w.byDir[dir]; ok && old != int32(wd) {
		delete(w.byWd, old)
	}
	w.byWd[int32(wd)] = dir
	w.byDir[dir] = int32(wd)
	return nil
}

func (w *inotifyFD) remove(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.byDir[dir]
	if !ok || w.closed {
		return nil
	}
	delete(w.byDir, dir)
	delete(w.byWd, wd)
	if _, err := unix.InotifyRmWatch(w.fd, uint32(wd)); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: the kernel dropped it with the directory.
		return &os.PathError{Op: "inotify_rm_watch", Path: dir, Err: err}
	}
	return nil
}

// close stops the goroutine, then closes the instance.
func (w *inotifyFD) close() error {
	select {
	case <-w.stop:
		return nil
	default:
	}
	close(w.stop)
	err := w.gate.Close()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return errors.Join(err, os.NewSyscallError("close", unix.Close(w.fd)))
}

func (w *inotifyFD) read() {
	defer close(w.done)
	rc, err := w.gate.SyscallConn()
	if err != nil {
		return
	}
	// Half of it is what one window may queue before the reads stop
	// pausing: 4,096 events of files named in up to 15 bytes, 2,730 of up
	// to 31, well under the kernel's default queue of 16,384 events
	// (max_queued_events). The kernel writes only what it returns, so the
	// pages a trickle never fills are never touched.
	buf := make([]byte, 256<<10)
	var pause *time.Timer
	for {
		if !w.wait(rc) {
			return // closed
		}
		busy := w.readEvents(buf)
		w.h.signal()
		if w.window > 0 && !busy { // busy: read on at once, the kernel queue must not overflow
			if pause == nil {
				pause = time.NewTimer(w.window)
			} else {
				pause.Reset(w.window)
			}
			select {
			case <-w.stop:
				pause.Stop()
				return
			case <-pause.C:
			}
		}
		if !w.arm(rc) {
			return
		}
	}
}

// wait blocks until the gate reports the instance readable (which disarms
// it). It reports false once the gate is closed.
func (w *inotifyFD) wait(rc syscall.RawConn) bool {
	var ev [1]unix.EpollEvent
	err := rc.Read(func(ep uintptr) bool {
		n, err := unix.EpollWait(int(ep), ev[:], 0)
		return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
	})
	return err == nil
}

// arm lets the gate report the instance's next event. Events already queued
// make the gate readable at once.
func (w *inotifyFD) arm(rc syscall.RawConn) bool {
	var aerr error
	err := rc.Control(func(ep uintptr) {
		ev := unix.EpollEvent{Events: gateEvents, Fd: int32(w.fd)}
		aerr = unix.EpollCtl(int(ep), unix.EPOLL_CTL_MOD, w.fd, &ev)
	})
	if err != nil {
		return false // closed
	}
	if aerr != nil {
		// Not expected; without the gate no event comes: rescans find
		// everything, and files are polled.
		w.h.overflowed()
		w.h.signal()
		return false
	}
	return true
}

// readEvents reads the queued events once into buf and reports them. It
// returns true when the read filled more than half of buf: the queue is
// busy and must be read again at once, or the kernel's queue overflows.
func (w *inotifyFD) readEvents(buf []byte) (busy bool) {
	n, err := unix.Read(w.fd, buf)
	switch {
	case err == nil:
		w.parse(buf[:n])
		return n > len(buf)/2
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return false
	default:
		w.h.overflowed() // not expected from inotify; whatever it hid, a rescan finds
		return false
	}
}

func (w *inotifyFD) parse(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&p[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(p) {
			break
		}
		name := p[unix.SizeofInotifyEvent:end]
		p = p[end:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			w.h.overflowed()
			continue
		}
		dir, ok := w.byWd[ev.Wd]
		if !ok {
			continue // removed meanwhile
		}
		var o op
		if ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
			o |= opCreate
		}
		if ev.Mask&unix.IN_MODIFY != 0 {
			o |= opWrite
		}
		if ev.Mask&(unix.IN_DELETE|unix.IN_DELETE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
			o |= opRemove
		}
		if ev.Mask&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0 {
			o |= opRename
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			// The kernel dropped the watch (directory removed, or its file
			// system unmounted): the loop adds it again if it can.
			delete(w.byWd, ev.Wd)
			if w.byDir[dir] == ev.Wd {
				delete(w.byDir, dir)
			}
		}
		if o != 0 {
			w.h.eventIn(dir, name, o)
		}
	}
}
