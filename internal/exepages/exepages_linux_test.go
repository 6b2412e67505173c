package exepages

import (
	"testing"

	"github.com/logpump/logpump/internal/testenv"
)

// written is in the executable's writable data segment (an initialised
// array): Release must leave such mappings alone, or a changed value would
// go back to the file's.
var written = [4]uint64{1, 2, 3, 4}

func TestReleaseDropsCodePagesOnly(t *testing.T) {
	testenv.SkipUnderQemu(t, "stat of /proc/self/exe is the emulator's file, so no mapping in /proc/self/maps is the executable's")
	written[2] = 30
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mappings < 1 || st.Advised <= 0 {
		t.Fatalf("found %d read-only mappings of the executable (%d bytes), want at least one", st.Mappings, st.Advised)
	}
	if st.RSSBefore <= 0 || st.RSSAfter < 0 || st.RSSAfter >= st.RSSBefore {
		t.Errorf("RssFile %d before, %d after: want it to fall", st.RSSBefore, st.RSSAfter)
	}
	t.Logf("released %d mappings, %d KiB; RssFile %d -> %d KiB", st.Mappings, st.Advised>>10, st.RSSBefore>>10, st.RSSAfter>>10)
	if written != [4]uint64{1, 2, 30, 4} {
		t.Errorf("writable data reads %v after Release, want [1 2 30 4]", written)
	}
	// The code runs on: a second call maps its pages again and works.
	if _, err := Release(); err != nil {
		t.Fatal(err)
	}
}

func TestParseMapping(t *testing.T) {
	tests := []struct {
		line string
		want mapping
		ok   bool
	}{
		{"00400000-00c6e000 r-xp 00000000 fe:00 10379301                           /usr/bin/logpump",
			mapping{start: 0x400000, end: 0xc6e000, private: true, major: 0xfe, minor: 0, inode: 10379301}, true},
		{"015ba000-01647000 rw-p 011ba000 fe:01 10379301 /usr/bin/logpump (deleted)",
			mapping{start: 0x15ba000, end: 0x1647000, writable: true, private: true, major: 0xfe, minor: 1, inode: 10379301}, true},
		{"7f0000000000-7f0000001000 r--s 00000000 00:1a 77 /dev/shm/with space",
			mapping{start: 0x7f0000000000, end: 0x7f0000001000, major: 0, minor: 0x1a, inode: 77}, true},
		{"7fff7d0a1000-7fff7d0c2000 rw-p 00000000 00:00 0                          [stack]",
			mapping{start: 0x7fff7d0a1000, end: 0x7fff7d0c2000, writable: true, private: true}, true},
		{"garbage", mapping{}, false},
		{"0040-0030 r-xp 0 fe:00 1 /x", mapping{}, false},
	}
	for _, tt := range tests {
		got, ok := parseMapping(tt.line)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseMapping(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}
