package coding

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// One flipped bit anywhere in a sliver is caught by VerifySliver, which
// names the sliver.
func TestBitFlipInSliverDetected(t *testing.T) {
	for _, n := range []int{4, 10, 300} {
		c := mustCodec(t, n)
		enc := mustEncode(t, c, randomBlob(int64(n), 20_000))
		rng := testRand(t)
		for _, sp := range enc.Pairs {
			for _, sl := range []Sliver{sp.Primary, sp.Secondary} {
				if err := c.VerifySliver(enc.Metadata, sl); err != nil {
					t.Fatalf("n=%d genuine %s: %v", n, sl.SliverRef, err)
				}
				bit := rng.IntN(len(sl.Data) * 8)
				bad := sl
				bad.Data = append([]byte(nil), sl.Data...)
				bad.Data[bit/8] ^= 1 << (bit % 8)
				var mismatch *crypto.SliverMismatchError
				if err := c.VerifySliver(enc.Metadata, bad); !errors.As(err, &mismatch) || mismatch.Axis != sl.Axis || mismatch.Index != sl.Index {
					t.Fatalf("n=%d %s bit %d flipped: err = %v", n, sl.SliverRef, bit, err)
				}
			}
		}
	}
}

// Every bit of an encoded recovery symbol — header, data, proof — matters:
// a flip either fails to decode, or yields a symbol that fails verification
// for the target it was asked for.
func TestBitFlipInSymbolDetected(t *testing.T) {
	c := mustCodec(t, 7)
	enc := mustEncode(t, c, randomBlob(7, 3000))
	ext := extendAll(t, c, enc)
	for _, target := range []SliverRef{{crypto.Primary, 2}, {crypto.Secondary, 5}} {
		sym := symbolsFor(t, ext, target, []int{4}, true)[0]
		if err := sym.Verify(enc.Metadata); err != nil {
			t.Fatal(err)
		}
		wire, err := sym.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		s := enc.SymbolSize
		for bit := range len(wire) * 8 {
			bad := append([]byte(nil), wire...)
			bad[bit/8] ^= 1 << (bit % 8)
			var got RecoverySymbol
			if got.UnmarshalBinary(bad) != nil {
				continue
			}
			if c.Params().checkSymbol(got, target, s) != nil {
				continue // not the symbol that was asked for: the recovery drops it
			}
			if err := got.Verify(enc.Metadata); err == nil {
				t.Fatalf("%s: bit %d of %d flipped, symbol still verifies", target, bit, len(wire)*8)
			}
		}
	}
}

// A flip in a Merkle proof or in the metadata or blob ID is caught.
func TestBitFlipInMetadataAndIDDetected(t *testing.T) {
	c := mustCodec(t, 5)
	enc := mustEncode(t, c, randomBlob(11, 777))
	wire, err := enc.Metadata.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for bit := range len(wire) * 8 {
		bad := append([]byte(nil), wire...)
		bad[bit/8] ^= 1 << (bit % 8)
		var m crypto.Metadata
		if m.UnmarshalBinary(bad) != nil {
			continue
		}
		if err := m.CheckBlobID(enc.ID); err == nil {
			t.Fatalf("metadata bit %d flipped still matches the blob ID", bit)
		}
	}
	for bit := range crypto.DigestSize * 8 {
		id := enc.ID
		id[bit/8] ^= 1 << (bit % 8)
		if !errors.Is(enc.Metadata.CheckBlobID(id), crypto.ErrBlobIDMismatch) {
			t.Fatalf("blob ID bit %d flipped still matches", bit)
		}
	}
}

// inconsistentBlob encodes blob honestly, then changes one symbol of M —
// M[i][j] inside the systematic part — before hashing, as a malicious
// writer would. Primary sliver i and secondary sliver j then commit to
// lines that are not codewords; every other sliver checks out.
func inconsistentBlob(t testing.TB, c *Codec, blob []byte, i, j int) (*crypto.Metadata, *refMatrix) {
	t.Helper()
	ref := referenceMatrix(t, c, blob)
	ref.at(i, j)[0] ^= 0x5a
	return ref.metadata(c.Params().Encoding, uint64(len(blob))), ref
}

