package coding

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/weftstore/weft/crypto"
)

// Lanes16 blob sizes: empty, one and two bytes, around one 64-byte block,
// around a row and the whole source matrix of 2-byte symbols, and larger.
func lanesSizes(p Params) []int {
	row, matrix := p.NS*2, p.NP*p.NS*2
	sizes := []int{0, 1, 2, 63, 64, 65, row - 1, row, row + 1, matrix - 1, matrix, matrix + 1, 300_001}
	if p.Shards >= 1000 {
		sizes = []int{0, 1, 2, 63, 64, 65, row - 1, row + 1, matrix + 1}
	}
	return sizes
}

var lanesShards = []int{4, 7, 10, 100, 1000}

// symbolSizesForLanes are symbol sizes around the 64-byte block: all tail,
// whole blocks, whole blocks and a tail.
var symbolSizesForLanes = []int{2, 4, 30, 62, 64, 66, 126, 128, 130, 302, 1000}

// cutsOf returns the places a lanes16 codec call may cut shards of m
// back-to-back s-byte symbols, ends included.
func cutsOf(s, m int) []int {
	cuts := []int{0}
	for p := 1; p <= m*s; p++ {
		if o := p % s; o == 0 || o%laneBlock == 0 {
			cuts = append(cuts, p)
		}
	}
	return cuts
}

// toLanes and fromLanes are inverse for every piece of a run of symbols
// that starts and ends at allowed cuts.
func TestLaneLayout(t *testing.T) {
	for _, s := range symbolSizesForLanes {
		line := randomBlob(int64(s), 3*s)
		cuts := cutsOf(s, 3)
		for i, a := range cuts {
			for _, b := range cuts[i+1:] {
				lay, err := layoutOf(b-a, symbolRun{size: s, from: a})
				if err != nil {
					t.Fatalf("s=%d [%d,%d): %v", s, a, b, err)
				}
				if lay.wide()%laneBlock != 0 || lay.wide() < b-a {
					t.Fatalf("s=%d [%d,%d): %d bytes in Leopard's layout", s, a, b, lay.wide())
				}
				wide := make([]byte, lay.wide())
				toLanes(wide, line[a:b], lay)
				back := make([]byte, b-a)
				fromLanes(back, wide, lay)
				if !bytes.Equal(back, line[a:b]) {
					t.Fatalf("s=%d [%d,%d): fromLanes(toLanes(x)) ≠ x", s, a, b)
				}
			}
		}
	}
}

// Cutting a symbol elsewhere than a whole number of blocks into it is
// refused, not coded wrong.
func TestLaneCodeRefusesBadCuts(t *testing.T) {
	code := mustCodec(t, 10, WithEncoding(Lanes16)).col
	for _, tc := range []struct{ s, from, length int }{{130, 2, 128}, {130, 0, 66}, {130, 64, 2}, {66, 0, 65}, {3, 0, 3}} {
		shards := make([][]byte, 10)
		for x := range shards {
			shards[x] = make([]byte, tc.length)
		}
		err := code.Encode(shards, symbolRun{size: tc.s, from: tc.from})
		if !errors.Is(err, reedsolomon.ErrShardSize) {
			t.Errorf("%d bytes from %d of %d-byte symbols: err %v, want ErrShardSize", tc.length, tc.from, tc.s, err)
		}
	}
}

