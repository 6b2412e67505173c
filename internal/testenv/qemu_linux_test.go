package testenv

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestQemu: qemu-user answers uname with the emulated machine, the kernel
// its own architecture; natively both agree.
func TestQemu(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/arch")
	if err != nil {
		t.Skipf("the kernel does not say its architecture: %v", err)
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var m []byte
	for _, c := range u.Machine {
		if c == 0 {
			break
		}
		m = append(m, byte(c))
	}
	kernel, machine := strings.TrimSpace(string(b)), string(m)
	if want := kernel != machine; Qemu() != want {
		t.Errorf("Qemu() = %v with kernel %s and uname %s, want %v", Qemu(), kernel, machine, want)
	}
	t.Logf("kernel %s, uname %s, Qemu() %v", kernel, machine, Qemu())
}
