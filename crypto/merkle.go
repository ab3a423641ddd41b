// Package crypto holds weft's hashes, Merkle commitments, blob IDs and the
// blob metadata they commit to. It knows nothing of codecs, nodes or Raft.
package crypto

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/bits"
)

// DigestSize is the size of every hash weft computes (SHA-256).
const DigestSize = sha256.Size

// Digest is a SHA-256 output: a leaf hash, an inner node or a root.
type Digest [DigestSize]byte

// String renders the digest as lowercase hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText renders the digest as hex (JSON would otherwise write an
// array of 32 numbers).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses exactly 64 hex digits.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 2*DigestSize {
		return fmt.Errorf("crypto: digest of %d hex digits, want %d", len(b), 2*DigestSize)
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// Domain-separation prefixes (DESIGN §3): a leaf can never be mistaken for
// an inner node, so a proof cannot pass an inner node off as a symbol.
const (
	leafPrefix  = 0x00
	innerPrefix = 0x01
)

// zeroNode pads an odd level of a tree. It is 32 zero bytes, never a copy of
// the last node, so two different leaf lists cannot share a root by
// duplicating their last element.
var zeroNode Digest

// LeafHash returns H(0x00 ‖ data).
func LeafHash(data []byte) Digest {
	var lh LeafHasher
	return lh.Sum(data)
}

// LeafHasher hashes leaves with one reusable SHA-256 state, so hot loops
// (millions of leaves per blob) do not allocate. Not safe for concurrent
// use: give each goroutine its own.
type LeafHasher struct {
	h   hash.Hash
	out []byte
}

// leafPrefixBytes is the leaf prefix as a buffer that lives for good: a
// []byte{leafPrefix} literal passed to the hash interface escapes, one
// allocation per leaf (10⁶ of them in an encode at n = 1000).
var leafPrefixBytes = [1]byte{leafPrefix}

// Sum returns H(0x00 ‖ data).
func (lh *LeafHasher) Sum(data []byte) Digest {
	if lh.h == nil {
		lh.h = sha256.New()
		lh.out = make([]byte, 0, DigestSize)
	}
	lh.h.Reset()
	lh.h.Write(leafPrefixBytes[:])
	lh.h.Write(data)
	lh.out = lh.h.Sum(lh.out[:0])
	return Digest(lh.out)
}

// InnerHash returns H(0x01 ‖ left ‖ right).
func InnerHash(left, right Digest) Digest {
	var buf [1 + 2*DigestSize]byte
	buf[0] = innerPrefix
	copy(buf[1:], left[:])
	copy(buf[1+DigestSize:], right[:])
	return sha256.Sum256(buf[:])
}

// MerkleDepth is the number of levels above the leaves of a tree over
// leafCount leaves, which is also the number of siblings in a proof:
// ⌈log2 leafCount⌉ (0 for a single leaf).
func MerkleDepth(leafCount int) int {
	if leafCount <= 1 {
		return 0
	}
	return bits.Len(uint(leafCount - 1))
}

// MerkleRoot returns the root over already hashed leaves. scratch, if it has
// room for ⌈len(leaves)/2⌉ digests, is used for the inner levels so that the
// call does not allocate; leaves itself is never modified. It panics on an
// empty leaf list: every tree in weft has n ≥ 1 leaves.
func MerkleRoot(leaves []Digest, scratch []Digest) Digest {
	if len(leaves) == 0 {
		panic("crypto: Merkle root of zero leaves")
	}
	if len(leaves) == 1 {
		return leaves[0]
	}
	half := (len(leaves) + 1) / 2
	if cap(scratch) < half {
		scratch = make([]Digest, half)
	}
	level := hashLevel(leaves, scratch[:half])
	for len(level) > 1 {
		level = hashLevel(level, level[:(len(level)+1)/2])
	}
	return level[0]
}

// hashLevel writes the parents of level into dst (which may alias level's
// front half: parent i only reads children 2i and 2i+1 ≥ i) and returns them.
func hashLevel(level, dst []Digest) []Digest {
	for i := 0; i < len(level)/2; i++ {
		dst[i] = InnerHash(level[2*i], level[2*i+1])
	}
	if len(level)%2 == 1 {
		dst[len(level)/2] = InnerHash(level[len(level)-1], zeroNode)
	}
	return dst[:(len(level)+1)/2]
}

// MerkleTree keeps every level of a tree so that it can hand out proofs for
// many leaves; a node serving recovery symbols builds one per sliver.
type MerkleTree struct {
	levels [][]Digest // levels[0] = leaves, last = [root]
}

// NewMerkleTree builds the tree over already hashed leaves (at least one).
// The tree keeps leaves; the caller must not modify them afterwards.
func NewMerkleTree(leaves []Digest) *MerkleTree {
	if len(leaves) == 0 {
		panic("crypto: Merkle tree of zero leaves")
	}
	levels := [][]Digest{leaves}
	for level := leaves; len(level) > 1; {
		level = hashLevel(level, make([]Digest, (len(level)+1)/2))
		levels = append(levels, level)
	}
	return &MerkleTree{levels: levels}
}

// Root returns the tree's root.
func (t *MerkleTree) Root() Digest { return t.levels[len(t.levels)-1][0] }

// LeafCount returns the number of leaves.
func (t *MerkleTree) LeafCount() int { return len(t.levels[0]) }

// Leaf returns leaf hash i.
func (t *MerkleTree) Leaf(i int) Digest { return t.levels[0][i] }

// Proof returns the inclusion proof of leaf index.
func (t *MerkleTree) Proof(index int) (MerkleProof, error) {
	if index < 0 || index >= t.LeafCount() {
		return MerkleProof{}, fmt.Errorf("crypto: proof for leaf %d of a %d-leaf tree", index, t.LeafCount())
	}
	siblings := make([]Digest, 0, len(t.levels)-1)
	for pos, l := index, 0; l < len(t.levels)-1; l, pos = l+1, pos/2 {
		level := t.levels[l]
		sib := pos ^ 1
		if sib < len(level) {
			siblings = append(siblings, level[sib])
		} else {
			siblings = append(siblings, zeroNode)
		}
	}
	return MerkleProof{Index: uint32(index), Siblings: siblings}, nil
}
