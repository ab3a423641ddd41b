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
	// compact marks a symbol encoded in version 2 (Compact, or decoded
	// from it); otherwise MarshalBinary writes version 1, which every
	// release decodes. A decoded symbol re-encodes in its own version,
	// byte for byte: signed challenge responses and inconsistency proofs
	// carry symbols, and re-encoding them must not change their bytes.
	compact bool
}

// Compact returns the symbol set to encode in version 2, six bytes of
// header instead of ten: for a peer that asked for it (recovery traffic
// between nodes that decode it), since a node of an earlier release
// refuses version 2.
func (r RecoverySymbol) Compact() RecoverySymbol {
	r.compact = true
	return r
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

// Recovery symbol encodings, big-endian. A peer answers every lost symbol
// with one, so its header is paid per symbol: at n = 1000 a 16 MiB blob's
// symbols are 76 bytes.
//
//	version 1: u8 1 ‖ u8 flags ‖ u16 source ‖ u16 target ‖ u32 length ‖ data ‖ [proof]
//	version 2: u8 2 ‖ u8 flags ‖ u16 source ‖ u16 target ‖ [proof] ‖ data
//
// Version 2 (Compact) drops the length: the proof
// carries its own (its depth), so the data is whatever follows it, and
// every container of symbols (inconsistency proofs, challenge responses,
// the storage API's repeated bytes) already delimits each one. Six header
// bytes instead of ten: repair-ratio 1.130 → 1.078 at n = 1000, 16 MiB.
// Version 1 stays the default encoding, so that nodes and control planes
// of an earlier release — in a rolling upgrade — decode what this one
// sends; a node asks its peers for version 2 for recovery
// (SymbolVersionCompact in GetRecoverySymbols), where the header is paid
// per symbol.
const (
	symbolVersion1 = 1
	symbolVersion  = 2
	// SymbolVersionCompact is the highest per-symbol recovery encoding
	// this release decodes; a node asking for symbols announces it, or
	// SymbolVersionBatch (batch.go) for one answer to all its requests.
	SymbolVersionCompact = symbolVersion
	symbolHeader         = 1 + 1 + 2 + 2
	symbolHeaderV1       = symbolHeader + 4
	flagSecondary        = 1 << 0 // source axis is secondary
	flagProof            = 1 << 1 // a Merkle proof is present
	knownFlagsMask       = flagSecondary | flagProof
)

// EncodedLen is the length of MarshalBinary's output: the bytes a peer
// sends for this symbol, which recovery counts as traffic.
func (r RecoverySymbol) EncodedLen() int {
	n := symbolHeaderV1 + len(r.Data)
	if r.compact {
		n = symbolHeader + len(r.Data)
	}
	if r.Proof != nil {
		n += r.Proof.EncodedLen()
	}
	return n
}

// MarshalBinary returns the canonical encoding, version 1 (above) unless
// the symbol is Compact or was decoded from version 2; flags bit 0 =
// source axis is secondary, bit 1 = proof present.
func (r RecoverySymbol) MarshalBinary() ([]byte, error) {
	if err := r.checkShape(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, r.EncodedLen())
	var flags byte
	if r.SourceAxis == crypto.Secondary {
		flags |= flagSecondary
	}
	if r.Proof != nil {
		flags |= flagProof
	}
	version := byte(symbolVersion1)
	if r.compact {
		version = symbolVersion
	}
	b = append(b, version, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Source))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Target))
	if !r.compact {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Data)))
		b = append(b, r.Data...)
		return r.appendProof(b)
	}
	b, err := r.appendProof(b)
	return append(b, r.Data...), err
}

func (r RecoverySymbol) appendProof(b []byte) ([]byte, error) {
	if r.Proof == nil {
		return b, nil
	}
	return r.Proof.AppendBinary(b)
}

// UnmarshalBinary decodes one symbol of either version; Data aliases data.
func (r *RecoverySymbol) UnmarshalBinary(data []byte) error {
	if len(data) < symbolHeader {
		return fmt.Errorf("coding: recovery symbol of %d bytes, header needs %d", len(data), symbolHeader)
	}
	if data[0] != symbolVersion && data[0] != symbolVersion1 {
		return fmt.Errorf("coding: recovery symbol version %d, want %d or %d", data[0], symbolVersion1, symbolVersion)
	}
	flags := data[1]
	if flags&^knownFlagsMask != 0 {
		return fmt.Errorf("coding: recovery symbol with unknown flags %#x", flags)
	}
	out := RecoverySymbol{
		SourceAxis: crypto.Primary,
		Source:     uint32(binary.BigEndian.Uint16(data[2:4])),
		Target:     uint32(binary.BigEndian.Uint16(data[4:6])),
		compact:    data[0] == symbolVersion,
	}
	if flags&flagSecondary != 0 {
		out.SourceAxis = crypto.Secondary
	}
	if err := out.decodeBody(data[symbolHeader:], flags&flagProof != 0); err != nil {
		return err
	}
	if err := out.checkShape(); err != nil {
		return err
	}
	*r = out
	return nil
}

// decodeBody decodes what follows the common header: data and proof in
// the symbol's version's order.
func (r *RecoverySymbol) decodeBody(rest []byte, hasProof bool) error {
	if !r.compact {
		if len(rest) < 4 {
			return fmt.Errorf("coding: version 1 recovery symbol without its length")
		}
		size := uint64(binary.BigEndian.Uint32(rest))
		if uint64(len(rest)-4) < size {
			return fmt.Errorf("coding: recovery symbol of %d bytes truncated at %d", size, len(rest)-4)
		}
		r.Data, rest = rest[4:4+size:4+size], rest[4+size:]
	}
	if hasProof {
		proof, tail, err := crypto.DecodeMerkleProof(rest)
		if err != nil {
			return fmt.Errorf("coding: recovery symbol proof: %w", err)
		}
		r.Proof, rest = &proof, tail
	}
	if !r.compact {
		if len(rest) != 0 {
			return fmt.Errorf("coding: %d trailing bytes after recovery symbol", len(rest))
		}
		return nil
	}
	r.Data = rest[:len(rest):len(rest)]
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
