package coding

import "github.com/weftstore/weft/crypto"

// minHashedSymbol is the smallest symbol PrepareCheck works ahead for: a
// digest per symbol is 32 bytes, so below this the hashes would cost more
// than an eighth of the sliver they save hashing again.
const minHashedSymbol = 8 * crypto.DigestSize

// sourceRow is a systematic primary sliver's share of the consistent-read
// check, worked out by PrepareCheck: row i of the extended matrix and its
// leaf hashes.
type sourceRow struct {
	leaves []crypto.Digest // of M[i][0..n): the sliver's own symbols, then the parity
	parity []byte          // M[i][nS..n), one symbol after the other
}

// PrepareCheck does a systematic primary sliver's share of Decode's
// consistent-read check: it hashes the sliver's symbols — a row of the
// blob itself — extends the row across with the row code, and hashes the
// parity too, keeping all of it in the sliver. A reader calls it as each
// sliver arrives, while it still waits for the others: the check then
// starts with nP of the n rows of its row code done and nP·n of its n²
// leaf hashes (≈ a third), by cores the fetch left idle. It holds
// (n − nS)·SymbolSize bytes of parity per sliver until the decode, which
// the check would otherwise allocate itself.
//
// The work describes Data as it is now: the caller must not change Data
// afterwards (Decode would check bytes other than those it returns). It
// does nothing for a secondary or parity sliver, a sliver of the wrong
// shape, or symbols under minHashedSymbol bytes.
func (c *Codec) PrepareCheck(sl *Sliver) {
	n, ns := c.params.Shards, c.params.NS
	s := sl.SymbolSize
	if sl.Axis != crypto.Primary || int(sl.Index) >= c.params.NP || s < minHashedSymbol || len(sl.Data) != ns*s {
		return
	}
	row := &sourceRow{leaves: make([]crypto.Digest, n), parity: uncleared((n - ns) * s)}
	if err := c.extendRow(sl.Data, row.parity, make([][]byte, n), s); err != nil {
		return // (shapes are checked above: the row code has nothing to refuse)
	}
	var h crypto.LeafHasher
	for j := range ns {
		row.leaves[j] = h.Sum(sl.Symbol(j))
	}
	for j := ns; j < n; j++ {
		row.leaves[j] = h.Sum(row.parity[(j-ns)*s : (j-ns+1)*s])
	}
	sl.source = row
}

// extendRow extends a source row — nS symbols of s bytes side by side —
// across into out, its n − nS parity symbols side by side, a codec chunk
// at a time; shards is n slices of scratch.
func (c *Codec) extendRow(row, out []byte, shards [][]byte, s int) error {
	n, ns := c.params.Shards, c.params.NS
	for a, b := 0, 0; a < s; a = b {
		b = min(c.nextCut(a+c.chunkBytes(), s), s)
		for j := range ns {
			shards[j] = row[j*s+a : j*s+b]
		}
		for j := ns; j < n; j++ {
			shards[j] = out[(j-ns)*s+a : (j-ns)*s+b]
		}
		if err := c.row.Encode(shards, symbolRun{size: s, from: a}); err != nil {
			return err
		}
	}
	return nil
}

// knownSourceRows returns, per source row, what PrepareCheck left on the
// slivers used to decode a blob of length bytes: only for rows the blob
// fills whole, whose symbols are exactly the sliver's bytes (the last,
// partial row is checked against zero padding, which a sliver's own bytes
// need not hold). nil when there are none.
func (c *Codec) knownSourceRows(used []Sliver, s int, length uint64) []*sourceRow {
	n, np, ns := c.params.Shards, c.params.NP, c.params.NS
	whole := min(uint64(np), length/uint64(ns*s))
	var known []*sourceRow
	for _, sl := range used {
		src := sl.source
		if sl.Axis != crypto.Primary || uint64(sl.Index) >= whole || sl.SymbolSize != s || src == nil ||
			len(src.leaves) != n || len(src.parity) != (n-ns)*s {
			continue
		}
		if known == nil {
			known = make([]*sourceRow, np)
		}
		known[sl.Index] = src
	}
	return known
}
