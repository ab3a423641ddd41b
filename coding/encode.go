package coding

import (
	"sync"
	"unsafe"

	"github.com/weftstore/weft/crypto"
)

// layout holds one blob's slivers while it is encoded. Without a buffer
// pool every sliver is its own allocation, made by the workers in parallel,
// and the caller may keep or drop each on its own; with one they are carved
// from one arena (carveSlivers), which Release gives back whole. The rest of M, the quadrant of rows ≥ nP and columns ≥ nS, is
// hashed and dropped.
type layout struct {
	n, np, ns, s int
	pri          [][]byte // primary sliver i: M[i][0..nS), the first nP are the blob's rows
	sec          [][]byte // secondary sliver j: M[0..nP)[j]
	// columnLeaves holds the leaf hash of M[i][j] at j·n + i: each column
	// task hashes a whole column and stores it in one contiguous run; the
	// row roots read it back in blocks of rows (see rowRoots). nil when
	// the row roots come from extending the primaries again instead
	// (keepLeafTable).
	columnLeaves []crypto.Digest
	leafTable    []byte          // columnLeaves' memory, from the scratch pool
	roots        []crypto.Digest // row roots, then column roots
	// hashOnly (Metadata): the secondaries < nS are hashed in scratch and
	// dropped, and so are the parity primaries unless the row roots need
	// them (columnLeaves nil).
	hashOnly bool
	// arena, if not nil, holds every sliver that is not the blob's own
	// memory (carveSlivers).
	arena []byte
	// knownRows (Metadata for a read's check), if not nil, holds for
	// source row i its extension and leaf hashes when the reader already
	// has them (PrepareCheck), else nil.
	knownRows []*sourceRow
	// right (hashOnly) holds M[i][nS..n) for i < nP row by row, where the
	// row code writes it: the secondaries ≥ nS are never handed out, so
	// their symbols need not be copied into columns, and the quadrant's
	// column code reads each row's run of a column block as it lies.
	right [][]byte
}

// knownRow returns what the reader worked out ahead for source row i
// (PrepareCheck), or nil.
func (l *layout) knownRow(i int) *sourceRow {
	if l.knownRows == nil {
		return nil
	}
	return l.knownRows[i]
}

// keepsParity reports whether the parity primaries are written out.
func (l *layout) keepsParity() bool { return !l.hashOnly || l.columnLeaves == nil }

// keepLeafTable says whether an encode keeps the n² leaf hashes to compute
// the row roots from (one hash per symbol), or extends each primary sliver
// again and hashes its row (every symbol hashed twice, plus n row
// encodes). The table is 32·n² bytes — 32 MB at n = 1000, whatever the
// blob — so it is kept only while it is at most twice the blob: for a
// 1 MiB blob at n = 1000 it would be 30× the blob (issue #20).
func keepLeafTable(n, length int) bool { return n*n*crypto.DigestSize <= 2*length }

func newLayout(n, np, ns, s, length int) *layout {
	lay := &layout{n: n, np: np, ns: ns, s: s, pri: make([][]byte, n), sec: make([][]byte, n), roots: make([]crypto.Digest, 2*n)}
	if keepLeafTable(n, length) {
		// From the scratch pool: 32 MB at n = 1000, fresh pages for every
		// encode otherwise (dropLeafTable gives it back).
		lay.leafTable = scratch(n * n * crypto.DigestSize)
		lay.columnLeaves = unsafe.Slice((*crypto.Digest)(unsafe.Pointer(unsafe.SliceData(lay.leafTable))), n*n)
	}
	return lay
}

// dropLeafTable gives the leaf table back to the scratch pool once the
// roots are computed.
func (l *layout) dropLeafTable() {
	if l.leafTable != nil {
		putScratch(l.leafTable)
		l.leafTable, l.columnLeaves = nil, nil
	}
}

// sym returns M[i][j] for an entry stored in a sliver: from the primary
// slivers when j < nS, else from the secondary slivers (then i < nP).
func (l *layout) sym(i, j int) []byte {
	if j < l.ns {
		return l.pri[i][j*l.s : (j+1)*l.s : (j+1)*l.s]
	}
	if l.right != nil {
		off := (j - l.ns) * l.s
		return l.right[i][off : off+l.s : off+l.s]
	}
	return l.sec[j][i*l.s : (i+1)*l.s : (i+1)*l.s]
}

