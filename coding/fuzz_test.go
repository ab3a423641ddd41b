package coding

import (
	"bytes"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// Every decoder of outside bytes: no panic, canonical encodings only, and
// nothing but the genuine value passes verification.

func fuzzBlob(f *testing.F) (*Codec, *Encoded) {
	c := mustCodec(f, 7)
	return c, mustEncode(f, c, randomBlob(42, 500))
}

func FuzzSliverUnmarshal(f *testing.F) {
	c, enc := fuzzBlob(f)
	genuine := map[string]bool{}
	for _, sp := range enc.Pairs {
		for _, sl := range []Sliver{sp.Primary, sp.Secondary} {
			b, _ := sl.MarshalBinary()
			genuine[string(b)] = true
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var sl Sliver
		if sl.UnmarshalBinary(data) != nil {
			return
		}
		again, err := sl.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted sliver does not re-encode to its input: %v", err)
		}
		if c.VerifySliver(enc.Metadata, sl) == nil && !genuine[string(data)] {
			t.Fatalf("forged %s verifies", sl.SliverRef)
		}
	})
}

func FuzzRecoverySymbolUnmarshal(f *testing.F) {
	c, enc := fuzzBlob(f)
	ext := extendAll(f, c, enc)
	target := SliverRef{crypto.Primary, 3}
	genuine := map[string]bool{}
	for src := range c.Params().Shards {
		sym, _ := ext[SliverRef{crypto.Secondary, uint32(src)}].Symbol(3, true)
		b, _ := sym.MarshalBinary()
		genuine[string(b)] = true
		f.Add(b)
		sym.compact = true // the same symbol as version 2 encodes it
		b, _ = sym.MarshalBinary()
		genuine[string(b)] = true
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var sym RecoverySymbol
		if sym.UnmarshalBinary(data) != nil {
			return
		}
		again, err := sym.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted symbol does not re-encode to its input: %v", err)
		}
		ok := c.Params().checkSymbol(sym, target, enc.SymbolSize) == nil && sym.Verify(enc.Metadata) == nil
		if ok && !genuine[string(data)] {
			t.Fatalf("forged symbol from %s verifies", sym.SourceRef())
		}
	})
}

func FuzzInconsistencyProofUnmarshal(f *testing.F) {
	c, enc := fuzzBlob(f)
	ext := extendAll(f, c, enc)
	target := SliverRef{crypto.Secondary, 2}
	syms := symbolsFor(f, ext, target, []int{0, 3, 5}, true)
	proof := &InconsistencyProof{BlobID: enc.ID, Metadata: enc.Metadata, Target: target, Symbols: syms}
	b, err := proof.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		var p InconsistencyProof
		if p.UnmarshalBinary(data) != nil {
			return
		}
		again, err := p.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted proof does not re-encode to its input: %v", err)
		}
		// The blob is consistent, so no proof about it may verify.
		if p.BlobID == enc.ID && c.VerifyInconsistencyProof(&p) == nil {
			t.Fatal("an inconsistency proof verifies for a consistent blob")
		}
	})
}

func FuzzSymbolBatchUnmarshal(f *testing.F) {
	c, enc := fuzzBlob(f)
	ext := extendAll(f, c, enc)
	target := SliverRef{crypto.Primary, 3}
	// The requests the batches answer: every secondary, one twice.
	sources := []int{4, 0, 6, 2, 5, 1, 3, 4}
	var asked []SymbolRequest
	for _, src := range sources {
		asked = append(asked, SymbolRequest{Source: SliverRef{crypto.Secondary, uint32(src)}, Target: target.Index})
	}
	genuine := map[string]bool{} // source index and data of every genuine symbol
	for _, proofs := range []bool{false, true} {
		syms := symbolsFor(f, ext, target, sources, proofs)
		for _, served := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {1, 4, 7}, {0}, nil} {
			b := SymbolBatch{Asked: asked, SymbolSize: enc.SymbolSize, Proofs: proofs}
			for _, i := range served {
				b.Symbols = append(b.Symbols, syms[i])
				genuine[string(append([]byte{byte(syms[i].Source)}, syms[i].Data...))] = true
			}
			raw, err := b.MarshalBinary()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(proofs, raw)
		}
	}
	f.Fuzz(func(t *testing.T, proofs bool, data []byte) {
		b := SymbolBatch{Asked: asked, SymbolSize: enc.SymbolSize, Proofs: proofs}
		if b.UnmarshalBinary(data) != nil {
			return
		}
		if len(b.Symbols) > len(asked) {
			t.Fatalf("%d symbols decoded for %d requests", len(b.Symbols), len(asked))
		}
		again, err := b.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) || b.EncodedLen() != len(data) {
			t.Fatalf("accepted batch does not re-encode to its input: %v", err)
		}
		for _, sym := range b.Symbols {
			ok := c.Params().checkSymbol(sym, target, enc.SymbolSize) == nil && sym.Verify(enc.Metadata) == nil
			if ok && !genuine[string(append([]byte{byte(sym.Source)}, sym.Data...))] {
				t.Fatalf("forged symbol from %s verifies", sym.SourceRef())
			}
		}
	})
}
