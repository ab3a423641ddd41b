package coding

import (
	"errors"
	"fmt"
)

// ErrRangeOutsideBlob is wrapped when a byte range asked of a blob is not
// inside it (or has a negative offset or length).
var ErrRangeOutsideBlob = errors.New("byte range outside the blob")

// SystematicSpan is where some of a blob's bytes lie in one systematic
// primary sliver: bytes [Start, End) of primary sliver Sliver are the
// blob's bytes [BlobOffset, BlobOffset+End−Start).
type SystematicSpan struct {
	Sliver     uint32 // a primary sliver index < nP: row Sliver of the source matrix
	Start, End int    // a byte span of the sliver's data
	BlobOffset uint64
}

// Len is the number of blob bytes the span holds.
func (s SystematicSpan) Len() int { return s.End - s.Start }

// SystematicSpans returns where bytes [offset, offset+length) of a blob of
// blobLength bytes lie: one span per systematic primary sliver that holds
// any of them, in order. The blob is laid row-major into the nP × nS
// source matrix and primary sliver i < nP is row i as it is (both codes
// are systematic), so blob byte b is byte b mod rowLen of primary sliver
// b div rowLen, rowLen being nS symbols. A reader of a range needs only
// these slivers, each checkable on its own against its hash in the
// metadata. An empty range has no spans; a range not inside the blob is
// an error wrapping ErrRangeOutsideBlob.
func (p Params) SystematicSpans(blobLength, offset, length uint64) ([]SystematicSpan, error) {
	s, err := p.SymbolSize(blobLength)
	if err != nil {
		return nil, err
	}
	if offset > blobLength || length > blobLength-offset {
		return nil, fmt.Errorf("coding: %w: %d bytes at offset %d of a %d-byte blob", ErrRangeOutsideBlob, length, offset, blobLength)
	}
	if length == 0 {
		return nil, nil
	}
	rowLen, _ := p.SystematicLayout(s)
	row := uint64(rowLen)
	end := offset + length
	first, last := offset/row, (end-1)/row
	spans := make([]SystematicSpan, 0, last-first+1)
	for i := first; i <= last; i++ {
		rowStart := i * row
		from, to := max(offset, rowStart), min(end, rowStart+row)
		spans = append(spans, SystematicSpan{
			Sliver: uint32(i), Start: int(from - rowStart), End: int(to - rowStart), BlobOffset: from,
		})
	}
	return spans, nil
}