// encodeWorkers hands the same workers to every phase of one encode: a
// worker's scratch (its leaf blocks and codec buffers) is sized by n, and
// making it afresh for each phase cost more than a 1 MiB blob at n = 1000.
type encodeWorkers struct {
	c    *Codec
	mu   sync.Mutex
	free []*encodeWorker
}

// run is forEach over the codec's workers, with workers from the pool.
func (p *encodeWorkers) run(tasks int, do func(w *encodeWorker, task int) error) error {
	var used []*encodeWorker
	err := forEach(p.c.workers, tasks, func() *encodeWorker {
		p.mu.Lock()
		defer p.mu.Unlock()
		var w *encodeWorker
		if n := len(p.free); n > 0 {
			w, p.free = p.free[n-1], p.free[:n-1]
		} else {
			w = p.c.newEncodeWorker()
		}
		used = append(used, w)
		return w
	}, do)
	p.mu.Lock()
	p.free = append(p.free, used...)
	p.mu.Unlock()
	return err
}

// encodeWorker is one goroutine's reusable scratch.
type encodeWorker struct {
	shards  [][]byte
	leaf    crypto.LeafHasher
	block   [][]crypto.Digest // the leaf hashes of the columns being encoded
	scratch []crypto.Digest   // Merkle levels
	quad    []byte            // codec output for a block of columns: (n−nP) rows
	gather  []byte            // quadrant columns' source symbols, side by side
}

func (c *Codec) newEncodeWorker() *encodeWorker {
	n := c.params.Shards
	w := &encodeWorker{
		shards:  make([][]byte, n),
		block:   make([][]crypto.Digest, maxColumnBlock),
		scratch: make([]crypto.Digest, (n+1)/2),
	}
	for b := range w.block {
		w.block[b] = make([]crypto.Digest, n)
	}
	return w
}

// Encode encodes a blob: its metadata and blob ID, and its n sliver pairs.
//
// Every codec call works on a few adjacent columns or on one row of M, with
// shards small enough to stay in a core's L2 cache, and every column is
// hashed — and its Merkle root computed — while it is still there. Nothing
// is transposed and the blob is not copied: the primary slivers of the rows
// it fills whole share its memory, so the caller must not modify blob
// while it uses the result (as with klauspost/reedsolomon's Split). Work is
// spread over the codec's workers. See DESIGN.md for the phases and their
// measured costs.
func (c *Codec) Encode(blob []byte) (*Encoded, error) {
	s, err := c.params.SymbolSize(uint64(len(blob)))
	if err != nil {
		return nil, err
	}
	lay, err := c.encodeSlivers(blob, s)
	if err != nil {
		return nil, err
	}
	n := lay.n
	meta := lay.metadata(c.params.Encoding, uint64(len(blob)))
	enc := &Encoded{ID: meta.BlobID(), Metadata: meta, SymbolSize: s, Pairs: make([]SliverPair, n)}
	if lay.arena != nil {
		enc.arena = &arena{pool: c.pool, buf: lay.arena}
	}
	for p := range enc.Pairs {
		j := n - 1 - p
		enc.Pairs[p] = SliverPair{
			Index:     uint32(p),
			Primary:   Sliver{SliverRef: SliverRef{crypto.Primary, uint32(p)}, SymbolSize: s, Data: lay.pri[p]},
			Secondary: Sliver{SliverRef: SliverRef{crypto.Secondary, uint32(j)}, SymbolSize: s, Data: lay.sec[j]},
		}
	}
	return enc, nil
}

