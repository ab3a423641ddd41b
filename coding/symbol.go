package coding

import (
	"encoding/binary"
	"fmt"

	"github.com/weftstore/weft/crypto"
)

// RecoverySymbol is one entry of M that a peer computes from a sliver it
// holds, for a node rebuilding a sliver of the other axis: M[i][j] from
// secondary sliver j (source) for primary sliver i (target), or from primary
// sliver i for secondary sliver j. Target is also the symbol's position in
// the source's extended line, so the proof is for leaf Target.
type RecoverySymbol struct {
	SourceAxis crypto.Axis
	Source     uint32
	Target     uint32
	Data       []byte
	Proof      *crypto.MerkleProof // nil when sent without a proof
}

// SourceRef names the sliver the symbol was computed from.
func (r RecoverySymbol) SourceRef() SliverRef { return SliverRef{r.SourceAxis, r.Source} }

// TargetRef names the sliver the symbol helps rebuild.
func (r RecoverySymbol) TargetRef() SliverRef { return SliverRef{r.SourceAxis.Other(), r.Target} }

// Verify checks the symbol's proof against the source sliver's hash in the
// metadata. A symbol without a proof does not verify.
func (r RecoverySymbol) Verify(meta *crypto.Metadata) error {
	if r.Proof == nil {
		return fmt.Errorf("coding: symbol from %s for %s has no proof", r.SourceRef(), r.TargetRef())
	}
	return meta.VerifySymbol(r.SourceAxis, r.Source, r.Target, r.Data, *r.Proof)
}

const (
	symbolVersion  = 1
	symbolHeader   = 1 + 1 + 2 + 2 + 4
	flagSecondary  = 1 << 0 // source axis is secondary
	flagProof      = 1 << 1 // a Merkle proof follows the data
	knownFlagsMask = flagSecondary | flagProof
)

// EncodedLen is the length of MarshalBinary's output: the bytes a peer
// sends for this symbol, which recovery counts as traffic.
func (r RecoverySymbol) EncodedLen() int {
	n := symbolHeader + len(r.Data)
	if r.Proof != nil {
		n += r.Proof.EncodedLen()
	}
	return n
}

// MarshalBinary returns the canonical encoding:
// u8 version ‖ u8 flags ‖ u16 source ‖ u16 target ‖ u32 length ‖ data ‖ [proof],
// big-endian; flags bit 0 = source axis is secondary, bit 1 = proof present.
// The header is 10 bytes so that a symbol sent without proof costs little
// more than its data (repair traffic ≈ the bytes rebuilt).
func (r RecoverySymbol) MarshalBinary() ([]byte, error) {
	if err := r.checkShape(); err != nil {
		return nil, err
	}
	b := make([]byte, symbolHeader, r.EncodedLen())
	b[0] = symbolVersion
	if r.SourceAxis == crypto.Secondary {
		b[1] |= flagSecondary
	}
	if r.Proof != nil {
		b[1] |= flagProof
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(r.Source))
	binary.BigEndian.PutUint16(b[4:6], uint16(r.Target))
	binary.BigEndian.PutUint32(b[6:10], uint32(len(r.Data)))
	b = append(b, r.Data...)
	if r.Proof != nil {
		var err error
		if b, err = r.Proof.AppendBinary(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// UnmarshalBinary decodes one symbol; Data aliases data.
func (r *RecoverySymbol) UnmarshalBinary(data []byte) error {
	if len(data) < symbolHeader {
		return fmt.Errorf("coding: recovery symbol of %d bytes, header needs %d", len(data), symbolHeader)
	}
	if data[0] != symbolVersion {
		return fmt.Errorf("coding: recovery symbol version %d, want %d", data[0], symbolVersion)
	}
	flags := data[1]
	if flags&^knownFlagsMask != 0 {
		return fmt.Errorf("coding: recovery symbol with unknown flags %#x", flags)
	}
	size := uint64(binary.BigEndian.Uint32(data[6:10]))
	if uint64(len(data)-symbolHeader) < size {
		return fmt.Errorf("coding: recovery symbol of %d bytes truncated at %d", size, len(data)-symbolHeader)
	}
	out := RecoverySymbol{
		SourceAxis: crypto.Primary,
		Source:     uint32(binary.BigEndian.Uint16(data[2:4])),
		Target:     uint32(binary.BigEndian.Uint16(data[4:6])),
		Data:       data[symbolHeader : symbolHeader+size : symbolHeader+size],
	}
	if flags&flagSecondary != 0 {
		out.SourceAxis = crypto.Secondary
	}
	rest := data[symbolHeader+size:]
	if flags&flagProof != 0 {
		proof, tail, err := crypto.DecodeMerkleProof(rest)
		if err != nil {
			return fmt.Errorf("coding: recovery symbol proof: %w", err)
		}
		out.Proof, rest = &proof, tail
	}
	if len(rest) != 0 {
		return fmt.Errorf("coding: %d trailing bytes after recovery symbol", len(rest))
	}
	if err := out.checkShape(); err != nil {
		return err
	}
	*r = out
	return nil
}

func (r RecoverySymbol) checkShape() error {
	switch {
	case !r.SourceAxis.Valid():
		return fmt.Errorf("coding: recovery symbol with unknown axis %d", uint8(r.SourceAxis))
	case r.Source >= MaxShards || r.Target >= MaxShards:
		return fmt.Errorf("coding: recovery symbol %d→%d beyond the %d-shard limit", r.Source, r.Target, MaxShards)
	case len(r.Data) == 0:
		return fmt.Errorf("coding: empty recovery symbol from %s", r.SourceRef())
	case r.Proof != nil && r.Proof.Index != r.Target:
		return fmt.Errorf("coding: recovery symbol for position %d carries a proof for %d", r.Target, r.Proof.Index)
	}
	return nil
}
