package coding

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// extendAll extends every sliver of an encoded blob, as the nodes holding
// them would to serve recovery symbols.
func extendAll(t testing.TB, c *Codec, enc *Encoded) map[SliverRef]*ExtendedSliver {
	t.Helper()
	out := map[SliverRef]*ExtendedSliver{}
	for _, sp := range enc.Pairs {
		for _, sl := range []Sliver{sp.Primary, sp.Secondary} {
			ext, err := c.Extend(enc.Metadata, sl)
			if err != nil {
				t.Fatal(err)
			}
			out[sl.SliverRef] = ext
		}
	}
	return out
}

func symbolsFor(t testing.TB, ext map[SliverRef]*ExtendedSliver, target SliverRef, sources []int, withProofs bool) []RecoverySymbol {
	t.Helper()
	var out []RecoverySymbol
	for _, src := range sources {
		sym, err := ext[SliverRef{target.Axis.Other(), uint32(src)}].Symbol(int(target.Index), withProofs)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sym)
	}
	return out
}

// Every primary from exactly nS verified symbols and every secondary from
// exactly nP, from random sets of sources; one fewer is not enough.
func TestRecoverEverySliver(t *testing.T) {
	for _, n := range []int{4, 5, 7, 10, 31, 100, 301, 1000} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			if testing.Short() && n > 100 {
				t.Skip("large n in -short mode")
			}
			t.Parallel()
			c := mustCodec(t, n)
			p := c.Params()
			enc := mustEncode(t, c, randomBlob(int64(n), 40_000+n))
			ext := extendAll(t, c, enc)
			rng := testRand(t)
			targets := rng.Perm(n)
			for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
				k := p.SliverSymbols(axis)
				for _, idx := range targets {
					target := SliverRef{axis, uint32(idx)}
					syms := symbolsFor(t, ext, target, pick(rng, n, k), true)
					got, err := c.RecoverSliver(enc.Metadata, target, syms)
					if err != nil {
						t.Fatalf("recover %s from %d symbols: %v", target, k, err)
					}
					if want := sliverOf(enc, target); !bytes.Equal(got.Data, want.Data) || got.SliverRef != target {
						t.Fatalf("recovered %s differs from the original", target)
					}
					var short *NotEnoughSymbolsError
					if _, err := c.RecoverSliver(enc.Metadata, target, syms[:k-1]); !errors.As(err, &short) || short.Need != k || short.Have != k-1 {
						t.Fatalf("recover %s from %d symbols: err = %v", target, k-1, err)
					}
				}
			}
		})
	}
}