// encodeSlivers runs the phases of an encode:
//
//  1. allocate the slivers; the first nP primaries are the blob's rows
//     (sharing its memory; only a partial last row is copied);
//  2. a block of source columns at a time: hash their source symbols and
//     copy them into the secondary slivers, extend the block down into
//     scratch, hash that and copy it into the parity primaries, and compute
//     the columns' roots;
//  3. extend the nP source rows across (the secondaries ≥ nS), a block of
//     rows at a time, from the secondaries < nS that phase 2 wrote;
//  4. extend the secondaries ≥ nS down their columns into scratch, hash
//     those columns and compute their roots;
//  5. compute the row roots from the column-major leaf hashes.
func (c *Codec) encodeSlivers(blob []byte, s int) (*layout, error) {
	p := c.params
	n, np, ns := p.Shards, p.NP, p.NS
	lay := newLayout(n, np, ns, s, len(blob))
	if c.pool != nil {
		c.carveSlivers(lay, blob)
	} else {
		c.allocateSlivers(lay, blob)
	}
	err := c.hashPhases(lay)
	lay.dropLeafTable()
	if err != nil {
		if lay.arena != nil {
			c.pool.put(lay.arena)
		}
		return nil, err
	}
	return lay, nil
}

// carveSlivers is phase 1 for a codec with a buffer pool: every sliver
// that is not the blob's own memory is carved from one arena, taken from
// the pool, so that a released encode's memory — pages already faulted in
// — is what the next one writes. The arena's contents are undefined: the
// parity primaries and the secondaries are written in full by the
// encode, and the source rows the blob does not fill whole are cleared
// here.
func (c *Codec) carveSlivers(lay *layout, blob []byte) {
	n, np, ns, s := lay.n, lay.np, lay.ns, lay.s
	row := ns * s
	whole := min(len(blob)/row, np) // source rows that are the blob's memory
	lay.arena = c.pool.get((n-whole)*row + n*np*s)
	next := 0
	carve := func(size int) []byte {
		b := lay.arena[next : next+size : next+size]
		next += size
		return b
	}
	for i := range n {
		switch {
		case i < whole:
			lay.pri[i] = blob[i*row : (i+1)*row : (i+1)*row]
		case i < np:
			lay.pri[i] = carve(row)
			clear(lay.pri[i][copy(lay.pri[i], blob[min(i*row, len(blob)):]):])
		default:
			lay.pri[i] = carve(row)
		}
	}
	for j := range n {
		lay.sec[j] = carve(np * s)
	}
}

// allocateSlivers is encodeSlivers' phase 1.
func (c *Codec) allocateSlivers(lay *layout, blob []byte) {
	n, np, ns, s := lay.n, lay.np, lay.ns, lay.s
	none := func() struct{} { return struct{}{} }
	// Secondary slivers j < nS are allocated by the task that fills them,
	// so that their zeroing is still in cache when the data overwrites it.
	_ = forEach(c.workers, n+n-ns, none, func(_ struct{}, task int) error {
		switch row := task * ns * s; {
		case task >= n:
			lay.sec[task-n+ns] = uncleared(np * s) // every symbol written by the row code
		case task >= np:
			lay.pri[task] = uncleared(ns * s) // every symbol written by the column code
		case row+ns*s <= len(blob):
			// A whole row of the blob is the primary sliver as it is: it
			// shares the blob's memory (capacity capped, so no append can
			// reach the next row) instead of copying it.
			lay.pri[task] = blob[row : row+ns*s : row+ns*s]
		default:
			lay.pri[task] = make([]byte, ns*s)
			if row < len(blob) {
				copy(lay.pri[task], blob[row:])
			}
		}
		return nil
	})
}

// hashPhases runs encodeSlivers' phases 2 to 5 on a layout whose source
// rows (and, unless hashOnly, every sliver) are allocated.
func (c *Codec) hashPhases(lay *layout) error {
	n, np, ns := lay.n, lay.np, lay.ns
	block := c.columnBlock(lay.s)
	workers := &encodeWorkers{c: c}
	err := workers.run((ns+block-1)/block, func(w *encodeWorker, task int) error {
		return c.encodeSourceColumns(lay, w, task*block, min((task+1)*block, ns))
	})
	if err != nil {
		return err
	}
	rows := block
	if lay.hashOnly {
		rows = 1 // no secondaries < nS to read a block from (encodeSourceRows)
	}
	err = workers.run((np+rows-1)/rows, func(w *encodeWorker, task int) error {
		return c.encodeSourceRows(lay, w, task*rows, min((task+1)*rows, np))
	})
	if err != nil {
		return err
	}
	quadTasks := (n - ns + block - 1) / block
	err = workers.run(quadTasks, func(w *encodeWorker, task int) error {
		return c.encodeQuadrantColumns(lay, w, ns+task*block, min(ns+(task+1)*block, n))
	})
	if err != nil {
		return err
	}
	if lay.columnLeaves == nil {
		return c.extendedRowRoots(lay)
	}
	c.rowRoots(lay)
	return nil
}

