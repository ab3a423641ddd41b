package coding

import (
	"errors"
	"fmt"
	"slices"

	"github.com/weftstore/weft/crypto"
)

// Decode returns the blob from its slivers: any nP primary slivers, or any
// nS secondary slivers (primaries are used when there are enough, the
// systematic ones first, as they need no decoding).
//
// Bytes are returned only after the consistent-read check: they are
// re-encoded and must reproduce every pair hash of the metadata, so no two
// callers can get different bytes for one blob ID. When the check fails,
// each sliver used is verified on its own: a bad one is named in a
// *crypto.SliverMismatchError (drop it and decode again); if all are
// genuine, the blob itself is inconsistent (*InconsistentBlobError).
// The metadata must already be checked against the blob ID.
//
// When the primaries used are the nP systematic ones laid back to back in
// one buffer, index order (as a reader can receive them, SystematicLayout),
// the blob is that buffer: nothing is copied, and the blob aliases it.
func (c *Codec) Decode(meta *crypto.Metadata, slivers []Sliver) ([]byte, error) {
	s, err := c.checkMetadata(meta)
	if err != nil {
		return nil, err
	}
	var byAxis [2][]Sliver
	seen := make(map[SliverRef]bool, len(slivers))
	for _, sl := range slivers {
		if err := c.params.checkSliver(sl, s); err != nil {
			return nil, err
		}
		if seen[sl.SliverRef] {
			return nil, fmt.Errorf("coding: %s given twice", sl.SliverRef)
		}
		seen[sl.SliverRef] = true
		byAxis[sl.Axis] = append(byAxis[sl.Axis], sl)
	}
	for _, list := range byAxis {
		slices.SortFunc(list, func(a, b Sliver) int { return int(a.Index) - int(b.Index) })
	}
	np, ns := c.params.NP, c.params.NS
	var blob []byte
	var used []Sliver
	switch {
	case len(byAxis[crypto.Primary]) >= np:
		used = byAxis[crypto.Primary][:np]
		blob, err = c.decodePrimaries(used, s)
	case len(byAxis[crypto.Secondary]) >= ns:
		used = byAxis[crypto.Secondary][:ns]
		blob, err = c.decodeSecondaries(used, s)
	default:
		return nil, &NotEnoughSliversError{
			Primary: len(byAxis[crypto.Primary]), Secondary: len(byAxis[crypto.Secondary]),
			NeedPrimary: np, NeedSecondary: ns,
		}
	}
	if err != nil {
		return nil, err
	}
	blob = blob[:meta.Length]
	if err := c.checkConsistent(meta, blob, c.knownSourceRows(used, s, meta.Length)); err != nil {
		if errors.Is(err, ErrInconsistentBlob) {
			for _, sl := range used {
				if verr := c.VerifySliver(meta, sl); verr != nil {
					return nil, verr
				}
			}
		}
		return nil, err
	}
	return blob, nil
}

// decodePrimaries rebuilds the source matrix, row-major, from exactly nP
// primary slivers: they are shards of the column code.
func (c *Codec) decodePrimaries(slivers []Sliver, s int) ([]byte, error) {
	n, np := c.params.Shards, c.params.NP
	rowLen := c.params.NS * s
	if blob, ok := systematicRun(slivers, rowLen); ok {
		return blob, nil
	}
	out := make([]byte, np*rowLen)
	shards := make([][]byte, n)
	missingData := false
	for i := range np {
		shards[i] = out[i*rowLen : i*rowLen : (i+1)*rowLen]
	}
	for _, sl := range slivers {
		if int(sl.Index) < np {
			copy(out[int(sl.Index)*rowLen:], sl.Data)
			shards[sl.Index] = out[int(sl.Index)*rowLen : (int(sl.Index)+1)*rowLen]
		} else {
			shards[sl.Index] = sl.Data
			missingData = true
		}
	}
	if missingData {
		if err := c.codeLine(shards, rowLen, s, c.col.ReconstructData); err != nil {
			return nil, fmt.Errorf("coding: decoding from primary slivers: %w", err)
		}
	}
	return out, nil
}