func TestRecoverSliverSetsAsideBadSymbols(t *testing.T) {
	c := mustCodec(t, 10)
	p := c.Params()
	enc := mustEncode(t, c, randomBlob(3, 9000))
	ext := extendAll(t, c, enc)
	target := SliverRef{crypto.Primary, 4}
	all := make([]int, p.Shards)
	for i := range all {
		all[i] = i
	}
	syms := symbolsFor(t, ext, target, all, true)
	syms[2].Data = append([]byte(nil), syms[2].Data...)
	syms[2].Data[0] ^= 1 // proof no longer matches
	syms[5].Proof = nil  // no proof at all
	got, err := c.RecoverSliver(enc.Metadata, target, syms)
	if err != nil || !bytes.Equal(got.Data, sliverOf(enc, target).Data) {
		t.Fatalf("recovery with two bad symbols among %d: %v", len(syms), err)
	}
	// With only k symbols, one bad one leaves too few, and the error says which.
	_, err = c.RecoverSliver(enc.Metadata, target, syms[:p.NS])
	var short *NotEnoughSymbolsError
	if !errors.As(err, &short) || len(short.Rejected) != 2 || short.Rejected[0].Source.Index != 2 {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(short.Rejected[0], crypto.ErrProofMismatch) {
		t.Fatalf("rejection cause = %v, want a proof mismatch", short.Rejected[0])
	}
}

func TestRecoverOptimisticSkipsProofs(t *testing.T) {
	c := mustCodec(t, 31)
	p := c.Params()
	enc := mustEncode(t, c, randomBlob(4, 100_000))
	pe := newPeers(t, c, enc)
	for _, target := range []SliverRef{{crypto.Primary, 3}, {crypto.Secondary, 30}} {
		got, stats, err := c.Recover(context.Background(), enc.Metadata, target, pe, WithRand(testRand(t)))
		if err != nil || !bytes.Equal(got.Data, sliverOf(enc, target).Data) {
			t.Fatalf("%s: %v", target, err)
		}
		k := p.SliverSymbols(target.Axis)
		if stats.UsedProofs || stats.ProofBytes != 0 || stats.SymbolsReceived != k || stats.Requests != 1 {
			t.Fatalf("%s: honest peers, stats %+v", target, stats)
		}
		if want := int64(k * (symbolHeader + enc.SymbolSize)); stats.BytesReceived != want {
			t.Fatalf("%s: %d bytes received, want %d", target, stats.BytesReceived, want)
		}
	}
}

func TestRecoverFetchesProofsOnMismatch(t *testing.T) {
	c := mustCodec(t, 31)
	enc := mustEncode(t, c, randomBlob(5, 100_000))
	target := SliverRef{crypto.Primary, 7}
	want := sliverOf(enc, target).Data

	t.Run("liar when unproven", func(t *testing.T) {
		pe := newPeers(t, c, enc)
		pe.lie = func(sym *RecoverySymbol, withProof bool) {
			if sym.Source%5 == 0 && !withProof {
				sym.Data[0] ^= 0xff
			}
		}
		got, stats, err := c.Recover(context.Background(), enc.Metadata, target, pe, WithRand(testRand(t)))
		if err != nil || !bytes.Equal(got.Data, want) {
			t.Fatalf("err = %v", err)
		}
		if !stats.UsedProofs || stats.ProofBytes == 0 || len(stats.Faulty) != 0 {
			t.Fatalf("stats %+v", stats)
		}
	})
	t.Run("liar always", func(t *testing.T) {
		pe := newPeers(t, c, enc)
		pe.lie = func(sym *RecoverySymbol, _ bool) {
			if sym.Source%5 == 0 {
				sym.Data[0] ^= 0xff
			}
		}
		got, stats, err := c.Recover(context.Background(), enc.Metadata, target, pe, WithRand(testRand(t)))
		if err != nil || !bytes.Equal(got.Data, want) {
			t.Fatalf("err = %v", err)
		}
		if !stats.UsedProofs || len(stats.Faulty) == 0 {
			t.Fatalf("stats %+v", stats)
		}
		for _, f := range stats.Faulty {
			if f.Index%5 != 0 || f.Axis != crypto.Secondary {
				t.Fatalf("honest source %s blamed", f)
			}
		}
	})
	t.Run("too many silent", func(t *testing.T) {
		pe := newPeers(t, c, enc)
		for pair := range 11 { // 11 > f = 10 shards down: 20 secondaries left < nS = 21
			pe.silent[uint32(pair)] = true
		}
		_, _, err := c.Recover(context.Background(), enc.Metadata, target, pe)
		var short *NotEnoughSymbolsError
		if !errors.As(err, &short) || short.Have != 20 || short.Need != 21 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fetch error", func(t *testing.T) {
		boom := errors.New("boom")
		f := SymbolFetcherFunc(func(context.Context, SliverRef, []uint32, bool) ([]RecoverySymbol, error) { return nil, boom })
		if _, _, err := c.Recover(context.Background(), enc.Metadata, target, f); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
}

// A node that lost both slivers of a pair gets both back, secondary first.
func TestRecoverPair(t *testing.T) {
	for _, n := range []int{4, 7, 31, 100} {
		c := mustCodec(t, n)
		enc := mustEncode(t, c, randomBlob(int64(n), 77_777))
		rng := testRand(t)
		pairs := rng.Perm(n)[:min(n, 12)]
		for _, pair := range pairs {
			pe := newPeers(t, c, enc)
			pe.lose(pair)
			got, stats, err := c.RecoverPair(context.Background(), enc.Metadata, pair, pe, WithRand(rng))
			if err != nil {
				t.Fatalf("n=%d pair %d: %v", n, pair, err)
			}
			if !bytes.Equal(got.Primary.Data, enc.Pairs[pair].Primary.Data) || !bytes.Equal(got.Secondary.Data, enc.Pairs[pair].Secondary.Data) {
				t.Fatalf("n=%d pair %d: recovered pair differs", n, pair)
			}
			p := c.Params()
			// Secondary: nP symbols; primary: nS − 1 (its own secondary gives one).
			if stats.SymbolsReceived != p.NP+p.NS-1 || stats.UsedProofs {
				t.Fatalf("n=%d pair %d: stats %+v", n, pair, stats)
			}
		}
	}
}

// At n=4 with one silent shard besides the recovering one, only the
// secondary-first order finishes.
func TestRecoverPairN4OneSilentShard(t *testing.T) {
	c := mustCodec(t, 4)
	enc := mustEncode(t, c, randomBlob(9, 1234))
	for lost := range 4 {
		for silent := range 4 {
			if silent == lost {
				continue
			}
			pe := newPeers(t, c, enc)
			pe.lose(lost)
			pe.silent[uint32(silent)] = true
			got, _, err := c.RecoverPair(context.Background(), enc.Metadata, lost, pe)
			if err != nil {
				t.Fatalf("lost %d silent %d: secondary first: %v", lost, silent, err)
			}
			if !bytes.Equal(got.Primary.Data, enc.Pairs[lost].Primary.Data) || !bytes.Equal(got.Secondary.Data, enc.Pairs[lost].Secondary.Data) {
				t.Fatalf("lost %d silent %d: wrong pair", lost, silent)
			}
			// Primary first stalls: the only secondaries left are two peers'.
			_, _, err = c.Recover(context.Background(), enc.Metadata, SliverRef{crypto.Primary, uint32(lost)}, pe)
			var short *NotEnoughSymbolsError
			if !errors.As(err, &short) || short.Have != 2 || short.Need != 3 {
				t.Fatalf("lost %d silent %d: primary first: err = %v", lost, silent, err)
			}
		}
	}
}
