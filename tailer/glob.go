package tailer

import (
	"os"
	"path/filepath"
	"strings"
)

// globber expands include patterns into candidate paths. It records the
// directories whose listing decides what matches: those are the directories
// a watch is worth adding to.
type globber struct {
	dirs map[string]struct{}
}

// expand calls visit for every path that pattern may name. Paths are not
// checked to exist (the caller stats them) and may repeat when a pattern has
// several "**" elements. Unreadable directories are skipped.
func (g *globber) expand(pattern string, visit func(path string)) {
	pattern = filepath.Clean(pattern)
	elems := strings.Split(strings.TrimPrefix(pattern, string(filepath.Separator)), string(filepath.Separator))
	g.walk(string(filepath.Separator), elems, visit)
}

func (g *globber) walk(dir string, elems []string, visit func(string)) {
	if len(elems) == 0 {
		visit(dir)
		return
	}
	e := elems[0]
	if e == "**" {
		g.walk(dir, elems[1:], visit)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		g.dirs[dir] = struct{}{}
		for _, ent := range entries {
			if ent.IsDir() { // symbolic links to directories are not followed by "**": no cycles
				g.walk(filepath.Join(dir, ent.Name()), elems, visit)
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
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	g.dirs[dir] = struct{}{}
	for _, ent := range entries {
		name := ent.Name()
		if ok, _ := filepath.Match(e, name); !ok {
			continue
		}
		if len(elems) == 1 {
			visit(filepath.Join(dir, name))
		} else if ent.IsDir() || ent.Type()&os.ModeSymlink != 0 {
			g.walk(filepath.Join(dir, name), elems[1:], visit)
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
