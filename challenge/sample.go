// Package challenge is the pure part of storage challenges: the round's
// seed, which (blob, shard, sliver, symbol) positions each node must prove,
// the signed response a node sends its challengers, and its verification.
// No I/O and no clock: the control plane (which commits rounds) and the
// storage nodes (which prove and judge) share these functions, so both
// compute the same positions from the same committed inputs.
package challenge

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/weftstore/weft/crypto"
)

// DefaultSamples is the number of blobs a round samples. A node missing a
// fraction x of its slivers passes a round with probability at most
// (1−x)^k; 5% missing and k = 45 give 0.95^90 < 1% over two rounds.
const DefaultSamples = 45

// Seed is a round's randomness. The control plane derives it when it
// commits the round, from the round's place in the log and a fresh value
// the leader drew for that command only (see DESIGN.md).
type Seed crypto.Digest

// DeriveSeed binds the leader's fresh value to the round's epoch, number
// and the Raft index of the command that opened it.
func DeriveSeed(epoch, round, index uint64, fresh [32]byte) Seed {
	h := sha256.New()
	h.Write([]byte("weft/challenge-seed/v1"))
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], epoch)
	binary.BigEndian.PutUint64(b[8:], round)
	binary.BigEndian.PutUint64(b[16:], index)
	h.Write(b[:])
	h.Write(fresh[:])
	var s Seed
	h.Sum(s[:0])
	return s
}

// draw is the seed's deterministic stream: a uniform value below bound for
// each (label, blob, parts), from SHA-256 (the modulo bias is below 2^-40
// for every bound used here).
func (s Seed) draw(label byte, bound uint64, blob *crypto.BlobID, parts ...uint64) uint64 {
	if bound == 0 {
		return 0
	}
	buf := make([]byte, 0, len(s)+1+crypto.DigestSize+8*len(parts))
	buf = append(buf, s[:]...)
	buf = append(buf, label)
	if blob != nil {
		buf = append(buf, blob[:]...)
	}
	for _, p := range parts {
		buf = binary.BigEndian.AppendUint64(buf, p)
	}
	sum := sha256.Sum256(buf)
	return binary.BigEndian.Uint64(sum[:8]) % bound
}

const (
	labelBlob   = 'b'
	labelAxis   = 'a'
	labelSymbol = 's'
	labelShard  = 'h'
)

// Lookup returns the blob at a position of the eligible set (certified
// blobs in the order the control plane certified them), or false for a
// position whose blob has since left the set (expired or invalid).
type Lookup func(seq uint64) (crypto.BlobID, bool)

// Next returns the first blob at or after seq, for when a draw keeps
// landing on positions that have left the set.
type Next func(seq uint64) (uint64, crypto.BlobID, bool)

// maxMisses is how many empty positions one draw tries before it takes the
// next blob after its last try instead.
const maxMisses = 16

// SampleBlobs picks up to k distinct blobs from the eligible positions
// [0, count): uniformly while positions are mostly occupied, by taking the
// next occupied position when a draw misses maxMisses times. Fewer than k
// come back only when the set holds fewer.
func SampleBlobs(seed Seed, k int, count uint64, lookup Lookup, next Next) []crypto.BlobID {
	var out []crypto.BlobID
	if count == 0 {
		return nil
	}
	seen := map[crypto.BlobID]bool{}
	for i := uint64(0); len(out) < k && i < uint64(4*k); i++ {
		var id crypto.BlobID
		found := false
		for attempt := uint64(0); attempt < maxMisses && !found; attempt++ {
			id, found = lookup(seed.draw(labelBlob, count, nil, i, attempt))
		}
		if !found {
			var seq uint64
			if seq, id, found = next(seed.draw(labelBlob, count, nil, i, maxMisses)); !found || seq >= count {
				seq, id, found = next(0) // wrap around
				found = found && seq < count
			}
		}
		if !found {
			return out // the set is empty
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Position is one symbol a node must prove: the symbol at Symbol of the
// extended line of the node's sliver (Axis, Sliver) of Blob, held for Shard.
type Position struct {
	Blob   crypto.BlobID
	Shard  uint32
	Axis   crypto.Axis
	Sliver uint32
	Symbol uint32
}

// DefaultShardsPerBlob is how many of a node's held shards a round checks
// per sampled blob. A cheater's best case is deleting whole blobs, which
// a single shard per blob already exposes with probability (1−x)^k; the
// second keeps deletions scattered over pairs at (1−x)^(2k) — 0.95^180
// over two rounds, not 0.95^90 at the edge of the 1% bound. Checking
// every held shard instead would make a round's bytes grow with n (45 ×
// n items fetched by every challenger: ≈ 1 GB at n = 1000) for no
// better bound.
const DefaultShardsPerBlob = 2

// MaxShardsPerBlob bounds what a round may ask for (a node at n = 1000
// holds at most 1000 shards; 0 asks for every held shard).
const MaxShardsPerBlob = 1024

// Positions lists what a node holding shards must prove for the round's
// blobs: for every blob, perBlob of the held shards drawn from the seed
// (every held shard when perBlob is 0 — rounds logged before the bound —
// or at least their number), and for each, one sliver of the pair the
// shard stores (axis drawn from the seed) and one symbol of its extended
// line — n positions, so a node cannot keep a few symbols and pass.
// Ordered by blob (as given), then shard.
func Positions(seed Seed, blobs []crypto.BlobID, shards []uint32, n uint32, perBlob int) []Position {
	held := slices.Clone(shards)
	slices.Sort(held)
	per := len(held)
	if perBlob > 0 && perBlob < per {
		per = perBlob
	}
	out := make([]Position, 0, len(blobs)*per)
	for _, id := range blobs {
		for _, s := range drawShards(seed, &id, held, per) {
			pair := (s + n - id.Mod(n)) % n // coding.Params.PairForShard
			axis := crypto.Primary
			sliver := pair
			if seed.draw(labelAxis, 2, &id, uint64(s)) == 1 {
				axis, sliver = crypto.Secondary, n-1-pair
			}
			out = append(out, Position{Blob: id, Shard: s, Axis: axis, Sliver: sliver,
				Symbol: uint32(seed.draw(labelSymbol, uint64(n), &id, uint64(s)))})
		}
	}
	return out
}

// drawShards returns count distinct shards of held (sorted) for blob, in
// increasing order: all of them when count is their number, otherwise a
// partial Fisher–Yates shuffle driven by the seed.
func drawShards(seed Seed, blob *crypto.BlobID, held []uint32, count int) []uint32 {
	if count >= len(held) {
		return held
	}
	pool := slices.Clone(held)
	for i := range count {
		j := i + int(seed.draw(labelShard, uint64(len(pool)-i), blob, uint64(i)))
		pool[i], pool[j] = pool[j], pool[i]
	}
	picked := pool[:count]
	slices.Sort(picked)
	return picked
}
