package main

import "testing"

func TestParseByteSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "4096": 4096, "10GiB": 10 << 30, "10 GiB": 10 << 30, "10gib": 10 << 30, "512MiB": 512 << 20,
		"1.5TiB": 3 << 39, "2KB": 2000, "3 GB": 3e9, "1M": 1 << 20, "7B": 7,
	}
	for in, want := range good {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-1GiB", "GiB", "1.5", "0.5B", "1e3MB", "10 parsecs", "9999999PiB", "NaN GiB", "inf GiB", "0x10MiB", "+5MiB", "1_000KB"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", in, got)
		}
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 29: "1.5 GiB", 1 << 40: "1.0 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
