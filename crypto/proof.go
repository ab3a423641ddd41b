package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MerkleProof proves that a leaf sits at Index in a tree: the sibling of
// every node on the way from the leaf to the root, bottom-up.
type MerkleProof struct {
	Index    uint32
	Siblings []Digest
}

// ErrProofMismatch is wrapped by every failed proof verification.
var ErrProofMismatch = errors.New("crypto: Merkle proof does not match the root")

// ProofError says why a proof failed and carries what a caller needs to
// report it: the leaf index, the root the proof leads to, the root expected.
type ProofError struct {
	Index    uint32
	Computed Digest
	Expected Digest
	Reason   string
}

func (e *ProofError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("crypto: Merkle proof for leaf %d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("crypto: Merkle proof for leaf %d leads to root %s, expected %s", e.Index, e.Computed, e.Expected)
}

func (e *ProofError) Unwrap() error { return ErrProofMismatch }

// Verify checks that leaf sits at p.Index of the leafCount-leaf tree with the
// given root. The proof must have exactly MerkleDepth(leafCount) siblings, so
// one tree has one proof per leaf.
func (p MerkleProof) Verify(root, leaf Digest, leafCount int) error {
	if leafCount <= 0 || int64(p.Index) >= int64(leafCount) {
		return &ProofError{Index: p.Index, Expected: root, Reason: fmt.Sprintf("index out of range for %d leaves", leafCount)}
	}
	if want := MerkleDepth(leafCount); len(p.Siblings) != want {
		return &ProofError{Index: p.Index, Expected: root, Reason: fmt.Sprintf("%d siblings, a %d-leaf tree needs %d", len(p.Siblings), leafCount, want)}
	}
	node, pos, width := leaf, int(p.Index), leafCount
	for _, sib := range p.Siblings {
		if pos%2 == 0 {
			if pos+1 >= width && sib != zeroNode {
				// The last node of an odd level is always paired with the zero node.
				return &ProofError{Index: p.Index, Expected: root, Reason: "padding sibling is not the zero node"}
			}
			node = InnerHash(node, sib)
		} else {
			node = InnerHash(sib, node)
		}
		pos, width = pos/2, (width+1)/2
	}
	if node != root {
		return &ProofError{Index: p.Index, Computed: node, Expected: root}
	}
	return nil
}

const proofVersion = 1

// maxProofDepth bounds decoding: no tree in weft has more than 2^32 leaves.
const maxProofDepth = 32

// EncodedLen is the length of MarshalBinary's output.
func (p MerkleProof) EncodedLen() int { return 1 + 4 + 1 + DigestSize*len(p.Siblings) }

// AppendBinary appends the canonical encoding:
// u8 version ‖ u32 index ‖ u8 depth ‖ depth × 32-byte sibling, big-endian.
func (p MerkleProof) AppendBinary(b []byte) ([]byte, error) {
	if len(p.Siblings) > maxProofDepth {
		return nil, fmt.Errorf("crypto: proof with %d siblings, at most %d", len(p.Siblings), maxProofDepth)
	}
	b = append(b, proofVersion)
	b = binary.BigEndian.AppendUint32(b, p.Index)
	b = append(b, byte(len(p.Siblings)))
	for _, s := range p.Siblings {
		b = append(b, s[:]...)
	}
	return b, nil
}

// MarshalBinary returns the canonical encoding (see AppendBinary).
func (p MerkleProof) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, p.EncodedLen()))
}

// UnmarshalBinary decodes exactly one proof; trailing bytes are an error.
func (p *MerkleProof) UnmarshalBinary(data []byte) error {
	rest, err := p.decodeFrom(data)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("crypto: %d trailing bytes after Merkle proof", len(rest))
	}
	return nil
}

// DecodeMerkleProof decodes one proof from the front of data and returns the
// bytes after it, for formats that embed a proof.
func DecodeMerkleProof(data []byte) (MerkleProof, []byte, error) {
	var p MerkleProof
	rest, err := p.decodeFrom(data)
	return p, rest, err
}

func (p *MerkleProof) decodeFrom(data []byte) ([]byte, error) {
	const header = 1 + 4 + 1
	if len(data) < header {
		return nil, fmt.Errorf("crypto: Merkle proof of %d bytes, header needs %d", len(data), header)
	}
	if data[0] != proofVersion {
		return nil, fmt.Errorf("crypto: Merkle proof version %d, want %d", data[0], proofVersion)
	}
	depth := int(data[5])
	if depth > maxProofDepth {
		return nil, fmt.Errorf("crypto: Merkle proof depth %d, at most %d", depth, maxProofDepth)
	}
	if len(data) < header+depth*DigestSize {
		return nil, fmt.Errorf("crypto: Merkle proof of depth %d truncated at %d bytes", depth, len(data))
	}
	p.Index = binary.BigEndian.Uint32(data[1:5])
	p.Siblings = make([]Digest, depth)
	for i := range p.Siblings {
		copy(p.Siblings[i][:], data[header+i*DigestSize:])
	}
	return data[header+depth*DigestSize:], nil
}
