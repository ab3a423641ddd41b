package crypto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func sampleMetadata(n int) *Metadata {
	m := &Metadata{Encoding: 1, Shards: uint32(n), Length: 123456, Pairs: make([]PairHashes, n)}
	for i := range m.Pairs {
		m.Pairs[i] = PairHashes{Primary: LeafHash([]byte{1, byte(i)}), Secondary: LeafHash([]byte{2, byte(i)})}
	}
	return m
}

func TestMetadataEncoding(t *testing.T) {
	m := sampleMetadata(7)
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 14+7*64 || b[0] != 1 || b[1] != 1 || binary.BigEndian.Uint32(b[2:6]) != 7 || binary.BigEndian.Uint64(b[6:14]) != 123456 {
		t.Fatalf("unexpected layout % x", b[:14])
	}
	if !bytes.Equal(b[14:46], m.Pairs[0].Primary[:]) || !bytes.Equal(b[46:78], m.Pairs[0].Secondary[:]) {
		t.Fatal("pair hashes not in pair order, primary first")
	}
	var got Metadata
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.BlobID() != m.BlobID() {
		t.Fatal("round trip changed the blob ID")
	}
	bad := [][]byte{
		nil, b[:13], b[:len(b)-1], append(append([]byte(nil), b...), 0),
		append([]byte{2}, b[1:]...),                                                 // unknown version
		append([]byte{1, 1, 0, 0, 0, 0}, b[6:14]...),                                // zero shards
		append(append([]byte{1, 1, 0xff, 0xff, 0xff, 0xff}, b[6:14]...), b[14:]...), // shard count vs size
	}
	for i, d := range bad {
		before := got
		if err := got.UnmarshalBinary(d); err == nil {
			t.Fatalf("malformed metadata %d accepted", i)
		}
		if got.BlobID() != before.BlobID() {
			t.Fatalf("malformed metadata %d changed the value", i)
		}
	}
}

func TestMetadataChecks(t *testing.T) {
	m := sampleMetadata(10)
	id := m.BlobID()
	if id != DeriveBlobID(1, 10, 123456, m.PairsRoot()) {
		t.Fatal("BlobID is not DeriveBlobID over the pair root")
	}
	if err := m.CheckBlobID(id); err != nil {
		t.Fatal(err)
	}
	other := *m
	other.Length++
	var mismatch *BlobIDMismatchError
	if err := other.CheckBlobID(id); !errors.As(err, &mismatch) || mismatch.Expected != id {
		t.Fatalf("length change: err = %v", err)
	}
	// Secondary sliver j lives in pair n−1−j.
	h, err := m.SliverHash(Secondary, 2)
	if err != nil || h != m.Pairs[7].Secondary {
		t.Fatalf("secondary 2 hash: %v", err)
	}
	if _, err := m.SliverHash(Primary, 10); err == nil {
		t.Fatal("out-of-range sliver accepted")
	}
	var sm *SliverMismatchError
	if err := m.CheckSliverRoot(Primary, 3, Digest{}); !errors.As(err, &sm) || sm.Index != 3 || sm.Expected != m.Pairs[3].Primary {
		t.Fatalf("err = %v", err)
	}
}

func TestVerifySymbol(t *testing.T) {
	// Build a metadata whose primary sliver 4 commits to a known line.
	line := make([][]byte, 10)
	leaves := make([]Digest, 10)
	for j := range line {
		line[j] = []byte{byte(j), 9, 9}
		leaves[j] = LeafHash(line[j])
	}
	tree := NewMerkleTree(leaves)
	m := sampleMetadata(10)
	m.Pairs[4].Primary = tree.Root()
	proof, _ := tree.Proof(6)
	if err := m.VerifySymbol(Primary, 4, 6, line[6], proof); err != nil {
		t.Fatal(err)
	}
	if m.VerifySymbol(Primary, 4, 6, []byte{6, 9, 8}, proof) == nil {
		t.Fatal("altered symbol accepted")
	}
	if m.VerifySymbol(Primary, 4, 5, line[6], proof) == nil {
		t.Fatal("symbol accepted for another position")
	}
	if m.VerifySymbol(Primary, 3, 6, line[6], proof) == nil {
		t.Fatal("symbol accepted for another source")
	}
	if m.VerifySymbol(Secondary, 5, 6, line[6], proof) == nil {
		t.Fatal("symbol accepted for the other axis")
	}
}