// extendedRowRoots computes the row roots without the leaf table: each
// primary sliver is extended across again, as a node verifying it does,
// and its n symbols hashed. Rows go through the codec a group at a time,
// their symbols side by side in each shard, so that small symbols still
// make codec calls of a useful size (lanes16 would pad a lone 2-byte
// symbol to a 64-byte block), and no larger: the group's buffer is n
// shards wide.
func (c *Codec) extendedRowRoots(lay *layout) error {
	n, ns, s := lay.n, lay.ns, lay.s
	group := max(1, min(32, laneBlock/s)) // one 64-byte block per shard: enough for lanes16, no more held
	type worker struct {
		buf             []byte // n shards of group·s bytes
		shards          [][]byte
		leaves, scratch []crypto.Digest
		leaf            crypto.LeafHasher
	}
	newWorker := func() *worker {
		return &worker{buf: make([]byte, n*group*s), shards: make([][]byte, n),
			leaves: make([]crypto.Digest, n), scratch: make([]crypto.Digest, (n+1)/2)}
	}
	return forEach(c.workers, (n+group-1)/group, newWorker, func(w *worker, task int) error {
		first, rows := task*group, min(group, n-task*group)
		width := rows * s
		for x := range n {
			w.shards[x] = w.buf[x*width : (x+1)*width : (x+1)*width]
		}
		for g := range rows {
			row := lay.pri[first+g]
			for x := range ns {
				copy(w.shards[x][g*s:], row[x*s:(x+1)*s])
			}
		}
		if err := c.row.Encode(w.shards, symbolRun{size: s}); err != nil {
			return err
		}
		for g := range rows {
			for x, sh := range w.shards {
				w.leaves[x] = w.leaf.Sum(sh[g*s : (g+1)*s])
			}
			lay.roots[first+g] = crypto.MerkleRoot(w.leaves, w.scratch)
		}
		return nil
	})
}

// rowBlock is how many rows' leaves rowRoots gathers at once: one
// contiguous run of rowBlock digests per column, a block of n·rowBlock
// digests that stays in L2 while its roots are computed.
const rowBlock = 32

// rowRoots computes the primary slivers' hashes: Merkle roots over the rows
// of the column-major leaf table, transposed a block of rows at a time.
func (c *Codec) rowRoots(lay *layout) {
	n := lay.n
	type worker struct{ block, scratch []crypto.Digest }
	newWorker := func() *worker {
		return &worker{block: make([]crypto.Digest, rowBlock*n), scratch: make([]crypto.Digest, (n+1)/2)}
	}
	blocks := (n + rowBlock - 1) / rowBlock
	_ = forEach(c.workers, blocks, newWorker, func(w *worker, b int) error {
		first, rows := b*rowBlock, min(rowBlock, n-b*rowBlock)
		for j := range n {
			run := lay.columnLeaves[j*n+first : j*n+first+rows]
			for r, leaf := range run {
				w.block[r*n+j] = leaf
			}
		}
		for r := range rows {
			lay.roots[first+r] = crypto.MerkleRoot(w.block[r*n:(r+1)*n], w.scratch)
		}
		return nil
	})
}

