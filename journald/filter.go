package journald

import (
	"path"
	"strconv"
	"strings"

	"github.com/logpump/logpump/journald/jfile"
)

// filter is the selection of the options as the native reader applies it,
// with journalctl's semantics: every clause must hold; a clause holds when
// any of its terms does; a term holds when the entry has every one of its
// FIELD=value matches. Units, identifiers, priority, dmesg and the matches
// of each field are one clause each.
type filter struct {
	exact   map[string]int // FIELD=value → match index
	globs   []globMatch
	clauses [][][]int
	present []bool // per match: the entry being tested has it
	maxLen  int    // the longest exact match
}

// globMatch is a unit given as a glob (journalctl --unit='app-*'): matched
// against the values of a field.
type globMatch struct {
	field, pattern string
	index          int
}

// unitTypes are the suffixes of unit names; a unit given without one is a
// service, as journalctl --unit mangles it.
var unitTypes = []string{".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer", ".path", ".slice", ".scope"}

// newFilter returns the filter of the options, nil when they select every
// entry.
func newFilter(o *Options) *filter {
	f := &filter{exact: map[string]int{}}
	match := func(m string) int {
		if i, ok := f.exact[m]; ok {
			return i
		}
		i := len(f.present)
		f.exact[m] = i
		f.present = append(f.present, false)
		f.maxLen = max(f.maxLen, len(m))
		return i
	}
	glob := func(field, pattern string) int {
		i := len(f.present)
		f.globs = append(f.globs, globMatch{field: field + "=", pattern: pattern, index: i})
		f.present = append(f.present, false)
		return i
	}
	if len(o.Units) > 0 {
		var c [][]int
		for _, u := range o.Units {
			if strings.ContainsAny(u, "*?[") {
				c = append(c, []int{glob("_SYSTEMD_UNIT", u)})
				continue
			}
			if !hasUnitType(u) {
				u += ".service"
			}
			// journalctl --unit: the unit's own entries, its coredumps,
			// systemd's messages about it and those of privileged daemons.
			c = append(c,
				[]int{match("_SYSTEMD_UNIT=" + u)},
				[]int{match("MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1"), match("_UID=0"), match("COREDUMP_UNIT=" + u)},
				[]int{match("_PID=1"), match("UNIT=" + u)},
				[]int{match("_UID=0"), match("OBJECT_SYSTEMD_UNIT=" + u)})
		}
		f.clauses = append(f.clauses, c)
	}
	if len(o.Identifiers) > 0 {
		var c [][]int
		for _, id := range o.Identifiers {
			c = append(c, []int{match("SYSLOG_IDENTIFIER=" + id)})
		}
		f.clauses = append(f.clauses, c)
	}
	if o.Priority != "" {
		p, _ := priority(o.Priority)
		var c [][]int
		for i := 0; i <= p; i++ {
			c = append(c, []int{match("PRIORITY=" + strconv.Itoa(i))})
		}
		f.clauses = append(f.clauses, c)
	}
	matches := o.Matches
	if o.Dmesg {
		matches = append(matches[:len(matches):len(matches)], "_TRANSPORT=kernel")
	}
	byField := map[string]int{} // field → its clause
	for _, m := range matches {
		field, _, _ := strings.Cut(m, "=")
		ci, ok := byField[field]
		if !ok {
			ci = len(f.clauses)
			byField[field] = ci
			f.clauses = append(f.clauses, nil)
		}
		f.clauses[ci] = append(f.clauses[ci], []int{match(m)})
	}
	if len(f.clauses) == 0 {
		return nil
	}
	return f
}

func hasUnitType(u string) bool {
	for _, t := range unitTypes {
		if strings.HasSuffix(u, t) {
			return true
		}
	}
	return false
}

// match reports whether the entry e of file j holds, and the bytes of its
// fields read (those that could be read).
func (f *filter) match(j *jfile.File, e *jfile.Entry) (bool, int64) {
	clear(f.present)
	var size int64
	for _, off := range e.Items {
		p, err := j.Data(off)
		if err != nil {
			continue // reported when the entry is read
		}
		size += int64(len(p))
		if len(p) <= f.maxLen {
			if i, ok := f.exact[string(p)]; ok {
				f.present[i] = true
			}
		}
		for _, g := range f.globs {
			if v, ok := strings.CutPrefix(string(p), g.field); ok {
				if m, _ := path.Match(g.pattern, v); m {
					f.present[g.index] = true
				}
			}
		}
	}
	return f.holds(), size
}

func (f *filter) holds() bool {
	for _, c := range f.clauses {
		any := false
		for _, term := range c {
			all := true
			for _, i := range term {
				if !f.present[i] {
					all = false
					break
				}
			}
			if all {
				any = true
				break
			}
		}
		if !any {
			return false
		}
	}
	return true
}
