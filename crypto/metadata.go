package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Axis says which of a blob's two codes a sliver belongs to.
type Axis uint8

const (
	// Primary slivers are rows of the n×n matrix M: primary sliver i holds
	// the first nS symbols of row i.
	Primary Axis = 0
	// Secondary slivers are columns of M: secondary sliver j holds the
	// first nP symbols of column j.
	Secondary Axis = 1
)

// Other returns the opposite axis: the axis whose slivers supply recovery
// symbols for a sliver of this one.
func (a Axis) Other() Axis { return 1 - a }

// Valid reports whether a is Primary or Secondary.
func (a Axis) Valid() bool { return a == Primary || a == Secondary }

func (a Axis) String() string {
	switch a {
	case Primary:
		return "primary"
	case Secondary:
		return "secondary"
	}
	return fmt.Sprintf("axis(%d)", uint8(a))
}

// PairHashes are the commitments to one sliver pair: pair p holds primary
// sliver p and secondary sliver n−1−p. Each hash is the Merkle root over the
// n symbols of the sliver's fully extended line of M.
type PairHashes struct {
	Primary   Digest
	Secondary Digest
}

// Metadata is everything a blob ID commits to. Its codec-specific meaning
// (which encodings exist, the shard limits) belongs to package coding; this
// type only encodes, hashes and checks.
type Metadata struct {
	Encoding uint8
	Shards   uint32
	Length   uint64
	Pairs    []PairHashes // len(Pairs) == Shards, indexed by pair
}

const (
	metadataVersion = 1
	metadataHeader  = 1 + 1 + 4 + 8
	pairSize        = 2 * DigestSize
)

// EncodedLen is the length of the canonical encoding.
func (m *Metadata) EncodedLen() int { return metadataHeader + pairSize*len(m.Pairs) }

// Validate checks the structure: at least one shard and one hash pair per
// shard. Codec limits are checked by package coding.
func (m *Metadata) Validate() error {
	if m.Shards == 0 {
		return errors.New("crypto: metadata with zero shards")
	}
	if uint64(len(m.Pairs)) != uint64(m.Shards) {
		return fmt.Errorf("crypto: metadata for %d shards has %d pair hashes", m.Shards, len(m.Pairs))
	}
	return nil
}

