package coding

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// Both recovery symbol versions decode to the same symbol, laid out as
// DESIGN.md's wire table says (built here by hand, not by MarshalBinary),
// and each re-encodes to exactly its own bytes: version 1 symbols inside
// signed challenge responses and inconsistency proofs keep their bytes.
func TestRecoverySymbolVersions(t *testing.T) {
	c := mustCodec(t, 7)
	enc := mustEncode(t, c, randomBlob(3, 700))
	ext := extendAll(t, c, enc)
	for _, withProof := range []bool{false, true} {
		sym := symbolsFor(t, ext, SliverRef{crypto.Primary, 2}, []int{5}, withProof)[0]
		head := []byte{0, flagSecondary, 0, 5, 0, 2}
		var proof []byte
		if withProof {
			head[1] |= flagProof
			proof, _ = sym.Proof.MarshalBinary()
		}
		head[0] = 1
		v1 := binary.BigEndian.AppendUint32(bytes.Clone(head), uint32(len(sym.Data)))
		v1 = append(append(v1, sym.Data...), proof...)
		head[0] = 2
		v2 := append(append(bytes.Clone(head), proof...), sym.Data...)
		if got, _ := sym.MarshalBinary(); !bytes.Equal(got, v1) {
			t.Fatalf("proof %v: MarshalBinary = %x, want version 1 %x (what every release decodes)", withProof, got, v1)
		}
		if got, _ := sym.Compact().MarshalBinary(); !bytes.Equal(got, v2) || sym.Compact().EncodedLen() != len(v2) {
			t.Fatalf("proof %v: Compact().MarshalBinary = %x, want version 2 %x", withProof, got, v2)
		}
		for _, wire := range [][]byte{v1, v2} {
			var got RecoverySymbol
			if err := got.UnmarshalBinary(wire); err != nil {
				t.Fatalf("version %d, proof %v: %v", wire[0], withProof, err)
			}
			if got.SourceRef() != sym.SourceRef() || got.Target != sym.Target || !bytes.Equal(got.Data, sym.Data) {
				t.Fatalf("version %d decodes to %s→%d %x", wire[0], got.SourceRef(), got.Target, got.Data)
			}
			if withProof && got.Verify(enc.Metadata) != nil {
				t.Fatalf("version %d: the decoded proof does not verify", wire[0])
			}
			if again, _ := got.MarshalBinary(); !bytes.Equal(again, wire) || got.EncodedLen() != len(wire) {
				t.Fatalf("version %d re-encodes to %x (EncodedLen %d), want %x", wire[0], again, got.EncodedLen(), wire)
			}
		}
	}
}