// encodeSourceColumns handles the source columns [j0, j1): it copies their
// blob symbols into the secondary slivers (allocated here), extends them
// down into the parity rows of the primary slivers, and hashes each whole
// column into its root. Adjacent columns sit side by side in every primary
// sliver, so a block gives the codec longer contiguous shards. Every symbol
// is hashed while it is in cache.
func (c *Codec) encodeSourceColumns(lay *layout, w *encodeWorker, j0, j1 int) error {
	s := lay.s
	start, end := j0*s, j1*s
	for j := j0; j < j1 && !lay.hashOnly && lay.arena == nil; j++ {
		lay.sec[j] = uncleared(lay.np * s) // every symbol copied in below
	}
	for i := range lay.np {
		known := lay.knownRow(i)
		for j := j0; j < j1; j++ {
			sym := lay.sym(i, j)
			if known != nil {
				lay.columnLeaf(w, j, j0)[i] = known.leaves[j]
			} else {
				lay.columnLeaf(w, j, j0)[i] = w.leaf.Sum(sym)
			}
			if !lay.hashOnly {
				copy(lay.sec[j][i*s:], sym)
			}
		}
	}
	// The codec writes the parity into scratch, hot in cache, from where it
	// is hashed and copied out: writing it straight into the cold parity
	// slivers stalls the codec's inner loop (measured: 2.7× slower).
	width := end - start
	parity := lay.n - lay.np
	scratch := grow(&w.quad, parity*width)
	for a, b := 0, 0; a < width; a = b {
		b = min(c.nextCut(a+c.chunkBytes(), s), width)
		for i := range lay.np {
			w.shards[i] = lay.pri[i][start+a : start+b]
		}
		for i := lay.np; i < lay.n; i++ {
			off := (i - lay.np) * width
			w.shards[i] = scratch[off+a : off+b]
		}
		if err := c.col.Encode(w.shards, symbolRun{size: s, from: a}); err != nil {
			return err
		}
	}
	for i := lay.np; i < lay.n; i++ {
		row := scratch[(i-lay.np)*width : (i-lay.np+1)*width]
		for j := j0; j < j1; j++ {
			lay.columnLeaf(w, j, j0)[i] = w.leaf.Sum(row[(j-j0)*s : (j-j0+1)*s])
		}
		if lay.keepsParity() {
			copy(lay.pri[i][start:end], row)
		}
	}
	for j := j0; j < j1; j++ {
		c.finishColumn(lay, w, j, lay.columnLeaf(w, j, j0))
	}
	return nil
}

// encodeSourceRows extends the source rows [i0, i1) across into symbols
// i0…i1−1 of the secondary slivers ≥ nS, a block of rows per codec call:
// longer shards make the codec cheaper per byte, as for columns. Symbols
// i0…i1−1 of a secondary lie side by side, so each shard is a run of one
// secondary: the secondaries < nS, written in phase 2, are the input as
// they lie, and the output goes through hot scratch into the secondaries
// ≥ nS (the codec writing cold slivers stalls, as for the source columns).
// hashOnly dropped the secondaries < nS: there a block is one row, whose
// symbols are its primary sliver as it lies (a block would need them
// gathered, a copy of the blob), and the codec writes the row's parity
// where it stays (layout.right): copying it into columns through scratch
// was ≈ 14 % of the CPU of a read's consistent-read check at n = 100,
// 64 MiB, most of it first touches of fresh pages.
func (c *Codec) encodeSourceRows(lay *layout, w *encodeWorker, i0, i1 int) error {
	s, ns := lay.s, lay.ns
	start, width := i0*s, (i1-i0)*s
	if lay.hashOnly { // i1 = i0+1
		if lay.knownRow(i0) != nil {
			return nil // extended as the sliver arrived; right[i0] is its parity
		}
		return c.extendRow(lay.pri[i0], lay.right[i0], w.shards, s)
	}
	source := func(j int) []byte { return lay.sec[j][start : start+width] }
	out := grow(&w.quad, (lay.n-ns)*width)
	for a, b := 0, 0; a < width; a = b {
		b = min(c.nextCut(a+c.chunkBytes(), s), width)
		for j := range ns {
			w.shards[j] = source(j)[a:b]
		}
		for j := ns; j < lay.n; j++ {
			off := (j - ns) * width
			w.shards[j] = out[off+a : off+b]
		}
		if err := c.row.Encode(w.shards, symbolRun{size: s, from: a}); err != nil {
			return err
		}
	}
	for j := ns; j < lay.n; j++ {
		copy(lay.sec[j][start:start+width], out[(j-ns)*width:])
	}
	return nil
}