// MarshalBinary returns the canonical encoding:
// u8 version ‖ u8 encoding ‖ u32 shards ‖ u64 length ‖ shards × (primary ‖ secondary),
// integers big-endian.
func (m *Metadata) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, metadataHeader, m.EncodedLen())
	b[0] = metadataVersion
	b[1] = m.Encoding
	binary.BigEndian.PutUint32(b[2:6], m.Shards)
	binary.BigEndian.PutUint64(b[6:14], m.Length)
	for _, p := range m.Pairs {
		b = append(b, p.Primary[:]...)
		b = append(b, p.Secondary[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes the canonical encoding. Anything else (unknown
// version, wrong size, trailing bytes) is an error and leaves m unchanged.
func (m *Metadata) UnmarshalBinary(data []byte) error {
	if len(data) < metadataHeader {
		return fmt.Errorf("crypto: metadata of %d bytes, header needs %d", len(data), metadataHeader)
	}
	if data[0] != metadataVersion {
		return fmt.Errorf("crypto: metadata version %d, want %d", data[0], metadataVersion)
	}
	shards := binary.BigEndian.Uint32(data[2:6])
	if shards == 0 {
		return errors.New("crypto: metadata with zero shards")
	}
	// Compare before allocating: the length check bounds the allocation by
	// the input size.
	if want := uint64(metadataHeader) + uint64(shards)*pairSize; uint64(len(data)) != want {
		return fmt.Errorf("crypto: metadata for %d shards must be %d bytes, got %d", shards, want, len(data))
	}
	pairs := make([]PairHashes, shards)
	for i := range pairs {
		off := metadataHeader + i*pairSize
		copy(pairs[i].Primary[:], data[off:])
		copy(pairs[i].Secondary[:], data[off+DigestSize:])
	}
	*m = Metadata{
		Encoding: data[1],
		Shards:   shards,
		Length:   binary.BigEndian.Uint64(data[6:14]),
		Pairs:    pairs,
	}
	return nil
}

// pairLeaf is the leaf of pair p in the tree whose root the blob ID commits
// to: H(0x00 ‖ primary hash ‖ secondary hash).
func pairLeaf(p PairHashes) Digest {
	var buf [pairSize]byte
	copy(buf[:], p.Primary[:])
	copy(buf[DigestSize:], p.Secondary[:])
	return LeafHash(buf[:])
}

// PairsRoot returns the Merkle root over the pair leaves.
func (m *Metadata) PairsRoot() Digest {
	leaves := make([]Digest, len(m.Pairs))
	for i, p := range m.Pairs {
		leaves[i] = pairLeaf(p)
	}
	return MerkleRoot(leaves, nil)
}

// BlobID derives the ID the metadata commits to. The metadata must be
// structurally valid (see Validate).
func (m *Metadata) BlobID() BlobID {
	return DeriveBlobID(m.Encoding, m.Shards, m.Length, m.PairsRoot())
}

// CheckBlobID verifies the metadata against an ID; nodes store metadata only
// after this check.
func (m *Metadata) CheckBlobID(id BlobID) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if got := m.BlobID(); got != id {
		return &BlobIDMismatchError{Computed: got, Expected: id}
	}
	return nil
}

// PairIndex returns the pair that holds sliver index of the given axis:
// primary sliver i is in pair i, secondary sliver j in pair n−1−j.
func PairIndex(axis Axis, index, shards uint32) uint32 {
	if axis == Primary {
		return index
	}
	return shards - 1 - index
}

// SliverHash returns the committed hash of a sliver.
func (m *Metadata) SliverHash(axis Axis, index uint32) (Digest, error) {
	if !axis.Valid() {
		return Digest{}, fmt.Errorf("crypto: unknown sliver axis %d", axis)
	}
	if index >= m.Shards || len(m.Pairs) != int(m.Shards) {
		return Digest{}, fmt.Errorf("crypto: %s sliver %d out of range for %d shards", axis, index, m.Shards)
	}
	p := m.Pairs[PairIndex(axis, index, m.Shards)]
	if axis == Primary {
		return p.Primary, nil
	}
	return p.Secondary, nil
}

// ErrSliverMismatch is wrapped when a sliver does not match the metadata.
var ErrSliverMismatch = errors.New("crypto: sliver does not match metadata")

// SliverMismatchError names the sliver and both hashes.
type SliverMismatchError struct {
	Axis     Axis
	Index    uint32
	Computed Digest
	Expected Digest
}

func (e *SliverMismatchError) Error() string {
	return fmt.Sprintf("crypto: %s sliver %d hashes to %s, metadata says %s", e.Axis, e.Index, e.Computed, e.Expected)
}

func (e *SliverMismatchError) Unwrap() error { return ErrSliverMismatch }

// CheckSliverRoot compares the Merkle root over a sliver's extended line
// (computed by the caller, who knows the codec) with the committed hash.
func (m *Metadata) CheckSliverRoot(axis Axis, index uint32, root Digest) error {
	want, err := m.SliverHash(axis, index)
	if err != nil {
		return err
	}
	if root != want {
		return &SliverMismatchError{Axis: axis, Index: index, Computed: root, Expected: want}
	}
	return nil
}

// VerifySymbol checks a recovery symbol: the symbol at position target of the
// extended line of sliver (sourceAxis, source), with its Merkle proof against
// that sliver's committed hash. The proof's index must be target.
func (m *Metadata) VerifySymbol(sourceAxis Axis, source, target uint32, symbol []byte, proof MerkleProof) error {
	root, err := m.SliverHash(sourceAxis, source)
	if err != nil {
		return err
	}
	if proof.Index != target {
		return &ProofError{Index: proof.Index, Expected: root, Reason: fmt.Sprintf("proof is for position %d, symbol claims %d", proof.Index, target)}
	}
	if err := proof.Verify(root, LeafHash(symbol), int(m.Shards)); err != nil {
		return fmt.Errorf("crypto: symbol %d of %s sliver %d: %w", target, sourceAxis, source, err)
	}
	return nil
}
