package coding

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// Metadata must commit to exactly what Encode does, for every n, the
// default encoding and leopard16 (also above 256 shards, where it is no
// longer the default), and the sizes where rows and the symbol size step,
// and must not write to the blob.
func TestMetadataMatchesEncode(t *testing.T) {
	type codecCase struct {
		n    int
		opts []Option
	}
	cases := []codecCase{{4, nil}, {5, nil}, {7, nil}, {10, nil}, {31, nil}, {100, nil}, {301, nil}, {1000, nil},
		{4, []Option{WithEncoding(Leopard16)}}, {10, []Option{WithEncoding(Leopard16)}}, {301, []Option{WithEncoding(Leopard16)}}}
	for _, cc := range cases {
		c := mustCodec(t, cc.n, cc.opts...)
		t.Run(fmt.Sprintf("n=%d/%s", cc.n, c.Params().Encoding), func(t *testing.T) {
			if testing.Short() && cc.n >= 301 {
				t.Skip("large n in -short mode")
			}
			t.Parallel()
			for _, size := range roundTripSizes(c.Params()) {
				blob := randomBlob(int64(cc.n+size), size)
				orig := bytes.Clone(blob)
				got, err := c.Metadata(blob)
				if err != nil {
					t.Fatalf("%d bytes: %v", size, err)
				}
				if !bytes.Equal(blob, orig) {
					t.Fatalf("%d bytes: Metadata wrote to the blob", size)
				}
				want := mustEncode(t, c, blob).Metadata
				if got.BlobID() != want.BlobID() {
					for p := range want.Pairs {
						if got.Pairs[p] != want.Pairs[p] {
							t.Fatalf("%d bytes: pair %d differs from Encode's (%x… against %x…)", size, p, got.Pairs[p].Primary[:4], want.Pairs[p].Primary[:4])
						}
					}
					t.Fatalf("%d bytes: blob ID %s, Encode's %s", size, got.BlobID(), want.BlobID())
				}
			}
		})
	}
}

// Metadata of a blob one byte off is a different blob ID (it hashes every
// symbol it makes, not a subset).
func TestMetadataSeesEveryByte(t *testing.T) {
	c := mustCodec(t, 10)
	blob := randomBlob(3, 100_000)
	base, err := c.Metadata(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{0, 1, 4999, 50_000, len(blob) - 1} {
		blob[at] ^= 1
		m, err := c.Metadata(blob)
		blob[at] ^= 1
		if err != nil {
			t.Fatal(err)
		}
		if m.BlobID() == base.BlobID() {
			t.Fatalf("flipping byte %d left the blob ID unchanged", at)
		}
	}
}

// BenchmarkMetadata compares Metadata with Encode in the same run:
// x-encode is its time over an encode's, heap-x-encode the bytes it
// allocates over an encode's, peak-heap-x those bytes over the blob's
// size (the consistent-read check's memory: DESIGN.md).
func BenchmarkMetadata(b *testing.B) {
	forEachBenchCase(b, func(b *testing.B, n, size int) {
		c := mustCodec(b, n)
		blob := randomBlob(int64(size), size)
		var keep any
		encAlloc := allocatedBy(func() { keep = mustEncode(b, c, blob) })
		metaAlloc := allocatedBy(func() {
			m, err := c.Metadata(blob)
			if err != nil {
				b.Fatal(err)
			}
			keep = m
		})
		runtime.KeepAlive(keep)
		var toEncode []float64
		b.SetBytes(int64(size))
		b.ResetTimer()
		for b.Loop() {
			start := time.Now()
			if _, err := c.Metadata(blob); err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			b.StopTimer()
			toEncode = append(toEncode, ratio(took, meanTime(1, func() { mustEncode(b, c, blob) })))
			b.StartTimer()
		}
		b.ReportMetric(median(toEncode), "x-encode")
		b.ReportMetric(float64(metaAlloc)/float64(encAlloc), "heap-x-encode")
		b.ReportMetric(float64(metaAlloc)/float64(size), "peak-heap-x")
	})
}
