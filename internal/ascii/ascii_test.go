package ascii

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrefix(t *testing.T) {
	long := strings.Repeat("a", 70)
	for _, tt := range []struct {
		s    string
		want int
	}{
		{"", 0}, {"abc", 3}, {"é", 0}, {"ab\xff", 2}, {long, 70},
		{long + "é", 70}, {long[:31] + "\x80" + long, 31}, {long[:40] + "\xc3\xa9", 40},
	} {
		if got := Prefix([]byte(tt.s)); got != tt.want {
			t.Errorf("Prefix(%q) = %d, want %d", tt.s, got, tt.want)
		}
	}
}

func FuzzValidString(f *testing.F) {
	for _, s := range []string{"", "abc", "é", "\xff", strings.Repeat("x", 40) + "\xed\xa0\x80", "\xf0\x9f\x98\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidString(s), utf8.ValidString(s); got != want {
			t.Errorf("ValidString(%q) = %v, want %v", s, got, want)
		}
	})
}
