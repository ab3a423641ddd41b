package coding

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weftstore/weft/crypto"
)

// InconsistencyProof shows that a blob was encoded inconsistently: symbols
// of the target's line, each with a Merkle proof against the committed hash
// of the sliver it came from, that rebuild a target sliver whose hash is not
// the committed one. It carries the metadata, so anyone holding the blob ID
// can check it without asking anybody (VerifyInconsistencyProof).
type InconsistencyProof struct {
	BlobID   crypto.BlobID
	Metadata *crypto.Metadata
	Target   SliverRef
	Symbols  []RecoverySymbol // exactly the target's symbol count, sources ascending
}

// ErrNotInconsistent is returned when a claimed inconsistency proof's
// symbols rebuild the committed sliver after all.
var ErrNotInconsistent = errors.New("coding: the symbols rebuild the committed sliver; no inconsistency shown")

// VerifyInconsistencyProof checks a proof independently: the metadata
// matches the blob ID, every symbol is shaped for the target and verifies
// against the metadata, there are exactly as many as the target needs, from
// distinct sources in ascending order, and they rebuild a sliver whose hash
// differs from the committed one. nil means the blob is proven inconsistent.
func (c *Codec) VerifyInconsistencyProof(p *InconsistencyProof) error {
	if p == nil || p.Metadata == nil {
		return fmt.Errorf("coding: empty inconsistency proof")
	}
	if err := p.Metadata.CheckBlobID(p.BlobID); err != nil {
		return err
	}
	s, err := c.checkMetadata(p.Metadata)
	if err != nil {
		return err
	}
	if err := c.params.checkTarget(p.Target); err != nil {
		return err
	}
	k := c.params.SliverSymbols(p.Target.Axis)
	if len(p.Symbols) != k {
		return fmt.Errorf("coding: inconsistency proof for %s has %d symbols, needs exactly %d", p.Target, len(p.Symbols), k)
	}
	for i, sym := range p.Symbols {
		if i > 0 && sym.Source <= p.Symbols[i-1].Source {
			return fmt.Errorf("coding: inconsistency proof symbols not in strictly ascending source order at %d", i)
		}
		if err := c.params.checkSymbol(sym, p.Target, s); err != nil {
			return &SymbolError{Source: sym.SourceRef(), Target: p.Target, Err: err}
		}
		if err := sym.Verify(p.Metadata); err != nil {
			return &SymbolError{Source: sym.SourceRef(), Target: p.Target, Err: err}
		}
	}
	_, root, err := c.rebuild(p.Target, s, p.Symbols)
	if err != nil {
		return err
	}
	if err := p.Metadata.CheckSliverRoot(p.Target.Axis, p.Target.Index, root); err == nil {
		return ErrNotInconsistent
	}
	return nil
}

const inconsistencyVersion = 1

// MarshalBinary returns the canonical encoding:
// u8 version ‖ blob ID ‖ u32 metadata length ‖ metadata ‖ u8 target axis ‖
// u16 target index ‖ u16 count ‖ count × (u32 length ‖ symbol), big-endian.
func (p *InconsistencyProof) MarshalBinary() ([]byte, error) {
	if p.Metadata == nil {
		return nil, fmt.Errorf("coding: inconsistency proof without metadata")
	}
	meta, err := p.Metadata.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(p.Symbols) > MaxShards {
		return nil, fmt.Errorf("coding: inconsistency proof with %d symbols", len(p.Symbols))
	}
	b := []byte{inconsistencyVersion}
	b = append(b, p.BlobID[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	b = append(b, byte(p.Target.Axis))
	b = binary.BigEndian.AppendUint16(b, uint16(p.Target.Index))
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Symbols)))
	for _, sym := range p.Symbols {
		if sym.Proof == nil {
			return nil, fmt.Errorf("coding: inconsistency proof symbol from %s has no Merkle proof", sym.SourceRef())
		}
		enc, err := sym.MarshalBinary()
		if err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(enc)))
		b = append(b, enc...)
	}
	return b, nil
}

// UnmarshalBinary decodes a proof. Whether it proves anything is
// VerifyInconsistencyProof's question.
func (p *InconsistencyProof) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	if v := r.u8(); r.err == nil && v != inconsistencyVersion {
		return fmt.Errorf("coding: inconsistency proof version %d, want %d", v, inconsistencyVersion)
	}
	var out InconsistencyProof
	copy(out.BlobID[:], r.bytes(crypto.DigestSize))
	metaBytes := r.bytes(int(r.u32()))
	axis := crypto.Axis(r.u8())
	index := uint32(r.u16())
	count := int(r.u16())
	if r.err != nil {
		return fmt.Errorf("coding: inconsistency proof: %w", r.err)
	}
	out.Metadata = new(crypto.Metadata)
	if err := out.Metadata.UnmarshalBinary(metaBytes); err != nil {
		return fmt.Errorf("coding: inconsistency proof: %w", err)
	}
	out.Target = SliverRef{Axis: axis, Index: index}
	if !axis.Valid() {
		return fmt.Errorf("coding: inconsistency proof for unknown axis %d", uint8(axis))
	}
	for i := 0; i < count; i++ {
		enc := r.bytes(int(r.u32()))
		if r.err != nil {
			return fmt.Errorf("coding: inconsistency proof symbol %d: %w", i, r.err)
		}
		var sym RecoverySymbol
		if err := sym.UnmarshalBinary(enc); err != nil {
			return fmt.Errorf("coding: inconsistency proof symbol %d: %w", i, err)
		}
		if sym.Proof == nil {
			return fmt.Errorf("coding: inconsistency proof symbol %d has no Merkle proof", i)
		}
		out.Symbols = append(out.Symbols, sym)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("coding: %d trailing bytes after inconsistency proof", len(r.b))
	}
	*p = out
	return nil
}

// reader consumes big-endian fields, remembering the first short read.
type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("truncated: need %d bytes, have %d", n, len(r.b))
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
