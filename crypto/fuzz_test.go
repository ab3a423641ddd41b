package crypto

import (
	"bytes"
	"testing"
)

// Every decoder of outside bytes: it must not panic, and what it accepts
// must re-encode to exactly the input (one value, one encoding).

func FuzzMetadataUnmarshal(f *testing.F) {
	good, _ := sampleMetadata(4).MarshalBinary()
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte{1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Metadata
		if m.UnmarshalBinary(data) != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted metadata does not re-encode to its input: %v", err)
		}
		_ = m.BlobID()
	})
}

func FuzzMerkleProofUnmarshal(f *testing.F) {
	tree := NewMerkleTree(leavesOf(9))
	proof, _ := tree.Proof(5)
	good, _ := proof.MarshalBinary()
	f.Add(good)
	f.Add(good[:7])
	f.Fuzz(func(t *testing.T, data []byte) {
		var p MerkleProof
		if p.UnmarshalBinary(data) != nil {
			return
		}
		again, err := p.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted proof does not re-encode to its input: %v", err)
		}
		if p.Verify(tree.Root(), tree.Leaf(5), 9) == nil && !bytes.Equal(data, good) {
			t.Fatal("a proof other than the genuine one verifies")
		}
	})
}

func FuzzParseBlobID(f *testing.F) {
	f.Add(sampleMetadata(4).BlobID().String())
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseBlobID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseBlobID accepted non-canonical %q", s)
		}
	})
}
