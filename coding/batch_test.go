package coding

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// batchFixture: requests for primary 2 from secondaries 0…6 of a 7-shard
// blob, in a scrambled order, and their symbols.
func batchFixture(t testing.TB, withProofs bool) (*Encoded, []SymbolRequest, []RecoverySymbol) {
	t.Helper()
	c := mustCodec(t, 7)
	enc := mustEncode(t, c, randomBlob(5, 700))
	ext := extendAll(t, c, enc)
	target := SliverRef{crypto.Primary, 2}
	order := []int{5, 0, 3, 6, 1, 4, 2}
	syms := symbolsFor(t, ext, target, order, withProofs)
	var asked []SymbolRequest
	for _, sym := range syms {
		asked = append(asked, SymbolRequest{Source: sym.SourceRef(), Target: sym.Target})
	}
	return enc, asked, syms
}

// A batch is laid out as DESIGN.md's wire table says (built here by hand):
// with every request served, header and data only; with some left out, a
// bitmap; proofs after the data. It decodes, against the request list, to
// the symbols that were encoded, which verify.
func TestSymbolBatchLayout(t *testing.T) {
	for _, withProofs := range []bool{false, true} {
		enc, asked, syms := batchFixture(t, withProofs)
		s := enc.SymbolSize
		for _, tc := range []struct {
			name   string
			served []int // indexes into asked
		}{
			{"all", []int{0, 1, 2, 3, 4, 5, 6}},
			{"some", []int{1, 2, 6}},
			{"none", nil},
		} {
			b := SymbolBatch{Asked: asked, SymbolSize: s, Proofs: withProofs}
			for _, i := range tc.served {
				b.Symbols = append(b.Symbols, syms[i])
			}
			want := []byte{SymbolVersionBatch, 0}
			if withProofs {
				want[1] |= batchFlagProofs
			}
			if len(tc.served) < len(asked) {
				want[1] |= batchFlagPartial
				var bitmap byte
				for _, i := range tc.served {
					bitmap |= 1 << i
				}
				want = append(want, bitmap)
			}
			for _, sym := range b.Symbols {
				want = append(want, sym.Data...)
			}
			for _, sym := range b.Symbols {
				if withProofs {
					want, _ = sym.Proof.AppendBinary(want)
				}
			}
			got, err := b.MarshalBinary()
			if err != nil {
				t.Fatalf("%s, proofs %v: %v", tc.name, withProofs, err)
			}
			if !bytes.Equal(got, want) || b.EncodedLen() != len(want) {
				t.Fatalf("%s, proofs %v: MarshalBinary = %x (EncodedLen %d), want %x", tc.name, withProofs, got, b.EncodedLen(), want)
			}
			dec := SymbolBatch{Asked: asked, SymbolSize: s, Proofs: withProofs}
			if err := dec.UnmarshalBinary(got); err != nil {
				t.Fatalf("%s, proofs %v: %v", tc.name, withProofs, err)
			}
			if len(dec.Symbols) != len(b.Symbols) {
				t.Fatalf("%s: decoded %d symbols, encoded %d", tc.name, len(dec.Symbols), len(b.Symbols))
			}
			for j, sym := range dec.Symbols {
				in := b.Symbols[j]
				if sym.SourceRef() != in.SourceRef() || sym.Target != in.Target || !bytes.Equal(sym.Data, in.Data) {
					t.Fatalf("%s: symbol %d decodes to %s→%d %x, want %s→%d %x", tc.name, j, sym.SourceRef(), sym.Target, sym.Data, in.SourceRef(), in.Target, in.Data)
				}
				if withProofs {
					if err := sym.Verify(enc.Metadata); err != nil {
						t.Fatalf("%s: symbol %d: %v", tc.name, j, err)
					}
				}
			}
			if again, _ := dec.MarshalBinary(); !bytes.Equal(again, got) {
				t.Fatalf("%s, proofs %v: decoded batch re-encodes to %x, want %x", tc.name, withProofs, again, got)
			}
		}
	}
}