func TestInconsistentEncodingDetected(t *testing.T) {
	for _, tc := range []struct {
		n   int
		enc Encoding
	}{{7, RS8}, {10, RS8}, {31, RS8}, {13, Leopard16}, {4, Lanes16}, {7, Lanes16}, {10, Lanes16}, {100, Lanes16}, {1000, Lanes16}} {
		if testing.Short() && tc.n >= 1000 {
			continue
		}
		c := mustCodec(t, tc.n, WithEncoding(tc.enc))
		p := c.Params()
		blob := randomBlob(int64(tc.n), 5000)
		const ti, tj = 1, 2 // the tampered entry, inside the source matrix
		meta, ref := inconsistentBlob(t, c, blob, ti, tj)
		id := meta.BlobID()

		// Slivers as the writer hands them out; exactly the two touched
		// lines fail their own check.
		held := map[SliverRef]Sliver{}
		for x := range p.Shards {
			for _, sl := range []Sliver{ref.primary(p, x), ref.secondary(p, x)} {
				err := c.VerifySliver(meta, sl)
				touched := sl.SliverRef == SliverRef{crypto.Primary, ti} || sl.SliverRef == SliverRef{crypto.Secondary, tj}
				if touched != (err != nil) {
					t.Fatalf("n=%d %s: touched=%v, verify err = %v", tc.n, sl.SliverRef, touched, err)
				}
				if err == nil {
					held[sl.SliverRef] = sl
				}
			}
		}

		// Recovery of the touched primary from verified symbols yields the
		// proof, which verifies on its own, also after a round trip.
		target := SliverRef{crypto.Primary, ti}
		ext := map[SliverRef]*ExtendedSliver{}
		for ref, sl := range held {
			e, err := c.Extend(meta, sl)
			if err != nil {
				t.Fatal(err)
			}
			ext[ref] = e
		}
		var sources []int
		for x := range p.Shards {
			if _, ok := held[SliverRef{crypto.Secondary, uint32(x)}]; ok && len(sources) < p.NS {
				sources = append(sources, x)
			}
		}
		_, err := c.RecoverSliver(meta, target, symbolsFor(t, ext, target, sources, true))
		var inc *InconsistencyError
		if !errors.As(err, &inc) || !errors.Is(err, ErrInconsistentBlob) {
			t.Fatalf("n=%d: recovering %s: err = %v", tc.n, target, err)
		}
		if err := c.VerifyInconsistencyProof(inc.Proof); err != nil {
			t.Fatalf("n=%d: proof does not verify: %v", tc.n, err)
		}
		wire, err := inc.Proof.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var decoded InconsistencyProof
		if err := decoded.UnmarshalBinary(wire); err != nil {
			t.Fatal(err)
		}
		if err := mustCodec(t, tc.n, WithEncoding(tc.enc)).VerifyInconsistencyProof(&decoded); err != nil {
			t.Fatalf("n=%d: proof after a round trip: %v", tc.n, err)
		}
		if decoded.BlobID != id {
			t.Fatal("proof names another blob")
		}
		// A tampered proof does not verify.
		tampered := decoded
		tampered.Symbols = append([]RecoverySymbol(nil), decoded.Symbols...)
		tampered.Symbols[0].Data = append([]byte(nil), tampered.Symbols[0].Data...)
		tampered.Symbols[0].Data[0] ^= 1
		if c.VerifyInconsistencyProof(&tampered) == nil {
			t.Fatalf("n=%d: tampered proof verifies", tc.n)
		}

		// The optimistic path ends in the same proof.
		pe := &peers{t: t, codec: c, meta: meta, held: held, silent: map[uint32]bool{}}
		_, stats, err := c.Recover(context.Background(), meta, target, pe, WithRand(testRand(t)))
		if !errors.As(err, &inc) || !stats.UsedProofs {
			t.Fatalf("n=%d: optimistic recovery: err = %v, stats %+v", tc.n, err, stats)
		}
		if c.VerifyInconsistencyProof(inc.Proof) != nil {
			t.Fatalf("n=%d: optimistic recovery's proof does not verify", tc.n)
		}

		// Consistent reads: whichever verified slivers a reader uses, it
		// gets the same "inconsistent blob" error, never bytes.
		rng := testRand(t)
		var goodPrimaries, goodSecondaries []Sliver
		for x := range p.Shards {
			if sl, ok := held[SliverRef{crypto.Primary, uint32(x)}]; ok {
				goodPrimaries = append(goodPrimaries, sl)
			}
			if sl, ok := held[SliverRef{crypto.Secondary, uint32(x)}]; ok {
				goodSecondaries = append(goodSecondaries, sl)
			}
		}
		wantMsg := (&InconsistentBlobError{ID: id}).Error()
		for trial := range 12 {
			var use []Sliver
			if trial%3 == 2 {
				for _, k := range pick(rng, len(goodSecondaries), p.NS) {
					use = append(use, goodSecondaries[k])
				}
			} else {
				for _, k := range pick(rng, len(goodPrimaries), p.NP) {
					use = append(use, goodPrimaries[k])
				}
			}
			got, err := c.Decode(meta, use)
			if got != nil || !errors.Is(err, ErrInconsistentBlob) || err.Error() != wantMsg {
				t.Fatalf("n=%d trial %d: Decode returned %d bytes, err = %v", tc.n, trial, len(got), err)
			}
		}
	}
}

// For a consistent blob, no set of genuine symbols makes an inconsistency
// proof.
func TestInconsistencyProofOfConsistentBlobRejected(t *testing.T) {
	c := mustCodec(t, 10)
	p := c.Params()
	enc := mustEncode(t, c, randomBlob(12, 4000))
	ext := extendAll(t, c, enc)
	target := SliverRef{crypto.Secondary, 6}
	sources := make([]int, p.NP)
	for i := range sources {
		sources[i] = i + 2
	}
	proof := &InconsistencyProof{BlobID: enc.ID, Metadata: enc.Metadata, Target: target, Symbols: symbolsFor(t, ext, target, sources, true)}
	if err := c.VerifyInconsistencyProof(proof); !errors.Is(err, ErrNotInconsistent) {
		t.Fatalf("err = %v", err)
	}
	// Wrong blob ID for the metadata.
	proof.BlobID[0] ^= 1
	if err := c.VerifyInconsistencyProof(proof); !errors.Is(err, crypto.ErrBlobIDMismatch) {
		t.Fatalf("err = %v", err)
	}
}

// The consistent-read check must not trust the decode: bytes that differ
// from the blob in one bit are refused.
func TestCheckConsistentRejectsOtherBytes(t *testing.T) {
	c := mustCodec(t, 7)
	blob := randomBlob(13, 10_000)
	enc := mustEncode(t, c, blob)
	if err := c.CheckConsistent(enc.Metadata, blob); err != nil {
		t.Fatal(err)
	}
	other := bytes.Clone(blob)
	other[5000] ^= 8
	if err := c.CheckConsistent(enc.Metadata, other); !errors.Is(err, ErrInconsistentBlob) {
		t.Fatalf("err = %v", err)
	}
	if err := c.CheckConsistent(enc.Metadata, blob[:9999]); err == nil {
		t.Fatal("short blob passes")
	}
}