// laneCode on any allowed piece of a run of symbols codes every element
// as the definition does (elementwise, one symbol at a time): how tails
// are packed together, and where calls cut, do not change the code.
func TestLaneCodeMatchesElementwise(t *testing.T) {
	const k, n, m = 4, 10, 3
	c := mustCodec(t, n, WithEncoding(Lanes16))
	code := c.col
	if got := c.Params().NP; got != k {
		t.Fatalf("nP = %d at n = %d, the test assumes %d", got, n, k)
	}
	ref := newElementwise(t, k, n)
	for _, s := range symbolSizesForLanes {
		// want[x] is shard x of m symbols, each coded by the definition.
		want := make([][]byte, n)
		for x := range want {
			want[x] = make([]byte, m*s)
		}
		for x := range k {
			copy(want[x], randomBlob(int64(s*10+x), m*s))
		}
		for sym := range m {
			one := make([][]byte, n)
			for x := range one {
				one[x] = want[x][sym*s : (sym+1)*s]
			}
			if err := ref.Encode(one); err != nil {
				t.Fatal(err)
			}
		}
		cuts := cutsOf(s, m)
		for i, a := range cuts {
			for _, b := range cuts[i+1:] {
				got := make([][]byte, n)
				for x := range got {
					got[x] = make([]byte, b-a)
					if x < k {
						copy(got[x], want[x][a:b])
					}
				}
				if err := code.Encode(got, symbolRun{size: s, from: a}); err != nil {
					t.Fatalf("s=%d [%d,%d): %v", s, a, b, err)
				}
				for x := k; x < n; x++ {
					if !bytes.Equal(got[x], want[x][a:b]) {
						t.Fatalf("s=%d [%d,%d): parity shard %d differs from the elementwise code", s, a, b, x)
					}
				}
				lost := slices.Clone(got)
				// One lost shard comes with poisoned capacity to fill in
				// place, the other with none.
				lost[0], lost[n-1] = bytes.Repeat([]byte{0xA5}, b-a)[:0], nil
				if err := code.Reconstruct(lost, symbolRun{size: s, from: a}); err != nil || !bytes.Equal(lost[0], got[0]) || !bytes.Equal(lost[n-1], got[n-1]) {
					t.Fatalf("s=%d [%d,%d): reconstruct: %v", s, a, b, err)
				}
				lost = slices.Clone(got)
				lost[1], lost[n-1] = bytes.Repeat([]byte{0x5A}, b-a)[:0], nil
				if err := code.ReconstructData(lost, symbolRun{size: s, from: a}); err != nil || !bytes.Equal(lost[1], got[1]) || len(lost[n-1]) != 0 {
					t.Fatalf("s=%d [%d,%d): reconstruct data: %v (parity shard given back with %d bytes)", s, a, b, err, len(lost[n-1]))
				}
			}
		}
	}
}

// Round trips of Lanes16 blobs at the n and sizes: decode from
// primaries and from secondaries, and Metadata agreeing with Encode.
func TestRoundTripLanes16(t *testing.T) {
	for _, n := range lanesShards {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			if testing.Short() && n >= 1000 {
				t.Skip("large n in -short mode")
			}
			t.Parallel()
			c := mustCodec(t, n, WithEncoding(Lanes16))
			rng := testRand(t)
			for _, size := range lanesSizes(c.Params()) {
				blob := randomBlob(int64(n*1000+size), size)
				enc := mustEncode(t, c, blob)
				if s, _ := c.Params().SymbolSize(uint64(size)); enc.SymbolSize != s || s%2 != 0 {
					t.Fatalf("n=%d size %d: symbol size %d", n, size, enc.SymbolSize)
				}
				checkRoundTrip(t, c, enc, blob, rng.IntN(1<<30))
				meta, err := c.Metadata(blob)
				if err != nil || meta.BlobID() != enc.ID {
					t.Fatalf("n=%d size %d: Metadata %v, err %v; Encode's ID %s", n, size, meta, err, enc.ID)
				}
			}
		})
	}
}

// Small blobs take 2-byte symbols at any n: a 1 KiB blob at n = 1000 is
// one 2-byte symbol per cell, not 64.
func TestLanes16SymbolSizes(t *testing.T) {
	p, err := NewParams(1000, WithEncoding(Lanes16))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		length uint64
		want   int
	}{{0, 2}, {1, 2}, {1024, 2}, {uint64(p.NP * p.NS * 2), 2}, {uint64(p.NP*p.NS*2) + 1, 4}, {1 << 20, 6}} {
		if s, err := p.SymbolSize(tc.length); err != nil || s != tc.want {
			t.Errorf("%d bytes: symbol size %d (%v), want %d", tc.length, s, err, tc.want)
		}
	}
}

