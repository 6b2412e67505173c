package tailer

import (
	"maps"
	"slices"
)

// unreadable is a matched file the tailer may not open.
type unreadable struct {
	err string
	gen uint64 // scan that last found it
}

// UnreadableFile is a matched file that could not be opened (permission
// denied): its lines are not read until its permissions change.
type UnreadableFile struct {
	Path string
	Err  string
}

// denied records that the matched file at path could not be opened for
// lack of permission: a warning the first time, then silence until it is
// readable or gone.
func (r *run) denied(path string, err error) {
	r.t.mu.Lock()
	_, known := r.t.unreadable[path]
	if r.t.unreadable == nil {
		r.t.unreadable = map[string]unreadable{}
	}
	r.t.unreadable[path] = unreadable{err: err.Error(), gen: r.gen}
	r.t.mu.Unlock()
	if !known {
		r.t.counters.unreadable.Add(1)
		r.t.log.Warn("cannot open matched file; its lines are not read until it is readable", "path", path, "err", err.Error())
	}
}

// readable forgets that path could not be opened, once it could.
func (r *run) readable(path string) {
	r.t.mu.Lock()
	_, known := r.t.unreadable[path]
	delete(r.t.unreadable, path)
	r.t.mu.Unlock()
	if known {
		r.t.log.Info("matched file is readable now", "path", path)
	}
}

// forgetUnreadable drops the files a full scan did not find again: gone,
// or no longer matched.
func (r *run) forgetUnreadable() {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	maps.DeleteFunc(r.t.unreadable, func(_ string, u unreadable) bool { return u.gen != r.gen })
}

// unreadableFiles lists the unreadable files by path. The caller holds t.mu.
func (t *Tailer) unreadableFiles() []UnreadableFile {
	var out []UnreadableFile
	for _, p := range slices.Sorted(maps.Keys(t.unreadable)) {
		out = append(out, UnreadableFile{Path: p, Err: t.unreadable[p].err})
	}
	return out
}
