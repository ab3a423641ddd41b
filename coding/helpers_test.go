package coding

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/weftstore/weft/crypto"
)

func mustCodec(t testing.TB, n int, opts ...Option) *Codec {
	t.Helper()
	c, err := New(n, opts...)
	if err != nil {
		t.Fatalf("New(%d): %v", n, err)
	}
	return c
}

func mustEncode(t testing.TB, c *Codec, blob []byte) *Encoded {
	t.Helper()
	enc, err := c.Encode(blob)
	if err != nil {
		t.Fatalf("Encode(%d bytes): %v", len(blob), err)
	}
	return enc
}

// randomBlob returns size pseudo-random bytes, the same for the same seed.
func randomBlob(seed int64, size int) []byte {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testRand(t testing.TB) *rand.Rand {
	seed := uint64(len(t.Name())) * 0x9e3779b97f4a7c15
	for _, ch := range t.Name() {
		seed = seed*31 + uint64(ch)
	}
	return rand.New(rand.NewPCG(seed, 1))
}

// pick returns k distinct indices from [0, n), in random order.
func pick(r *rand.Rand, n, k int) []int {
	return r.Perm(n)[:k]
}

func sliverOf(enc *Encoded, ref SliverRef) Sliver {
	n := len(enc.Pairs)
	if ref.Axis == crypto.Primary {
		return enc.Pairs[ref.Index].Primary
	}
	return enc.Pairs[n-1-int(ref.Index)].Secondary
}

// peers serves recovery symbols from the slivers a set of shards hold, the
// way storage nodes would: it extends a held sliver and answers with its
// symbol for the target. Shards in silent never answer; lie, if set, may
// replace what a source sends.
type peers struct {
	t      testing.TB
	codec  *Codec
	meta   *crypto.Metadata
	held   map[SliverRef]Sliver
	silent map[uint32]bool // by pair: the shard holding that pair is down
	lie    func(sym *RecoverySymbol, withProof bool)
	calls  int
}

func newPeers(t testing.TB, c *Codec, enc *Encoded) *peers {
	pe := &peers{t: t, codec: c, meta: enc.Metadata, held: map[SliverRef]Sliver{}, silent: map[uint32]bool{}}
	for _, sp := range enc.Pairs {
		pe.held[sp.Primary.SliverRef] = sp.Primary
		pe.held[sp.Secondary.SliverRef] = sp.Secondary
	}
	return pe
}

// lose removes both slivers of a pair (the shard lost its data but answers
// for nothing it does not have).
func (pe *peers) lose(pair int) {
	n := pe.codec.Params().Shards
	delete(pe.held, SliverRef{crypto.Primary, uint32(pair)})
	delete(pe.held, SliverRef{crypto.Secondary, uint32(n - 1 - pair)})
}

func (pe *peers) FetchSymbols(_ context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, error) {
	pe.calls++
	var out []RecoverySymbol
	n := pe.codec.Params().Shards
	for _, src := range sources {
		ref := SliverRef{target.Axis.Other(), src}
		if pe.silent[crypto.PairIndex(ref.Axis, src, uint32(n))] {
			continue
		}
		sl, ok := pe.held[ref]
		if !ok {
			continue
		}
		ext, err := pe.codec.Extend(pe.meta, sl)
		if err != nil {
			pe.t.Fatalf("peer cannot extend %s: %v", ref, err)
		}
		sym, err := ext.Symbol(int(target.Index), withProofs)
		if err != nil {
			pe.t.Fatalf("peer symbol: %v", err)
		}
		sym.Data = append([]byte(nil), sym.Data...)
		sym = sym.Compact() // as a node's peers answer it (storage asks for version 2)
		if pe.lie != nil {
			pe.lie(&sym, withProofs)
		}
		out = append(out, sym)
	}
	return out, nil
}