// systematicRun returns the buffer holding slivers when they are the
// systematic primaries 0 … len−1 back to back, each rowLen bytes.
func systematicRun(slivers []Sliver, rowLen int) ([]byte, bool) {
	total := len(slivers) * rowLen
	if len(slivers) == 0 || cap(slivers[0].Data) < total {
		return nil, false
	}
	run := slivers[0].Data[:total]
	for i, sl := range slivers {
		if int(sl.Index) != i || sl.Axis != crypto.Primary || len(sl.Data) != rowLen || &sl.Data[0] != &run[i*rowLen] {
			return nil, false
		}
	}
	return run, true
}

// SystematicLayout is the size of one systematic primary sliver of a blob
// with symbolSize-byte symbols, and of the buffer that holds all nP back to
// back: a reader that receives sliver i into buffer[i·size:(i+1)·size]
// lets Decode return the buffer itself.
func (p Params) SystematicLayout(symbolSize int) (sliver, buffer int) {
	sliver = p.NS * symbolSize
	return sliver, p.NP * sliver
}

// decodeSecondaries rebuilds the source matrix from exactly nS secondary
// slivers: they are shards of the row code, each a column of the source.
func (c *Codec) decodeSecondaries(slivers []Sliver, s int) ([]byte, error) {
	n, np, ns := c.params.Shards, c.params.NP, c.params.NS
	colLen := np * s
	shards := make([][]byte, n)
	missingData := false
	for _, sl := range slivers {
		shards[sl.Index] = sl.Data
		if int(sl.Index) >= ns {
			missingData = true
		}
	}
	if missingData {
		spare := make([]byte, 0, ns*colLen)
		for j := range ns {
			if len(shards[j]) == 0 {
				shards[j] = spare[len(spare) : len(spare) : len(spare)+colLen]
				spare = spare[:len(spare)+colLen]
			}
		}
		if err := c.codeLine(shards, colLen, s, c.row.ReconstructData); err != nil {
			return nil, fmt.Errorf("coding: decoding from secondary slivers: %w", err)
		}
		for j := range ns {
			shards[j] = shards[j][:colLen]
		}
	}
	// Transpose the columns into the row-major source matrix.
	rowLen := ns * s
	out := make([]byte, np*rowLen)
	_ = forEach(c.workers, np, func() struct{} { return struct{}{} }, func(_ struct{}, i int) error {
		for j := range ns {
			copy(out[i*rowLen+j*s:i*rowLen+(j+1)*s], shards[j][i*s:(i+1)*s])
		}
		return nil
	})
	return out, nil
}

// CheckConsistent is the consistent-read check (DESIGN §3): it re-encodes
// blob and requires every pair hash of meta to match. A reader that skips it
// could return bytes another reader of the same blob ID never sees.
func (c *Codec) CheckConsistent(meta *crypto.Metadata, blob []byte) error {
	return c.checkConsistent(meta, blob, nil)
}

// checkConsistent is CheckConsistent with some source rows' share of the
// work done already (PrepareCheck, knownSourceRows; nil: none).
func (c *Codec) checkConsistent(meta *crypto.Metadata, blob []byte, known []*sourceRow) error {
	if _, err := c.checkMetadata(meta); err != nil {
		return err
	}
	if uint64(len(blob)) != meta.Length {
		return fmt.Errorf("coding: %d bytes checked against metadata for %d", len(blob), meta.Length)
	}
	got, err := c.metadata(blob, known)
	if err != nil {
		return err
	}
	var mismatched []int
	for p, h := range got.Pairs {
		if h != meta.Pairs[p] {
			mismatched = append(mismatched, p)
		}
	}
	if len(mismatched) > 0 {
		return &InconsistentBlobError{ID: meta.BlobID(), MismatchedPairs: mismatched}
	}
	return nil
}
