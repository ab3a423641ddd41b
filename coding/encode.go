package coding

import (
	"github.com/weftstore/weft/crypto"
)

// layout holds one blob's slivers while it is encoded: the n primary slivers
// back to back (so the first nP of them are the blob itself, row-major) and
// the n secondary slivers back to back. The rest of M, the quadrant of rows
// ≥ nP and columns ≥ nS, is only hashed, never kept.
type layout struct {
	n, np, ns, s int
	pri          []byte // primary sliver i = pri[i·nS·s : (i+1)·nS·s]
	sec          []byte // secondary sliver j = sec[j·nP·s : (j+1)·nP·s]
}

func newLayout(p Params, symbolSize int) *layout {
	return &layout{
		n: p.Shards, np: p.NP, ns: p.NS, s: symbolSize,
		pri: make([]byte, p.Shards*p.NS*symbolSize),
		sec: make([]byte, p.Shards*p.NP*symbolSize),
	}
}

// m returns M[i][j] for an entry stored in a sliver: from the primary
// slivers when j < nS, else from the secondary slivers (then i < nP).
func (l *layout) m(i, j int) []byte {
	if j < l.ns {
		off := (i*l.ns + j) * l.s
		return l.pri[off : off+l.s : off+l.s]
	}
	off := (j*l.np + i) * l.s
	return l.sec[off : off+l.s : off+l.s]
}

// secSym returns symbol i of secondary sliver j, i.e. M[i][j] for i < nP.
func (l *layout) secSym(j, i int) []byte {
	off := (j*l.np + i) * l.s
	return l.sec[off : off+l.s : off+l.s]
}

func (l *layout) primary(i int) []byte {
	sz := l.ns * l.s
	return l.pri[i*sz : (i+1)*sz : (i+1)*sz]
}

func (l *layout) secondary(j int) []byte {
	sz := l.np * l.s
	return l.sec[j*sz : (j+1)*sz : (j+1)*sz]
}

// encodeWorker is one goroutine's reusable scratch.
type encodeWorker struct {
	shards [][]byte
	leaf   crypto.LeafHasher
	quad   []byte // the quadrant part of one column: (n−nP) symbols
}

// Encode encodes a blob: its metadata and blob ID, and its n sliver pairs.
//
// Every codec call works on one column or one row of M with shards of one
// symbol (or an L2-sized part of one), pointing straight into the sliver
// buffers, so nothing is transposed and each line is hashed while it is
// still in cache. Work is spread over the codec's workers.
func (c *Codec) Encode(blob []byte) (*Encoded, error) {
	s, err := c.params.SymbolSize(uint64(len(blob)))
	if err != nil {
		return nil, err
	}
	lay := newLayout(c.params, s)
	copy(lay.pri, blob)
	n := lay.n
	leaves := make([]crypto.Digest, n*n) // leaf hash of M[i][j] at i·n + j
	if err := c.extend(lay, leaves); err != nil {
		return nil, err
	}
	meta := c.commit(leaves, uint64(len(blob)))
	enc := &Encoded{ID: meta.BlobID(), Metadata: meta, SymbolSize: s, Pairs: make([]SliverPair, n)}
	for p := range enc.Pairs {
		j := n - 1 - p
		enc.Pairs[p] = SliverPair{
			Index:     uint32(p),
			Primary:   Sliver{SliverRef{crypto.Primary, uint32(p)}, s, lay.primary(p)},
			Secondary: Sliver{SliverRef{crypto.Secondary, uint32(j)}, s, lay.secondary(j)},
		}
	}
	return enc, nil
}

// extend fills the parity of both codes and the leaf hashes of all of M.
// Phase one encodes the nS source columns (parity rows of the primary
// slivers) and the nP source rows (the secondary slivers ≥ nS) — these
// only read the blob, so they run side by side. Phase two extends the
// secondary slivers ≥ nS down their columns to hash the quadrant.
func (c *Codec) extend(lay *layout, leaves []crypto.Digest) error {
	n, np, ns := lay.n, lay.np, lay.ns
	newWorker := func() *encodeWorker {
		return &encodeWorker{shards: make([][]byte, n)}
	}
	err := forEach(c.workers, ns+np, newWorker, func(w *encodeWorker, task int) error {
		if task < ns {
			return c.encodeSourceColumn(lay, leaves, w, task)
		}
		return c.encodeSourceRow(lay, leaves, w, task-ns)
	})
	if err != nil {
		return err
	}
	return forEach(c.workers, n-ns, newWorker, func(w *encodeWorker, task int) error {
		return c.encodeQuadrantColumn(lay, leaves, w, ns+task)
	})
}

