package tailer

import (
	"os"
	"path/filepath"
	"strings"
)

// globber expands include patterns into candidate paths. It records the
// directories whose listing decides what matches: those are the directories
// a watch is worth adding to.
//
// Listings are cached: a directory for which clean reports true (its watch
// was in place before the cached listing was taken and reported no change
// of names since) is not read again, and the matches of each pattern element
// in it are remembered, so that a scan of quiet watched directories costs no
// system call and no allocation per file.
type globber struct {
	dirs map[string]struct{}
	// clean reports whether the cached listing of dir is still true; nil
	// means never.
	clean func(dir string) bool
	cache map[string]*listing
}

// listing is what one read of a directory found: its entries, and per
// pattern element the children matching it.
type listing struct {
	entries []dirent
	matches map[string][]dirent // element -> matching entries, full paths
}

type dirent struct {
	path      string // full path
	dir, link bool
}

// linkKind says whether a path is a symbolic link, when a directory listing
// told.
type linkKind int8

const (
	linkUnknown linkKind = iota
	linkNo
	linkYes
)

// expand calls visit for every path that pattern may name, with whether the
// path's directory is clean (see globber) and whether it is a link. Paths are not checked to exist
// (the caller stats them) and may repeat when a pattern has several "**"
// elements. Unreadable directories are skipped.
func (g *globber) expand(pattern string, visit func(path string, clean bool, link linkKind)) {
	pattern = filepath.Clean(pattern)
	// The root is "/", or a volume's root on Windows (C:\, \\host\share\).
	root := filepath.VolumeName(pattern) + string(filepath.Separator)
	elems := strings.Split(strings.TrimPrefix(pattern, root), string(filepath.Separator))
	g.walk(root, elems, visit)
}

func (g *globber) isClean(dir string) bool { return g.clean != nil && g.clean(dir) }

// list returns the entries of dir, from the cache when dir is clean.
func (g *globber) list(dir string) (*listing, bool) {
	if l := g.cache[dir]; l != nil && g.isClean(dir) {
		return l, true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		delete(g.cache, dir)
		return nil, false
	}
	l := &listing{entries: make([]dirent, len(entries))}
	for i, ent := range entries {
		l.entries[i] = dirent{path: filepath.Join(dir, ent.Name()), dir: ent.IsDir(), link: ent.Type()&os.ModeSymlink != 0}
	}
	if g.cache == nil {
		g.cache = map[string]*listing{}
	}
	g.cache[dir] = l
	return l, true
}

// match returns the entries of l whose name matches the element e.
func (l *listing) match(e string) []dirent {
	if m, ok := l.matches[e]; ok {
		return m
	}
	var m []dirent
	for _, ent := range l.entries {
		if ok, _ := filepath.Match(e, filepath.Base(ent.path)); ok {
			m = append(m, ent)
		}
	}
	if l.matches == nil {
		l.matches = map[string][]dirent{}
	}
	l.matches[e] = m
	return m
}

// forget drops cached listings of directories not in keep.
func (g *globber) forget(keep func(dir string) bool) {
	for dir := range g.cache {
		if !keep(dir) {
			delete(g.cache, dir)
		}
	}
}

func (g *globber) walk(dir string, elems []string, visit func(string, bool, linkKind)) {
	if len(elems) == 0 {
		visit(dir, g.isClean(filepath.Dir(dir)), linkUnknown)
		return
	}
	e := elems[0]
	if e == "**" {
		g.walk(dir, elems[1:], visit)
		l, ok := g.list(dir)
		if !ok {
			return
		}
		g.dirs[dir] = struct{}{}
		for _, ent := range l.entries {
			if ent.dir { // symbolic links to directories are not followed by "**": no cycles
				g.walk(ent.path, elems, visit)
			}
		}
		return
	}
	if !hasMeta(e) {
		if len(elems) == 1 {
			g.dirs[dir] = struct{}{}
		}
		g.walk(filepath.Join(dir, e), elems[1:], visit)
		return
	}
	l, ok := g.list(dir)
	if !ok {
		return
	}
	g.dirs[dir] = struct{}{}
	clean := g.isClean(dir)
	for _, ent := range l.match(e) {
		if len(elems) == 1 {
			link := linkNo
			if ent.link {
				link = linkYes
			}
			visit(ent.path, clean, link)
		} else if ent.dir || ent.link {
			g.walk(ent.path, elems[1:], visit)
		}
	}
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// match reports whether path matches pattern, where a "**" element matches
// zero or more path elements and other elements follow filepath.Match.
func match(pattern, path string) bool {
	if !strings.Contains(pattern, "**") {
		ok, _ := filepath.Match(pattern, path)
		return ok
	}
	sep := string(filepath.Separator)
	return matchElems(strings.Split(filepath.Clean(pattern), sep), strings.Split(filepath.Clean(path), sep))
}

func matchElems(pat, elems []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(elems); i++ {
				if matchElems(pat[1:], elems[i:]) {
					return true
				}
			}
			return false
		}
		if len(elems) == 0 {
			return false
		}
		if ok, _ := filepath.Match(pat[0], elems[0]); !ok {
			return false
		}
		pat, elems = pat[1:], elems[1:]
	}
	return len(elems) == 0
}