// A malformed batch is refused with an error that says what is wrong,
// never decoded to something else and never a panic.
func TestSymbolBatchRejectsMalformed(t *testing.T) {
	enc, asked, syms := batchFixture(t, true)
	s := enc.SymbolSize
	encode := func(proofs bool, served ...int) []byte {
		t.Helper()
		b := SymbolBatch{Asked: asked, SymbolSize: s, Proofs: proofs}
		for _, i := range served {
			sym := syms[i]
			if !proofs {
				sym.Proof = nil
			}
			b.Symbols = append(b.Symbols, sym)
		}
		raw, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	full := encode(false, 0, 1, 2, 3, 4, 5, 6)
	partial := encode(false, 0, 3)
	proofs := encode(true, 0, 1, 2, 3, 4, 5, 6)
	with := func(raw []byte, at int, v byte) []byte {
		out := bytes.Clone(raw)
		out[at] = v
		return out
	}
	cases := []struct {
		name   string
		data   []byte
		asked  []SymbolRequest
		s      int
		proofs bool
		want   string
	}{
		{"empty", nil, asked, s, false, "header needs"},
		{"version 2", with(full, 0, 2), asked, s, false, "version 2"},
		{"unknown flag", with(full, 1, 0x80), asked, s, false, "unknown flags"},
		{"proofs not asked", proofs, asked, s, false, "proofs true, asked for proofs false"},
		{"proofs missing", full, asked, s, true, "proofs false, asked for proofs true"},
		{"truncated data", full[:len(full)-1], asked, s, false, "symbols served need"},
		{"trailing data", append(bytes.Clone(full), 0), asked, s, false, "symbols served need"},
		{"more requests than answers", full, append(slices.Clone(asked), asked[0]), s, false, "symbols served need"},
		{"fewer requests than answers", full, asked[:6], s, false, "symbols served need"},
		{"wrong symbol size", full, asked, s + 2, false, "symbols served need"},
		{"bitmap truncated", partial[:2], asked, s, false, "bitmap of 1 bytes truncated"},
		{"bitmap bit past the requests", with(partial, 2, partial[2]|0x80), asked, s, false, "bits past request 6"},
		{"bitmap bit added", with(partial, 2, partial[2]|0x02), asked, s, false, "symbols served need"},
		{"bitmap all served", with(partial, 2, 0x7f), asked, s, false, "not canonical"},
		{"proof truncated", proofs[:len(proofs)-1], asked, s, true, "proof of symbol 6"},
		{"proof trailing", append(bytes.Clone(proofs), 0), asked, s, true, "1 trailing bytes"},
		{"proof for another position", proofs, retarget(asked, 3), s, true, "carries a proof for 2"},
		{"zero symbol size", full, asked, 0, false, "0-byte symbols"},
		{"too many requests", full, make([]SymbolRequest, MaxBatchRequests+1), s, false, "at most"},
		{"request beyond the limit", full, []SymbolRequest{{Source: SliverRef{crypto.Primary, MaxShards}}}, s, false, "beyond the"},
	}
	for _, tc := range cases {
		b := SymbolBatch{Asked: tc.asked, SymbolSize: tc.s, Proofs: tc.proofs}
		err := b.UnmarshalBinary(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
		if b.Symbols != nil {
			t.Errorf("%s: a refused batch set %d symbols", tc.name, len(b.Symbols))
		}
	}
}

// retarget asks the same sources for another position.
func retarget(q []SymbolRequest, target uint32) []SymbolRequest {
	out := slices.Clone(q)
	for i := range out {
		out[i].Target = target
	}
	return out
}

// MarshalBinary refuses symbols that do not answer the requests in order,
// have another size, or disagree with Proofs.
func TestSymbolBatchMarshalChecks(t *testing.T) {
	enc, asked, syms := batchFixture(t, true)
	s := enc.SymbolSize
	noProof := syms[1]
	noProof.Proof = nil
	short := syms[1]
	short.Data = short.Data[:s-2]
	for _, tc := range []struct {
		name string
		b    SymbolBatch
		want string
	}{
		{"out of order", SymbolBatch{Asked: asked, SymbolSize: s, Proofs: true, Symbols: []RecoverySymbol{syms[3], syms[1]}}, "answers no request left"},
		{"not asked", SymbolBatch{Asked: asked[:2], SymbolSize: s, Proofs: true, Symbols: []RecoverySymbol{syms[3]}}, "answers no request left"},
		{"twice", SymbolBatch{Asked: asked, SymbolSize: s, Proofs: true, Symbols: []RecoverySymbol{syms[1], syms[1]}}, "answers no request left"},
		{"proof missing", SymbolBatch{Asked: asked, SymbolSize: s, Proofs: true, Symbols: []RecoverySymbol{noProof}}, "with proof false"},
		{"proof not asked", SymbolBatch{Asked: asked, SymbolSize: s, Symbols: []RecoverySymbol{syms[1]}}, "with proof true"},
		{"size", SymbolBatch{Asked: asked, SymbolSize: s, Proofs: true, Symbols: []RecoverySymbol{short}}, "the batch's have"},
	} {
		if _, err := tc.b.MarshalBinary(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// countingPeers answers each call with one batch for all its requests,
// all but every third request served, and reports the batch's length.
type countingPeers struct {
	ext      map[SliverRef]*ExtendedSliver
	s        int
	received int64
}

func (cp *countingPeers) FetchSymbols(ctx context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, error) {
	panic("a CountingFetcher is asked through FetchSymbolsCounted")
}

func (cp *countingPeers) FetchSymbolsCounted(_ context.Context, target SliverRef, sources []uint32, withProofs bool) ([]RecoverySymbol, int64, error) {
	b := SymbolBatch{SymbolSize: cp.s, Proofs: withProofs}
	for i, src := range sources {
		ref := SliverRef{target.Axis.Other(), src}
		b.Asked = append(b.Asked, SymbolRequest{Source: ref, Target: target.Index})
		if i%3 != 2 {
			sym, err := cp.ext[ref].Symbol(int(target.Index), withProofs)
			if err != nil {
				return nil, 0, err
			}
			b.Symbols = append(b.Symbols, sym)
		}
	}
	raw, err := b.MarshalBinary()
	if err != nil {
		return nil, 0, err
	}
	dec := SymbolBatch{Asked: b.Asked, SymbolSize: cp.s, Proofs: withProofs}
	if err := dec.UnmarshalBinary(raw); err != nil {
		return nil, 0, err
	}
	cp.received += int64(len(raw))
	return dec.Symbols, int64(len(raw)), nil
}

// Recover rebuilds from batched answers and counts what a CountingFetcher
// says arrived, not the symbols' own encodings.
func TestRecoverCountsFetcherBytes(t *testing.T) {
	c := mustCodec(t, 10)
	enc := mustEncode(t, c, randomBlob(9, 3000))
	peers := &countingPeers{ext: extendAll(t, c, enc), s: enc.SymbolSize}
	target := SliverRef{crypto.Primary, 4}
	got, stats, err := c.Recover(context.Background(), enc.Metadata, target, peers, WithRand(testRand(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, sliverOf(enc, target).Data) {
		t.Fatal("rebuilt the wrong sliver")
	}
	if stats.BytesReceived != peers.received || stats.Requests < 2 {
		t.Fatalf("stats %+v, the fetcher received %d bytes", stats, peers.received)
	}
}
