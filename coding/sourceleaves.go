package coding

import "github.com/weftstore/weft/crypto"

// minHashedSymbol is the smallest symbol HashSource keeps leaf hashes for:
// a digest per symbol is 32 bytes, so below this the hashes would cost more
// than an eighth of the sliver they save hashing again.
const minHashedSymbol = 8 * crypto.DigestSize

// HashSource hashes a systematic primary sliver's symbols — rows of the
// blob itself — into the sliver, for Decode's consistent-read check to use
// instead of hashing them again. A reader calls it as each sliver arrives,
// while it still waits for the others: the check then starts with a share
// nP·nS/n² of its leaf hashes (≈ a quarter) already done, by cores the
// fetch left idle.
//
// The hashes describe Data as it is now: the caller must not change Data
// afterwards (Decode would check bytes other than those it returns). It
// does nothing for a secondary or parity sliver, a sliver of the wrong
// shape, or symbols under minHashedSymbol bytes.
func (c *Codec) HashSource(sl *Sliver) {
	ns := c.params.NS
	if sl.Axis != crypto.Primary || int(sl.Index) >= c.params.NP || sl.SymbolSize < minHashedSymbol || len(sl.Data) != ns*sl.SymbolSize {
		return
	}
	var h crypto.LeafHasher
	leaves := make([]crypto.Digest, ns)
	for j := range leaves {
		leaves[j] = h.Sum(sl.Data[j*sl.SymbolSize : (j+1)*sl.SymbolSize])
	}
	sl.sourceLeaves = leaves
}

// knownSourceLeaves returns, per source row, the leaf hashes HashSource left
// on the slivers used to decode a blob of length bytes: only for rows the
// blob fills whole, whose symbols are exactly the sliver's bytes (the last,
// partial row is checked against zero padding, which a sliver's own bytes
// need not hold). nil when there are none.
func (c *Codec) knownSourceLeaves(used []Sliver, s int, length uint64) [][]crypto.Digest {
	np, ns := c.params.NP, c.params.NS
	whole := min(uint64(np), length/uint64(ns*s))
	var known [][]crypto.Digest
	for _, sl := range used {
		if sl.Axis != crypto.Primary || uint64(sl.Index) >= whole || sl.SymbolSize != s || len(sl.sourceLeaves) != ns {
			continue
		}
		if known == nil {
			known = make([][]crypto.Digest, np)
		}
		known[sl.Index] = sl.sourceLeaves
	}
	return known
}
