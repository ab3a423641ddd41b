package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag of bytes that takes a plain number or one with a
// unit: B, KiB, MiB, GiB, TiB, PiB (powers of 1024) or kB/KB, MB, GB, TB,
// PB (powers of 1000), case-insensitive, with an optional space and
// fraction ("1.5TiB"). It prints back as bytes.
type byteSize int64

var sizeUnits = []struct {
	suffix string
	scale  float64
}{
	// Longest first: "kib" before "b".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"pib", 1 << 50},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"pb", 1e15},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"p", 1 << 50},
	{"b", 1},
}

// parseByteSize reads a size; it refuses negative, fractional byte counts
// and anything past 2^63−1 bytes.
func parseByteSize(s string) (int64, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "" {
		return 0, fmt.Errorf("size %q: empty", s)
	}
	if n, err := strconv.ParseInt(in, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("size %q: negative", s)
		}
		return n, nil
	}
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(in, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if num == "" || strings.ContainsAny(num, "+-eEinfxXpP_") {
			return 0, fmt.Errorf("size %q: want a number and a unit, like 512MiB or 10GiB", s)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: %w", s, err)
		}
		v := f * u.scale
		if v >= math.MaxInt64 {
			return 0, fmt.Errorf("size %q: too large", s)
		}
		if v != math.Trunc(v) {
			return 0, fmt.Errorf("size %q: not a whole number of bytes", s)
		}
		return int64(v), nil
	}
	return 0, fmt.Errorf("size %q: want bytes, or a number and a unit (KiB, MiB, GiB, TiB; KB, MB, GB, TB)", s)
}

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) Type() string { return "bytes" }

// formatBytes prints a byte count for people: 1.5 GiB, 812 KiB, 93 B.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
