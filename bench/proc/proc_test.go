package proc

import (
	"os"
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
	// 8 MiB touched show in the anonymous RSS.
	before, err := Anon(os.Getpid())
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = 1
	}
	after, err2 := Anon(os.Getpid())
	if err != nil || err2 != nil || after-before < 7<<20 || after > rss+16<<20 {
		t.Fatalf("Anon = %d then %d after touching 8 MiB (RSS %d), %v %v", before, after, rss, err, err2)
	}
	_ = buf[len(buf)-1]
}
