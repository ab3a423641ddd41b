package coding

import (
	"fmt"
	"sync"

	"github.com/weftstore/weft/crypto"
)

// checkMetadata checks that a blob's metadata belongs to this codec and
// returns the blob's symbol size.
func (c *Codec) checkMetadata(meta *crypto.Metadata) (int, error) {
	if meta == nil {
		return 0, fmt.Errorf("%w: no metadata", ErrInvalidParams)
	}
	if err := meta.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidParams, err)
	}
	if int64(meta.Shards) != int64(c.params.Shards) || Encoding(meta.Encoding) != c.params.Encoding {
		return 0, fmt.Errorf("%w: metadata for %d shards with %s, this codec is for %d shards with %s",
			ErrInvalidParams, meta.Shards, Encoding(meta.Encoding), c.params.Shards, c.params.Encoding)
	}
	return c.params.SymbolSize(meta.Length)
}

// pieces splits shards of size bytes — back-to-back s-byte symbols — into
// ranges for parallel codec calls: one range per chunk of work big enough
// to be worth a goroutine, cut where the encoding allows (nextCut).
func (c *Codec) pieces(size, s int) [][2]int {
	const minPiece = 32 << 10
	count := min(max(size/minPiece, 1), 4*c.workers)
	step := max(size/count, 1)
	var out [][2]int
	for a := 0; a < size; {
		b := min(c.nextCut(a+step, s), size)
		out = append(out, [2]int{a, b})
		a = b
	}
	return out
}

// codeLine runs one codec operation over the shards of a line in parallel
// pieces. shards[x] is the full shard x of size bytes of s-byte symbols
// (nil or empty when missing, with capacity for reconstruction); op gets
// the shards cut to one piece, and where the piece lies in its symbols.
func (c *Codec) codeLine(shards [][]byte, size, s int, op func(sub [][]byte, run symbolRun) error) error {
	ranges := c.pieces(size, s)
	return forEach(c.workers, len(ranges), func() [][]byte { return make([][]byte, len(shards)) },
		func(sub [][]byte, task int) error {
			a, b := ranges[task][0], ranges[task][1]
			for x, sh := range shards {
				switch {
				case len(sh) > 0:
					sub[x] = sh[a:b]
				case cap(sh) >= size:
					sub[x] = sh[a:a:b]
				default:
					sub[x] = nil
				}
			}
			return op(sub, symbolRun{size: s, from: a})
		})
}

// lineShards cuts a line buffer of n symbols into shards; positions not in
// have are empty with capacity for one symbol, so reconstruction fills line.
func lineShards(line []byte, n, s int, have func(x int) bool) [][]byte {
	shards := make([][]byte, n)
	for x := range shards {
		if have(x) {
			shards[x] = line[x*s : (x+1)*s : (x+1)*s]
		} else {
			shards[x] = line[x*s : x*s : (x+1)*s]
		}
	}
	return shards
}

// extendLine encodes a sliver's k symbols into its full line of n: the
// first k shards alias data, the other n−k are computed into parity, which
// holds (n−k)·s bytes. Nothing is copied: a node extends every sliver it
// receives, and copying it into a fresh line cost as much as the coding.
func (c *Codec) extendLine(axis crypto.Axis, data, parity []byte, s int) ([][]byte, error) {
	n, k := c.params.Shards, len(data)/s
	shards := make([][]byte, n)
	for x := range k {
		shards[x] = data[x*s : (x+1)*s : (x+1)*s]
	}
	for x := k; x < n; x++ {
		shards[x] = parity[(x-k)*s : (x-k+1)*s : (x-k+1)*s]
	}
	code := c.lineCode(axis)
	if err := c.codeLine(shards, s, s, code.Encode); err != nil {
		return nil, err
	}
	return shards, nil
}

// parityLen is the bytes extendLine needs for a sliver's parity symbols.
func (c *Codec) parityLen(axis crypto.Axis, s int) int {
	return (c.params.Shards - c.params.SliverSymbols(axis)) * s
}

