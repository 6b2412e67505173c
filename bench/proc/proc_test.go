package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
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

// TestTree: CPU spent by a child that was waited for (the shell's cutime)
// and by a grandchild alive now both count in TreeCPU; the tree's memory
// is at least the parent's.
func TestTree(t *testing.T) {
	loop := "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"
	cmd := exec.Command("sh", "-c", "sh -c '"+loop+"'; sh -c '"+loop+"; exec sleep 60' & exec sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	var kids []int
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		kids = Descendants(pid)
		if len(kids) == 1 && comm(kids[0]) == "sleep" && comm(pid) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shells did not reach sleep: descendants %v", kids)
		}
	}
	f, err := statFields(pid)
	if err != nil {
		t.Fatal(err)
	}
	waited := f[13] + "+" + f[14] // cutime, cstime of the parent
	cu, cs, err := CPU(kids[0])
	if err != nil {
		t.Fatal(err)
	}
	user, sys, children, err := TreeCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	own, ownSys, _ := CPU(pid)
	if children <= cu+cs || waited == "0+0" || user+sys != own+ownSys+children {
		t.Fatalf("TreeCPU = %v user %v sys, %v in children; parent %v, waited-for %s ticks, live child %v",
			user, sys, children, own+ownSys, waited, cu+cs)
	}
	rss, peak, anon, err := TreeMemory(pid)
	prss, _, _ := Memory(pid)
	if err != nil || rss <= prss || peak < rss || anon <= 0 {
		t.Fatalf("TreeMemory = %d, %d, %d, %v; parent RSS %d", rss, peak, anon, err, prss)
	}
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}
