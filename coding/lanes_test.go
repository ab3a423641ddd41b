package coding

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

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

// toLanes and fromLanes are inverse on every even length, and put element
// t of a shard (bytes 2t, 2t+1) at lane t mod 32 of block t div 32.
func TestLaneLayout(t *testing.T) {
	for _, size := range []int{2, 30, 62, 64, 66, 126, 128, 130, 1000} {
		src := randomBlob(int64(size), size)
		wide := make([]byte, laneSize(size))
		toLanes(wide, src)
		for el := range size / 2 {
			block, lane := el/32, el%32
			if wide[block*64+lane] != src[2*el] || wide[block*64+32+lane] != src[2*el+1] {
				t.Fatalf("%d bytes: element %d is not at lane %d of block %d", size, el, lane, block)
			}
		}
		back := make([]byte, size)
		fromLanes(back, wide)
		if !bytes.Equal(back, src) {
			t.Fatalf("%d bytes: fromLanes(toLanes(x)) ≠ x", size)
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
// the same run, with Leopard16 (today's encoding at n > 256), and reports
// (issue #20):
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
