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
}
