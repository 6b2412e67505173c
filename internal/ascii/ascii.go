// Package ascii finds the ASCII prefix of a text quickly: most log lines are
// ASCII, and knowing it spares a rune-by-rune UTF-8 check.
package ascii

import (
	"encoding/binary"
	"unicode/utf8"
	"unsafe"
)

const high = 0x8080808080808080

// Prefix returns the length of the ASCII prefix of p, looking at 32 bytes
// per step.
func Prefix(p []byte) int {
	k := 0
	for ; k+32 <= len(p); k += 32 {
		q := p[k : k+32 : k+32]
		w := binary.LittleEndian.Uint64(q[0:8]) | binary.LittleEndian.Uint64(q[8:16]) |
			binary.LittleEndian.Uint64(q[16:24]) | binary.LittleEndian.Uint64(q[24:32])
		if w&high != 0 {
			break
		}
	}
	for ; k+8 <= len(p); k += 8 {
		if binary.LittleEndian.Uint64(p[k:k+8])&high != 0 {
			break
		}
	}
	for k < len(p) && p[k] < utf8.RuneSelf {
		k++
	}
	return k
}

// ValidString reports whether s is valid UTF-8, as utf8.ValidString does,
// checking an ASCII prefix 32 bytes per step first.
func ValidString(s string) bool {
	n := Prefix(unsafe.Slice(unsafe.StringData(s), len(s)))
	return n == len(s) || utf8.ValidString(s[n:])
}
