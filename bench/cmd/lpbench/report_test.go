package main

import "testing"

func TestMedRange(t *testing.T) {
	tests := []struct {
		v    []float64
		f    string
		want string
	}{
		{nil, "%.2f", "–"},
		{[]float64{2}, "%.2f", "2.00"},
		{[]float64{3, 1, 2}, "%.2f", "2.00 (1.00–3.00)"},
		{[]float64{4, 1, 2, 3}, "%.1f", "2.5 (1.0–4.0)"},
		{[]float64{0.5, 0.4, 0.45}, "%.2f×", "0.45× (0.40–0.50)"},
		{[]float64{1, -1}, "%+.1f", "+0.0 (-1.0–+1.0)"},
	}
	for _, tt := range tests {
		if got := medRange(tt.v, tt.f); got != tt.want {
			t.Errorf("medRange(%v, %q) = %q, want %q", tt.v, tt.f, got, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"1GiB", 1 << 30}, {"16MiB", 16 << 20}, {"1.5KiB", 1536}, {"500MB", 500e6}, {"4096", 4096}}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize(lots) = nil error")
	}
}
