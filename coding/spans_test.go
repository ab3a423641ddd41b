package coding

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
)

// bytesFromSpans reads a range the way a range reader does: from the
// systematic primary slivers of an encoded blob, through the spans.
func bytesFromSpans(enc *Encoded, spans []SystematicSpan) []byte {
	var out []byte
	for _, sp := range spans {
		out = append(out, enc.Pairs[sp.Sliver].Primary.Data[sp.Start:sp.End]...)
	}
	return out
}

// Every range of small blobs at n = 4 (nP = 2, nS = 3): lengths that fill
// the matrix exactly, leave padding in the last row, or leave a whole row
// of padding, and every (offset, length) inside each.
func TestSystematicSpansEveryRangeOfSmallBlobs(t *testing.T) {
	c := mustCodec(t, 4)
	for size := range 40 {
		blob := randomBlob(int64(size), size)
		enc := mustEncode(t, c, blob)
		for off := 0; off <= size; off++ {
			for n := 0; off+n <= size; n++ {
				spans, err := c.Params().SystematicSpans(uint64(size), uint64(off), uint64(n))
				if err != nil {
					t.Fatalf("%d-byte blob, %d bytes at %d: %v", size, n, off, err)
				}
				if got := bytesFromSpans(enc, spans); !bytes.Equal(got, blob[off:off+n]) {
					t.Fatalf("%d-byte blob, %d bytes at %d: spans %+v give %x, want %x", size, n, off, spans, got, blob[off:off+n])
				}
			}
		}
	}
}

// For random blobs at several n (both codecs, symbols of one byte to
// several KiB), the bytes the spans pick out of the systematic slivers are
// the blob's bytes of the range: random ranges, and the ones at the edges
// (first byte, last byte, across a sliver boundary, the whole blob).
func TestSystematicSpansPickTheRange(t *testing.T) {
	r := testRand(t)
	for _, n := range []int{4, 7, 10, 31, 100, 300} {
		c := mustCodec(t, n)
		p := c.Params()
		for _, size := range []int{1, 2, p.NP * p.NS, p.NP*p.NS + 1, 1 + r.IntN(200_000)} {
			t.Run(fmt.Sprintf("n=%d/%dB", n, size), func(t *testing.T) {
				blob := randomBlob(int64(n*size), size)
				enc := mustEncode(t, c, blob)
				row, _ := p.SystematicLayout(enc.SymbolSize)
				type rng struct{ off, n int }
				ranges := []rng{{0, 1}, {size - 1, 1}, {0, size}, {size, 0}}
				if size > row {
					ranges = append(ranges, rng{row - 1, 2}, rng{row, 1}, rng{row - 1, 1}, rng{row / 2, min(row, size-row/2)})
				}
				for range 50 {
					off := r.IntN(size + 1)
					ranges = append(ranges, rng{off, r.IntN(size - off + 1)})
				}
				for _, g := range ranges {
					spans, err := p.SystematicSpans(uint64(size), uint64(g.off), uint64(g.n))
					if err != nil {
						t.Fatalf("%d bytes at %d: %v", g.n, g.off, err)
					}
					if got := bytesFromSpans(enc, spans); !bytes.Equal(got, blob[g.off:g.off+g.n]) {
						t.Fatalf("%d bytes at %d: the spans %+v pick other bytes", g.n, g.off, spans)
					}
					if want := wantSlivers(g.off, g.n, row); len(spans) != want {
						t.Fatalf("%d bytes at %d: %d spans, the range touches %d rows of %d bytes", g.n, g.off, len(spans), want, row)
					}
				}
			})
		}
	}
}

// wantSlivers is how many rows of rowLen bytes [off, off+n) touches.
func wantSlivers(off, n, rowLen int) int {
	if n == 0 {
		return 0
	}
	return (off+n-1)/rowLen - off/rowLen + 1
}