// grow returns (*buf)[:n], reallocating the worker's buffer when it is
// too small.
func grow(buf *[]byte, n int) []byte {
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	return (*buf)[:n]
}

// encodeQuadrantColumns extends the secondary slivers [j0, j1) (all ≥ nS)
// down their columns and hashes each whole column into its root; the
// quadrant symbols this makes belong to no stored sliver and are dropped.
// The columns' source symbols are gathered side by side first, so that one
// codec call covers the block (as for the source columns); hashOnly's
// rows (layout.right) already hold them so.
func (c *Codec) encodeQuadrantColumns(lay *layout, w *encodeWorker, j0, j1 int) error {
	s, ns := lay.s, lay.ns
	width := (j1 - j0) * s
	parity := lay.n - lay.np
	quad := grow(&w.quad, parity*width)
	blockOf := func(i int) []byte { return lay.right[i][(j0-ns)*s : (j1-ns)*s] }
	if lay.right == nil {
		gather := grow(&w.gather, lay.np*width)
		blockOf = func(i int) []byte { return gather[i*width : (i+1)*width] }
		for j := j0; j < j1; j++ {
			for i := range lay.np {
				copy(blockOf(i)[(j-j0)*s:], lay.sym(i, j))
			}
		}
	}
	for j := j0; j < j1; j++ {
		column := lay.columnLeaf(w, j, j0)
		for i := range lay.np {
			if known := lay.knownRow(i); known != nil {
				column[i] = known.leaves[j]
			} else {
				column[i] = w.leaf.Sum(blockOf(i)[(j-j0)*s : (j-j0+1)*s])
			}
		}
	}
	for a, b := 0, 0; a < width; a = b {
		b = min(c.nextCut(a+c.chunkBytes(), s), width)
		for i := range lay.np {
			w.shards[i] = blockOf(i)[a:b]
		}
		for i := lay.np; i < lay.n; i++ {
			off := (i - lay.np) * width
			w.shards[i] = quad[off+a : off+b]
		}
		if err := c.col.Encode(w.shards, symbolRun{size: s, from: a}); err != nil {
			return err
		}
	}
	for i := lay.np; i < lay.n; i++ {
		row := quad[(i-lay.np)*width : (i-lay.np+1)*width]
		for j := j0; j < j1; j++ {
			lay.columnLeaf(w, j, j0)[i] = w.leaf.Sum(row[(j-j0)*s : (j-j0+1)*s])
		}
	}
	for j := j0; j < j1; j++ {
		c.finishColumn(lay, w, j, lay.columnLeaf(w, j, j0))
	}
	return nil
}

// columnLeaf returns where column j's leaf hashes go, j0 being the first
// column of w's block: straight into the leaf table when it is kept (the
// row roots read them there; copying them in afterwards cost 2 % of a
// 64 MiB encode at n = 1000), else into the worker's block.
func (l *layout) columnLeaf(w *encodeWorker, j, j0 int) []crypto.Digest {
	if l.columnLeaves != nil {
		return l.columnLeaves[j*l.n : (j+1)*l.n : (j+1)*l.n]
	}
	return w.block[j-j0]
}

// finishColumn takes column j's leaf hashes: their Merkle root is secondary
// sliver j's hash.
func (c *Codec) finishColumn(lay *layout, w *encodeWorker, j int, column []crypto.Digest) {
	lay.roots[lay.n+j] = crypto.MerkleRoot(column, w.scratch)
}

// maxColumnBlock bounds the columns one task encodes together: longer
// shards make the codec's butterflies cheaper per byte, but the block's
// symbols and the codec's work buffers must stay in L2 (measured at
// n=1000: 4 columns of 320 B beat 1 by about 15%, 8 are slower again).
const maxColumnBlock = 4

// columnBlock is how many adjacent source columns one task encodes
// together: as many whole symbols as fit one codec chunk, at most
// maxColumnBlock.
func (c *Codec) columnBlock(s int) int {
	return max(1, min(maxColumnBlock, c.chunkBytes()/s))
}
