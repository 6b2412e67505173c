package testenv

import (
	"testing"

	"golang.org/x/sys/windows/registry"
)

// TestWine: Wine's registry has HKLM\Software\Wine, which Windows' does not.
func TestWine(t *testing.T) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `Software\Wine`, registry.QUERY_VALUE)
	if err == nil {
		k.Close()
	}
	if want := err == nil; Wine() != want {
		t.Errorf("Wine() = %v, HKLM\\Software\\Wine opened: %v (%v); want them to agree", Wine(), want, err)
	}
	t.Logf("Wine() %v", Wine())
}