// reconstructLine fills the missing symbols of a line in place.
func (c *Codec) reconstructLine(code lineCoder, shards [][]byte, s int) error {
	return c.codeLine(shards, s, s, code.Reconstruct)
}

// lineLeaves hashes the n symbols of a line.
func (c *Codec) lineLeaves(shards [][]byte) []crypto.Digest {
	n := len(shards)
	leaves := make([]crypto.Digest, n)
	// One task per leaf is fine: a line has n ≤ MaxShards symbols and
	// hashing a symbol dwarfs handing out a task.
	workers := c.workers
	if n == 0 || n*len(shards[0]) < 64<<10 {
		workers = 1
	}
	_ = forEach(workers, n, func() *crypto.LeafHasher { return new(crypto.LeafHasher) },
		func(h *crypto.LeafHasher, x int) error {
			leaves[x] = h.Sum(shards[x])
			return nil
		})
	return leaves
}

// VerifySliver checks a sliver against the blob's metadata: its shape, then
// the Merkle root over its extended line against the committed hash. A node
// stores a sliver only after this check.
func (c *Codec) VerifySliver(meta *crypto.Metadata, sl Sliver) error {
	s, err := c.checkMetadata(meta)
	if err != nil {
		return err
	}
	if err := c.params.checkSliver(sl, s); err != nil {
		return err
	}
	parity := scratch(c.parityLen(sl.Axis, s))
	defer putScratch(parity)
	shards, err := c.extendLine(sl.Axis, sl.Data, parity, s)
	if err != nil {
		return err
	}
	root := crypto.MerkleRoot(c.lineLeaves(shards), nil)
	return meta.CheckSliverRoot(sl.Axis, sl.Index, root)
}

// ExtendedSliver is a stored sliver extended to its full line, ready to
// serve recovery symbols to peers. Safe for concurrent use.
type ExtendedSliver struct {
	Sliver
	codec    *Codec
	line     [][]byte // the n symbols
	treeOnce sync.Once
	tree     *crypto.MerkleTree
}

// Extend extends a sliver of the blob for serving recovery symbols. The
// Merkle tree for proofs is built on the first request for a proof.
func (c *Codec) Extend(meta *crypto.Metadata, sl Sliver) (*ExtendedSliver, error) {
	s, err := c.checkMetadata(meta)
	if err != nil {
		return nil, err
	}
	if err := c.params.checkSliver(sl, s); err != nil {
		return nil, err
	}
	line, err := c.extendLine(sl.Axis, sl.Data, make([]byte, c.parityLen(sl.Axis, s)), s)
	if err != nil {
		return nil, err
	}
	return &ExtendedSliver{Sliver: sl, codec: c, line: line}, nil
}

// Root returns the Merkle root over the extended line, which equals the
// metadata's hash of this sliver when the sliver is genuine.
func (e *ExtendedSliver) Root() crypto.Digest { return e.merkleTree().Root() }

func (e *ExtendedSliver) merkleTree() *crypto.MerkleTree {
	e.treeOnce.Do(func() { e.tree = crypto.NewMerkleTree(e.codec.lineLeaves(e.line)) })
	return e.tree
}

// Symbol returns the recovery symbol at position target of the extended
// line: M[target][j] from secondary sliver j, M[i][target] from primary
// sliver i; with its Merkle proof if withProof.
func (e *ExtendedSliver) Symbol(target int, withProof bool) (RecoverySymbol, error) {
	if target < 0 || target >= e.codec.params.Shards {
		return RecoverySymbol{}, fmt.Errorf("coding: recovery symbol for target %d of %d shards", target, e.codec.params.Shards)
	}
	sym := RecoverySymbol{
		SourceAxis: e.Axis,
		Source:     e.Index,
		Target:     uint32(target),
		Data:       e.line[target],
	}
	if withProof {
		proof, err := e.merkleTree().Proof(target)
		if err != nil {
			return RecoverySymbol{}, err
		}
		sym.Proof = &proof
	}
	return sym, nil
}