func TestSystematicSpansRefuseRangesOutsideTheBlob(t *testing.T) {
	p, err := NewParams(7, WithMaxBlobLength(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ size, off, n uint64 }{
		{0, 0, 1}, {0, 1, 0}, {10, 11, 0}, {10, 10, 1}, {10, 0, 11}, {10, 5, 6},
		{10, 1, math.MaxUint64}, {10, math.MaxUint64, 1}, {10, math.MaxUint64, math.MaxUint64},
	} {
		if spans, err := p.SystematicSpans(tc.size, tc.off, tc.n); !errors.Is(err, ErrRangeOutsideBlob) {
			t.Errorf("%d bytes at %d of a %d-byte blob: %+v, %v; want ErrRangeOutsideBlob", tc.n, tc.off, tc.size, spans, err)
		}
	}
	if _, err := p.SystematicSpans(1<<20+1, 0, 1); !errors.Is(err, ErrBlobTooLarge) {
		t.Errorf("a blob over the maximum: %v", err)
	}
	if spans, err := p.SystematicSpans(0, 0, 0); err != nil || len(spans) != 0 {
		t.Errorf("the empty range of the empty blob: %+v, %v", spans, err)
	}
}

// FuzzSystematicSpans: for any parameters and range (the blob length and
// the range come from outside: a registry entry and a caller), no panic;
// an error exactly when the range is not inside the blob (or the blob is
// too large); otherwise the spans tile the range in order, each within one
// systematic sliver at the place the row-major layout puts it.
func FuzzSystematicSpans(f *testing.F) {
	f.Add(uint16(7), uint64(500), uint64(0), uint64(500))
	f.Add(uint16(100), uint64(1<<30), uint64(1<<29), uint64(1<<20))
	f.Add(uint16(1000), uint64(3), uint64(2), uint64(1))
	f.Add(uint16(4), uint64(0), uint64(0), uint64(0))
	f.Add(uint16(300), uint64(math.MaxUint64), uint64(1), uint64(1))
	f.Fuzz(func(t *testing.T, shards uint16, size, off, n uint64) {
		p, err := NewParams(int(shards))
		if err != nil {
			return
		}
		spans, err := p.SystematicSpans(size, off, n)
		s, sizeErr := p.SymbolSize(size)
		switch {
		case sizeErr != nil:
			if !errors.Is(err, ErrBlobTooLarge) {
				t.Fatalf("a %d-byte blob is too large, yet: %v", size, err)
			}
			return
		case off > size || n > size-off:
			if !errors.Is(err, ErrRangeOutsideBlob) {
				t.Fatalf("%d bytes at %d of %d: %v, want ErrRangeOutsideBlob", n, off, size, err)
			}
			return
		case err != nil:
			t.Fatalf("%d bytes at %d of %d: %v", n, off, size, err)
		}
		row, _ := p.SystematicLayout(s)
		next := off
		for i, sp := range spans {
			switch {
			case int(sp.Sliver) >= p.NP:
				t.Fatalf("span %d in primary sliver %d, not a systematic one (nP = %d)", i, sp.Sliver, p.NP)
			case sp.Start < 0 || sp.Start >= sp.End || sp.End > row:
				t.Fatalf("span %d is bytes [%d, %d) of a %d-byte sliver", i, sp.Start, sp.End, row)
			case sp.BlobOffset != next:
				t.Fatalf("span %d starts at blob byte %d, want %d", i, sp.BlobOffset, next)
			case sp.BlobOffset != uint64(sp.Sliver)*uint64(row)+uint64(sp.Start):
				t.Fatalf("span %d: blob byte %d is not byte %d of row %d", i, sp.BlobOffset, sp.Start, sp.Sliver)
			case i > 0 && (sp.Sliver != spans[i-1].Sliver+1 || sp.Start != 0 || spans[i-1].End != row):
				t.Fatalf("spans %d and %d are not adjacent rows", i-1, i)
			}
			next += uint64(sp.Len())
		}
		if next != off+n {
			t.Fatalf("spans cover [%d, %d), want [%d, %d)", off, next, off, off+n)
		}
	})
}
