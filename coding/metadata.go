package coding

import (
	"github.com/weftstore/weft/crypto"
)

// Metadata computes blob's metadata — the same as Encode's — without
// keeping the slivers: the parity primaries and the secondaries < nS are
// made in a worker's scratch, hashed and dropped. What it holds beyond the
// blob is the source rows' extensions across (the secondaries ≥ nS, which
// the quadrant's columns are extended from: (n−nS)/nS of the blob, about
// half), the n² leaf hashes, and a partial last row padded to length —
// or, for a blob small against n (keepLeafTable), the parity primaries
// instead of the leaf hashes.
// Encode holds every sliver (≈ 4× the blob), so a reader checking a blob
// it decoded (CheckConsistent) needs a fraction of the memory, and does
// not write slivers it would drop.
func (c *Codec) Metadata(blob []byte) (*crypto.Metadata, error) {
	return c.metadata(blob, nil)
}

// metadata is Metadata with the source rows known[i] != nil taken as
// worked out already (knownSourceRows): their parity and leaf hashes are
// used instead of coded and hashed again.
func (c *Codec) metadata(blob []byte, known []*sourceRow) (*crypto.Metadata, error) {
	s, err := c.params.SymbolSize(uint64(len(blob)))
	if err != nil {
		return nil, err
	}
	n, np, ns := c.params.Shards, c.params.NP, c.params.NS
	lay := newLayout(n, np, ns, s, len(blob))
	lay.hashOnly = true
	lay.knownRows = known
	lay.pri = sourceRows(blob, n, np, ns*s)
	if lay.keepsParity() { // the row roots extend every primary again
		for i := np; i < n; i++ {
			lay.pri[i] = make([]byte, ns*s)
		}
	}
	lay.right = make([][]byte, np)
	rowLen, unknown := (n-ns)*s, np
	for i := range np {
		if known := lay.knownRow(i); known != nil {
			lay.right[i] = known.parity
			unknown--
		}
	}
	right := uncleared(unknown * rowLen) // every byte written by the row code
	for i := range np {
		if lay.right[i] == nil {
			lay.right[i], right = right[:rowLen:rowLen], right[rowLen:]
		}
	}
	err = c.hashPhases(lay)
	lay.dropLeafTable()
	if err != nil {
		return nil, err
	}
	return lay.metadata(c.params.Encoding, uint64(len(blob))), nil
}

// sourceRows returns n row slots of which the first nP hold the source
// matrix's rows, rowLen bytes each: the blob's own memory for the rows it
// fills whole, one zero-padded copy for the rest.
func sourceRows(blob []byte, n, np, rowLen int) [][]byte {
	rows := make([][]byte, n)
	whole := min(np, len(blob)/rowLen)
	for i := range whole {
		rows[i] = blob[i*rowLen : (i+1)*rowLen : (i+1)*rowLen]
	}
	if whole < np {
		tail := make([]byte, (np-whole)*rowLen)
		copy(tail, blob[whole*rowLen:])
		for i := whole; i < np; i++ {
			off := (i - whole) * rowLen
			rows[i] = tail[off : off+rowLen : off+rowLen]
		}
	}
	return rows
}

// metadata is the blob's metadata from the roots of a finished layout:
// pair p holds primary sliver p and secondary sliver n−1−p.
func (l *layout) metadata(enc Encoding, length uint64) *crypto.Metadata {
	meta := &crypto.Metadata{
		Encoding: uint8(enc),
		Shards:   uint32(l.n),
		Length:   length,
		Pairs:    make([]crypto.PairHashes, l.n),
	}
	for p := range meta.Pairs {
		meta.Pairs[p] = crypto.PairHashes{Primary: l.roots[p], Secondary: l.roots[l.n+l.n-1-p]}
	}
	return meta
}
