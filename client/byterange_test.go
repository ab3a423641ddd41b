package client

import (
	"errors"
	"math"
	"testing"
)

func TestParseByteRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteRange
	}{
		{"0-0", ByteRange{0, 0, 0}}, {"10-19", ByteRange{10, 19, 0}}, {" 5- ", ByteRange{5, -1, 0}},
		{"7-", ByteRange{7, -1, 0}}, {"-1", ByteRange{0, 0, 1}}, {"\t-500", ByteRange{0, 0, 500}},
		{"9223372036854775807-", ByteRange{math.MaxInt64, -1, 0}}, {"0000000000000000001-2", ByteRange{1, 2, 0}},
	} {
		got, err := ParseByteRange(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseByteRange(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"", "-", "5", "a-b", "1-a", "+1-2", "1-+2", "--1", "-0", "-00", "5-4", "1 -2", "1- 2", "0x1-2",
		"1-2-3", "1,2", "9223372036854775808-", "-9223372036854775808", "00000000000000000001-2", "١-٢",
	} {
		if r, err := ParseByteRange(bad); err == nil {
			t.Errorf("ParseByteRange(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestByteRangeResolve(t *testing.T) {
	for _, tc := range []struct {
		r         ByteRange
		size      int64
		off, n    int64
		outOfBlob bool
	}{
		{ByteRange{0, 0, 0}, 10, 0, 1, false},
		{ByteRange{9, 9, 0}, 10, 9, 1, false},
		{ByteRange{3, 100, 0}, 10, 3, 7, false}, // the last byte cut to the end
		{ByteRange{3, -1, 0}, 10, 3, 7, false},
		{ByteRange{0, math.MaxInt64, 0}, 10, 0, 10, false},
		{ByteRange{0, 0, 4}, 10, 6, 4, false},
		{ByteRange{0, 0, 40}, 10, 0, 10, false}, // a suffix longer than the blob is all of it
		{ByteRange{10, -1, 0}, 10, 0, 0, true},
		{ByteRange{10, 20, 0}, 10, 0, 0, true},
		{ByteRange{0, -1, 0}, 0, 0, 0, true},
		{ByteRange{0, 0, 1}, 0, 0, 0, true},
		{ByteRange{-1, 5, 0}, 10, 0, 0, true},
		{ByteRange{5, 4, 0}, 10, 0, 0, true},
	} {
		off, n, err := tc.r.Resolve(tc.size)
		if tc.outOfBlob {
			if !errors.Is(err, ErrRangeOutsideBlob) {
				t.Errorf("%+v of %d bytes: %d, %d, %v; want ErrRangeOutsideBlob", tc.r, tc.size, off, n, err)
			}
			continue
		}
		if err != nil || off != tc.off || n != tc.n {
			t.Errorf("%+v of %d bytes: %d, %d, %v; want %d, %d", tc.r, tc.size, off, n, err, tc.off, tc.n)
		}
	}
}

// FuzzParseByteRange: `weft read --range` and the gateway's Range header
// hand it outside text. No panic; what it accepts writes back (String) to
// a text that parses to the same range; and for any blob size the range
// resolves to bytes inside the blob, or to ErrRangeOutsideBlob exactly
// when it selects none.
func FuzzParseByteRange(f *testing.F) {
	for _, s := range []string{"0-0", "10-19", "7-", "-1", " 5- ", "-0", "5-4", "9223372036854775807-", "1-9223372036854775807"} {
		f.Add(s, int64(100))
	}
	f.Add("0-", int64(0))
	f.Fuzz(func(t *testing.T, s string, size int64) {
		r, err := ParseByteRange(s)
		if err != nil {
			return
		}
		again, err := ParseByteRange(r.String())
		if err != nil || again != r {
			t.Fatalf("%q parses to %+v, which writes %q, which parses to %+v, %v", s, r, r.String(), again, err)
		}
		if size < 0 {
			return
		}
		off, n, err := r.Resolve(size)
		selectsNone := size == 0 || (r.Suffix == 0 && r.First >= size)
		switch {
		case selectsNone:
			if !errors.Is(err, ErrRangeOutsideBlob) {
				t.Fatalf("%+v of %d bytes selects nothing, yet resolves to %d, %d, %v", r, size, off, n, err)
			}
		case err != nil:
			t.Fatalf("%+v of %d bytes: %v", r, size, err)
		case off < 0 || n < 1 || n > size-off:
			t.Fatalf("%+v of %d bytes resolves to %d bytes at %d, not inside the blob", r, size, n, off)
		case r.Suffix > 0 && off+n != size:
			t.Fatalf("suffix %+v of %d bytes resolves to %d bytes at %d, not the tail", r, size, n, off)
		case r.Suffix == 0 && off != r.First:
			t.Fatalf("%+v of %d bytes starts at %d", r, size, off)
		}
	})
}
