package checkpoint

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/logpump/logpump/internal/testenv"
)

func entries(n int, offset int64) []Entry {
	var es []Entry
	for i := range n {
		es = append(es, Entry{
			Source: "app", Dev: 8, Ino: uint64(100 + i),
			FingerprintLen: 1024, FingerprintSum: 0xfeedface12345678 + uint64(i),
			Offset: offset + int64(i), Size: offset + int64(2*i), Path: fmt.Sprintf("/var/log/app/%d.log", i),
			Seen: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC),
		})
	}
	// A journal source's entry: its position is a cursor.
	es = append(es, Entry{Source: "journal", Dev: ^uint64(0), Offset: offset * 3, Path: "journal",
		Seen: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), Cursor: fmt.Sprintf("s=abc;i=%x;b=def", offset)})
	return es
}

func load(t *testing.T, dir string) []Entry {
	t.Helper()
	got, err := NewStore(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func save(t *testing.T, s *Store, es []Entry) {
	t.Helper()
	if err := s.Save(es); err != nil {
		t.Fatal(err)
	}
}

// TestSaveAlternatesSlots: saves after the first overwrite the two slots in
// turn, in place, and every load sees the last save.
func TestSaveAlternatesSlots(t *testing.T) {
	dir := testenv.TempDir(t)
	s := NewStore(dir)
	for i := range 5 {
		want := entries(3, int64(1000*i))
		save(t, s, want)
		if got := load(t, dir); !cmp.Equal(got, want) {
			t.Fatalf("save %d: load differs (-got +want):\n%s", i, cmp.Diff(got, want))
		}
		st, err := os.Stat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := st.Size(), int64(2*minSlotSize); got != want {
			t.Errorf("save %d: file size %d, want %d", i, got, want)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 1 {
		t.Errorf("state dir holds %v, want only %s", files, FileName)
	}
}

// TestTornSlotFallsBack: a save torn by a crash (any prefix of the slot
// written, or garbage) leaves the previous save readable.
func TestTornSlotFallsBack(t *testing.T) {
	old, next := entries(4, 100), entries(4, 200)
	for _, tc := range []struct {
		name string
		tear func(slot []byte) // the slot of the new save as it was left
	}{
		{"nothing written", func(slot []byte) {}},
		{"header only", func(slot []byte) { clear(slot[slotHeaderLen:]) }},
		{"half the payload", func(slot []byte) { clear(slot[slotHeaderLen+40:]) }},
		{"one bit flipped", func(slot []byte) { slot[slotHeaderLen+7] ^= 1 }},
		{"garbage", func(slot []byte) {
			for i := range slot {
				slot[i] = byte(i * 7)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.TempDir(t)
			s := NewStore(dir)
			save(t, s, entries(4, 0))
			save(t, s, old)
			before, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			save(t, s, next)
			after, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			// The new save went to the slot of the save before old; put
			// back what was there and tear it.
			size := len(after) / 2
			torn := append([]byte(nil), after...)
			for i := range 2 {
				slot := torn[i*size : (i+1)*size]
				if string(after[i*size:(i+1)*size]) != string(before[i*size:(i+1)*size]) {
					copy(slot, before[i*size:(i+1)*size])
					if tc.name != "nothing written" {
						copy(slot, after[i*size:(i+1)*size])
					}
					tc.tear(slot)
				}
			}
			if err := os.WriteFile(s.Path(), torn, 0o600); err != nil {
				t.Fatal(err)
			}
			if got := load(t, dir); !cmp.Equal(got, old) {
				t.Fatalf("load after a torn save differs from the save before (-got +want):\n%s", cmp.Diff(got, old))
			}
			// Saving again after the crash keeps the valid slot intact.
			s2 := NewStore(dir)
			if _, err := s2.Load(); err != nil {
				t.Fatal(err)
			}
			save(t, s2, next)
			if got := load(t, dir); !cmp.Equal(got, next) {
				t.Fatalf("load after saving again differs (-got +want):\n%s", cmp.Diff(got, next))
			}
		})
	}
}

// TestBothSlotsCorruptIsAnError: with no valid slot, Load fails rather
// than starting from nothing.
func TestBothSlotsCorruptIsAnError(t *testing.T) {
	dir := testenv.TempDir(t)
	s := NewStore(dir)
	save(t, s, entries(2, 0))
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // one slot holds the save, the other nothing
		data[i*len(data)/2+slotHeaderLen+3] ^= 0xff
	}
	if err := os.WriteFile(s.Path(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(dir).Load(); err == nil {
		t.Error("Load with no valid slot succeeded, want an error")
	}
	if err := os.WriteFile(s.Path(), data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(dir).Load(); err == nil {
		t.Error("Load of a cut file succeeded, want an error")
	}
}

// TestGrowthRewritesFile: entries that outgrow a slot make a new file with
// larger slots; nothing is lost.
func TestGrowthRewritesFile(t *testing.T) {
	dir := testenv.TempDir(t)
	s := NewStore(dir)
	save(t, s, entries(2, 0))
	want := entries(500, 7)
	save(t, s, want)
	save(t, s, want) // and in place again
	if got := load(t, dir); !cmp.Equal(got, want) {
		t.Fatalf("load after growth differs (-got +want):\n%s", cmp.Diff(got, want))
	}
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() <= 2*minSlotSize {
		t.Errorf("file size %d, want more than %d", st.Size(), 2*minSlotSize)
	}
}

// TestLegacyJSONIsMigrated: the JSON file of earlier versions is read when
// there is no checkpoint file, and replaced by the first save.
func TestLegacyJSONIsMigrated(t *testing.T) {
	dir := testenv.TempDir(t)
	legacy := filepath.Join(dir, LegacyFileName)
	const old = `{
 "version": 1,
 "files": [
  {"source": "app", "dev": 8, "ino": 100, "fingerprint_len": 1024, "fingerprint_sum": 18364758544493064720,
   "offset": 4096, "path": "/var/log/app/0.log", "seen": "2026-11-26T01:02:03Z"}
 ]
}
`
	if err := os.WriteFile(legacy, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(dir)
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{
		Source: "app", Dev: 8, Ino: 100, FingerprintLen: 1024, FingerprintSum: 18364758544493064720,
		Offset: 4096, Path: "/var/log/app/0.log", Seen: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC),
	}}
	if !cmp.Equal(got, want) {
		t.Fatalf("legacy load differs (-got +want):\n%s", cmp.Diff(got, want))
	}
	save(t, s, got)
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Errorf("legacy file still there after a save (stat: %v)", err)
	}
	if got := load(t, dir); !cmp.Equal(got, want) {
		t.Fatalf("load after migration differs (-got +want):\n%s", cmp.Diff(got, want))
	}
	// A JSON file left by a crash between the two steps is ignored.
	if err := os.WriteFile(legacy, []byte(`{"version":1,"files":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := load(t, dir); !cmp.Equal(got, want) {
		t.Fatalf("load with both files differs (-got +want):\n%s", cmp.Diff(got, want))
	}
}

// TestSaveAllocatesNothingInPlace: a save that fits its slot reuses its
// buffer.
func TestSaveAllocatesNothingInPlace(t *testing.T) {
	s := NewStore(testenv.TempDir(t))
	es := entries(100, 0)
	save(t, s, es)
	allocs := testing.AllocsPerRun(20, func() {
		if err := s.Save(es); err != nil {
			t.Fatal(err)
		}
	})
	// Opening the file allocates its *os.File and name; the encoding nothing.
	if allocs > 6 {
		t.Errorf("Save allocates %.0f times, want at most 6", allocs)
	}
}

// TestVersion1SlotIsRead: a checkpoint file written before entries had a
// size loads with Size 0 (unknown), and the next save writes version 2.
func TestVersion1SlotIsRead(t *testing.T) {
	dir := testenv.TempDir(t)
	es := entries(3, 500)
	// A version-1 slot, encoded as version 1 wrote it: no size field.
	file := make([]byte, 2*minSlotSize)
	copy(file[minSlotSize:], oldSlot(legacyVersion, es)) // generation 7 sits in slot 1
	if err := os.WriteFile(filepath.Join(dir, FileName), file, 0o600); err != nil {
		t.Fatal(err)
	}
	want := entries(3, 500)
	for i := range want {
		want[i].Size, want[i].Cursor = 0, ""
	}
	got := load(t, dir)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("version 1 load (-want +got):\n%s", d)
	}
	s := NewStore(dir)
	save(t, s, entries(3, 600))
	if d := cmp.Diff(entries(3, 600), load(t, dir)); d != "" {
		t.Errorf("after a save (-want +got):\n%s", d)
	}
	data, _ := os.ReadFile(filepath.Join(dir, FileName))
	if _, v, _, _, err := newestSlot(data); err != nil || v != formatVersion {
		t.Errorf("newest slot version %d (%v), want %d", v, err, formatVersion)
	}
}

// TestVersion2SlotIsRead: a checkpoint file written before entries had a
// cursor loads with no cursor, and the next save writes the current version.
func TestVersion2SlotIsRead(t *testing.T) {
	dir := testenv.TempDir(t)
	es := entries(3, 500)
	file := make([]byte, 2*minSlotSize)
	copy(file, oldSlot(2, es))
	if err := os.WriteFile(filepath.Join(dir, FileName), file, 0o600); err != nil {
		t.Fatal(err)
	}
	want := entries(3, 500)
	for i := range want {
		want[i].Cursor = ""
	}
	if d := cmp.Diff(want, load(t, dir)); d != "" {
		t.Fatalf("version 2 load (-want +got):\n%s", d)
	}
	save(t, NewStore(dir), entries(3, 600))
	if d := cmp.Diff(entries(3, 600), load(t, dir)); d != "" {
		t.Errorf("after a save (-want +got):\n%s", d)
	}
}

// oldSlot encodes entries in a slot of generation 7 as version 1 (no size,
// no cursor) or 2 (no cursor) wrote it.
func oldSlot(version uint32, es []Entry) []byte {
	buf := []byte(slotMagic)
	buf = binary.LittleEndian.AppendUint32(buf, version)
	buf = binary.LittleEndian.AppendUint64(buf, 7)
	buf = append(buf, make([]byte, 8)...)
	for _, e := range es {
		buf = appendString(buf, e.Source)
		buf = binary.AppendUvarint(buf, e.Dev)
		buf = binary.AppendUvarint(buf, e.Ino)
		buf = binary.AppendUvarint(buf, uint64(e.FingerprintLen))
		buf = binary.LittleEndian.AppendUint64(buf, e.FingerprintSum)
		buf = binary.AppendUvarint(buf, uint64(e.Offset))
		if version >= 2 {
			buf = binary.AppendUvarint(buf, uint64(e.Size))
		}
		buf = appendString(buf, e.Path)
		buf = binary.AppendVarint(buf, e.Seen.Unix())
	}
	payload := buf[slotHeaderLen:]
	binary.LittleEndian.PutUint32(buf[16:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[20:], slotSum(buf[4:20], payload))
	return buf
}