// encodeSourceColumn extends column j < nS (M[0..nP)[j] are blob symbols)
// into the parity rows of the primary slivers, hashes the whole column,
// and copies its source part into secondary sliver j.
func (c *Codec) encodeSourceColumn(lay *layout, leaves []crypto.Digest, w *encodeWorker, j int) error {
	s, chunk := lay.s, c.chunkSize(lay.s)
	for a := 0; a < s; a += chunk {
		b := min(a+chunk, s)
		for i := range lay.n {
			w.shards[i] = lay.m(i, j)[a:b]
		}
		if err := c.col.Encode(w.shards); err != nil {
			return err
		}
	}
	for i := range lay.n {
		leaves[i*lay.n+j] = w.leaf.Sum(lay.m(i, j))
	}
	for i := range lay.np {
		copy(lay.secSym(j, i), lay.m(i, j))
	}
	return nil
}

// encodeSourceRow extends row i < nP (a row of the blob) into symbol i of
// the secondary slivers ≥ nS and hashes those symbols.
func (c *Codec) encodeSourceRow(lay *layout, leaves []crypto.Digest, w *encodeWorker, i int) error {
	s, chunk := lay.s, c.chunkSize(lay.s)
	for a := 0; a < s; a += chunk {
		b := min(a+chunk, s)
		for j := range lay.n {
			w.shards[j] = lay.m(i, j)[a:b]
		}
		if err := c.row.Encode(w.shards); err != nil {
			return err
		}
	}
	for j := lay.ns; j < lay.n; j++ {
		leaves[i*lay.n+j] = w.leaf.Sum(lay.m(i, j))
	}
	return nil
}

// encodeQuadrantColumn extends secondary sliver j ≥ nS down its column into
// scratch and hashes rows nP..n−1 of it; those symbols are not stored.
func (c *Codec) encodeQuadrantColumn(lay *layout, leaves []crypto.Digest, w *encodeWorker, j int) error {
	s, chunk := lay.s, c.chunkSize(lay.s)
	parity := lay.n - lay.np
	if cap(w.quad) < parity*s {
		w.quad = make([]byte, parity*s)
	}
	quad := w.quad[:parity*s]
	for a := 0; a < s; a += chunk {
		b := min(a+chunk, s)
		for i := range lay.np {
			w.shards[i] = lay.secSym(j, i)[a:b]
		}
		for i := lay.np; i < lay.n; i++ {
			off := (i - lay.np) * s
			w.shards[i] = quad[off+a : off+b]
		}
		if err := c.col.Encode(w.shards); err != nil {
			return err
		}
	}
	for i := lay.np; i < lay.n; i++ {
		off := (i - lay.np) * s
		leaves[i*lay.n+j] = w.leaf.Sum(quad[off : off+s])
	}
	return nil
}

// commit computes every sliver hash from the leaf hashes of M (row roots
// for primary slivers, column roots for secondary slivers) and the metadata.
func (c *Codec) commit(leaves []crypto.Digest, length uint64) *crypto.Metadata {
	n := c.params.Shards
	roots := make([]crypto.Digest, 2*n) // rows, then columns
	type rootWorker struct{ column, scratch []crypto.Digest }
	_ = forEach(c.workers, 2*n, func() *rootWorker {
		return &rootWorker{column: make([]crypto.Digest, n), scratch: make([]crypto.Digest, (n+1)/2)}
	}, func(w *rootWorker, task int) error {
		if task < n {
			roots[task] = crypto.MerkleRoot(leaves[task*n:(task+1)*n], w.scratch)
			return nil
		}
		j := task - n
		for i := range n {
			w.column[i] = leaves[i*n+j]
		}
		roots[task] = crypto.MerkleRoot(w.column, w.scratch)
		return nil
	})
	meta := &crypto.Metadata{
		Encoding: uint8(c.params.Encoding),
		Shards:   uint32(n),
		Length:   length,
		Pairs:    make([]crypto.PairHashes, n),
	}
	for p := range meta.Pairs {
		meta.Pairs[p] = crypto.PairHashes{Primary: roots[p], Secondary: roots[n+n-1-p]}
	}
	return meta
}
