package coding

import (
	"encoding/binary"
	"fmt"

	"github.com/weftstore/weft/crypto"
)

// SliverRef names a sliver of a blob: primary sliver i is row i of M,
// secondary sliver j is column j.
type SliverRef struct {
	Axis  crypto.Axis
	Index uint32
}

func (r SliverRef) String() string { return fmt.Sprintf("%s sliver %d", r.Axis, r.Index) }

// Sliver is one sliver's symbols, concatenated.
type Sliver struct {
	SliverRef
	SymbolSize int
	Data       []byte // SliverSymbols(Axis) × SymbolSize bytes
	// source, set by PrepareCheck, is this systematic primary's share of
	// Decode's check; only this package sets it.
	source *sourceRow
}

// Symbols returns the number of symbols the sliver holds.
func (s Sliver) Symbols() int {
	if s.SymbolSize == 0 {
		return 0
	}
	return len(s.Data) / s.SymbolSize
}

// Symbol returns symbol k of the sliver (shares Data).
func (s Sliver) Symbol(k int) []byte { return s.Data[k*s.SymbolSize : (k+1)*s.SymbolSize] }

// SliverPair is what one shard stores of a blob: pair p holds primary
// sliver p and secondary sliver n−1−p.
type SliverPair struct {
	Index     uint32
	Primary   Sliver
	Secondary Sliver
}

// Encoded is a blob encoded for n shards.
type Encoded struct {
	ID         crypto.BlobID
	Metadata   *crypto.Metadata
	SymbolSize int
	Pairs      []SliverPair // indexed by pair
	// arena is the slivers' memory when the codec has a buffer pool
	// (Release).
	arena *arena
}

// PairOnShard returns the pair the blob stores on shard x.
func (e *Encoded) PairOnShard(params Params, shard int) SliverPair {
	return e.Pairs[params.PairForShard(shard, e.ID)]
}

const (
	sliverVersion = 1
	sliverHeader  = 1 + 1 + 2 + 4
)

// EncodedLen is the length of MarshalBinary's output.
func (s Sliver) EncodedLen() int { return sliverHeader + len(s.Data) }

// MarshalBinary returns the canonical encoding:
// u8 version ‖ u8 axis ‖ u16 index ‖ u32 symbol size ‖ data, big-endian.
// Indices fit 16 bits because n ≤ MaxShards < 65536.
func (s Sliver) MarshalBinary() ([]byte, error) {
	b, err := s.appendHeader(make([]byte, 0, s.EncodedLen()))
	if err != nil {
		return nil, err
	}
	return append(b, s.Data...), nil
}

// MarshalHeader returns what MarshalBinary puts before the data, for a
// writer that stores header and data without joining them first.
func (s Sliver) MarshalHeader() ([]byte, error) { return s.appendHeader(nil) }

func (s Sliver) appendHeader(b []byte) ([]byte, error) {
	if err := s.checkShape(); err != nil {
		return nil, err
	}
	b = append(b, sliverVersion, byte(s.Axis))
	b = binary.BigEndian.AppendUint16(b, uint16(s.Index))
	return binary.BigEndian.AppendUint32(b, uint32(s.SymbolSize)), nil
}

// UnmarshalBinary decodes a sliver. It checks the encoding's own
// consistency; whether the sliver fits a blob is Codec.VerifySliver's job.
// The sliver's Data aliases data.
func (s *Sliver) UnmarshalBinary(data []byte) error {
	if len(data) < sliverHeader {
		return fmt.Errorf("coding: sliver of %d bytes, header needs %d", len(data), sliverHeader)
	}
	if data[0] != sliverVersion {
		return fmt.Errorf("coding: sliver version %d, want %d", data[0], sliverVersion)
	}
	out := Sliver{
		SliverRef:  SliverRef{Axis: crypto.Axis(data[1]), Index: uint32(binary.BigEndian.Uint16(data[2:4]))},
		SymbolSize: int(binary.BigEndian.Uint32(data[4:8])),
		Data:       data[sliverHeader:],
	}
	if err := out.checkShape(); err != nil {
		return err
	}
	*s = out
	return nil
}

func (s Sliver) checkShape() error {
	switch {
	case !s.Axis.Valid():
		return fmt.Errorf("coding: sliver with unknown axis %d", uint8(s.Axis))
	case s.Index >= MaxShards:
		return fmt.Errorf("coding: sliver index %d beyond the %d-shard limit", s.Index, MaxShards)
	case s.SymbolSize <= 0 || s.SymbolSize > maxSymbolSize:
		return fmt.Errorf("coding: sliver symbol size %d", s.SymbolSize)
	case len(s.Data) == 0 || len(s.Data)%s.SymbolSize != 0:
		return fmt.Errorf("coding: %s of %d bytes is not a whole number of %d-byte symbols", s.SliverRef, len(s.Data), s.SymbolSize)
	}
	return nil
}

// checkSliver checks that a sliver has the shape the blob's parameters and
// symbol size demand, before any codec work.
func (p Params) checkSliver(s Sliver, symbolSize int) error {
	if err := s.checkShape(); err != nil {
		return err
	}
	if int(s.Index) >= p.Shards {
		return fmt.Errorf("coding: %s out of range for %d shards", s.SliverRef, p.Shards)
	}
	if s.SymbolSize != symbolSize {
		return fmt.Errorf("coding: %s has %d-byte symbols, the blob uses %d", s.SliverRef, s.SymbolSize, symbolSize)
	}
	if want := p.SliverSymbols(s.Axis); s.Symbols() != want {
		return fmt.Errorf("coding: %s has %d symbols, want %d", s.SliverRef, s.Symbols(), want)
	}
	return nil
}