// Every sliver recovers from exactly its k verified symbols.
func TestRecoverEverySliverLanes16(t *testing.T) {
	for _, n := range lanesShards {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			if testing.Short() && n >= 1000 {
				t.Skip("large n in -short mode")
			}
			t.Parallel()
			c := mustCodec(t, n, WithEncoding(Lanes16))
			p := c.Params()
			for _, size := range []int{1, 65, p.NS*2 + 1, 40_000 + n} {
				enc := mustEncode(t, c, randomBlob(int64(n+size), size))
				ext := extendAll(t, c, enc)
				rng := testRand(t)
				targets := rng.Perm(n)[:min(n, 20)]
				for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
					k := p.SliverSymbols(axis)
					for _, idx := range targets {
						target := SliverRef{axis, uint32(idx)}
						got, err := c.RecoverSliver(enc.Metadata, target, symbolsFor(t, ext, target, pick(rng, n, k), true))
						if err != nil {
							t.Fatalf("n=%d size %d: recover %s: %v", n, size, target, err)
						}
						if !bytes.Equal(got.Data, sliverOf(enc, target).Data) {
							t.Fatalf("n=%d size %d: recovered %s differs", n, size, target)
						}
					}
				}
			}
		})
	}
}

// A node that lost a pair gets both slivers back from its peers.
func TestRecoverPairLanes16(t *testing.T) {
	for _, n := range []int{4, 7, 10, 100} {
		c := mustCodec(t, n, WithEncoding(Lanes16))
		enc := mustEncode(t, c, randomBlob(int64(n), 7_777))
		rng := testRand(t)
		for _, pair := range rng.Perm(n)[:min(n, 6)] {
			pe := newPeers(t, c, enc)
			pe.lose(pair)
			got, _, err := c.RecoverPair(context.Background(), enc.Metadata, pair, pe, WithRand(rng))
			if err != nil {
				t.Fatalf("n=%d pair %d: %v", n, pair, err)
			}
			if !bytes.Equal(got.Primary.Data, enc.Pairs[pair].Primary.Data) || !bytes.Equal(got.Secondary.Data, enc.Pairs[pair].Secondary.Data) {
				t.Fatalf("n=%d pair %d: recovered pair differs", n, pair)
			}
		}
	}
}

// BenchmarkEncodeLanes16 encodes blobs at n = 1000 with Lanes16 and, in
// the same run, with Leopard16 (the default at n > 256 before Lanes16),
// and reports (issue #20):
//
//	storage-x     bytes stored over all shards ÷ the blob's size
//	peak-heap-x   bytes one encode allocates ÷ the blob's size
//	x-leopard16   encode time ÷ Leopard16's for the same blob
//	leopard16-storage-x, leopard16-peak-heap-x: the same for Leopard16
func BenchmarkEncodeLanes16(b *testing.B) {
	for _, sz := range []struct {
		name  string
		bytes int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"64MiB", 64 << 20}} {
		b.Run("n=1000/"+sz.name, func(b *testing.B) {
			lanes := mustCodec(b, 1000, WithEncoding(Lanes16))
			leo := mustCodec(b, 1000, WithEncoding(Leopard16))
			blob := randomBlob(int64(sz.bytes), sz.bytes)
			var keep *Encoded
			lanesAlloc := allocatedBy(func() { keep = mustEncode(b, lanes, blob) })
			leoAlloc := allocatedBy(func() { keep = mustEncode(b, leo, blob) })
			runtime.KeepAlive(keep)
			var toLeopard []float64
			b.SetBytes(int64(sz.bytes))
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				mustEncode(b, lanes, blob)
				took := time.Since(start)
				b.StopTimer()
				toLeopard = append(toLeopard, ratio(took, meanTime(1, func() { mustEncode(b, leo, blob) })))
				b.StartTimer()
			}
			stored := func(p Params) float64 {
				size, _ := p.EncodedSize(uint64(sz.bytes))
				return float64(size) / float64(sz.bytes)
			}
			b.ReportMetric(stored(lanes.Params()), "storage-x")
			b.ReportMetric(float64(lanesAlloc)/float64(sz.bytes), "peak-heap-x")
			b.ReportMetric(median(toLeopard), "x-leopard16")
			b.ReportMetric(stored(leo.Params()), "leopard16-storage-x")
			b.ReportMetric(float64(leoAlloc)/float64(sz.bytes), "leopard16-peak-heap-x")
		})
	}
}
