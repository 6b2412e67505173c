package proc

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	user, sys, err := CPU(os.Getpid())
	if err != nil || user+sys <= 0 {
		t.Fatalf("CPU = %v, %v, %v", user, sys, err)
	}
	rss, peak, err := Memory(os.Getpid())
	if err != nil || rss <= 0 || peak < rss {
		t.Fatalf("Memory = %d, %d, %v", rss, peak, err)
	}
	// 8 MiB touched show in the anonymous RSS. They are mapped for the test,
	// not taken from the Go heap, which may hold pages already resident
	// (a run with -count > 1).
	buf, err := syscall.Mmap(-1, 0, 8<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	before, err := Anon(os.Getpid())
	for i := range buf {
		buf[i] = 1
	}
	after, err2 := Anon(os.Getpid())
	if err != nil || err2 != nil || after-before < 7<<20 || after > rss+16<<20 {
		t.Fatalf("Anon = %d then %d after touching 8 MiB (RSS %d), %v %v", before, after, rss, err, err2)
	}
	// Resident reads both at once: the 8 MiB are in both, anon within RSS.
	rss2, anon, err := Resident(os.Getpid())
	if err != nil || anon < after-1<<20 || anon > rss2 || rss2 < rss+7<<20 {
		t.Fatalf("Resident = %d, %d (RSS before %d, Anon %d), %v", rss2, anon, rss, after, err)
	}
}
