package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Faults make a node lie, so that tests can check that everyone else
// rejects its data: it is the real node with its answers spoiled, not a
// mock. Enabled only by `weft node --inject-faults` (hidden) or in tests.
type Faults struct {
	CorruptSlivers bool // flip a byte of every sliver served
	BadSymbols     bool // flip a byte of every recovery symbol served
	BadSignature   bool // sign confirmations of another message
	// DropPairs is the percentage (0–100) of the sliver pairs the node
	// holds that it deletes at start and does not store when they arrive,
	// chosen per (blob, shard) by a hash — while it still acts as if it
	// held them: it confirms them, does not recover them, and answers a
	// storage challenge on them with a made-up sliver (a cheater).
	DropPairs float64
	// LazyChallenge: asked to prove a sliver it lacks, the node first
	// tries to rebuild it from its peers (coding.RecoverPair), as a lazy
	// node that deleted its data would (the embargo defeats it).
	LazyChallenge bool
}

// Any reports whether any fault is on.
func (f Faults) Any() bool {
	return f.CorruptSlivers || f.BadSymbols || f.BadSignature || f.DropPairs > 0 || f.LazyChallenge
}

func (f Faults) String() string {
	var on []string
	for name, set := range map[string]bool{"corrupt-slivers": f.CorruptSlivers, "bad-symbols": f.BadSymbols,
		"bad-signature": f.BadSignature, "lazy-challenge": f.LazyChallenge} {
		if set {
			on = append(on, name)
		}
	}
	if f.DropPairs > 0 {
		on = append(on, "drop-pairs="+strconv.FormatFloat(f.DropPairs, 'g', -1, 64))
	}
	slices.Sort(on)
	return strings.Join(on, ",")
}

// FaultNames lists the faults ParseFaults knows, for help texts.
const FaultNames = "corrupt-slivers, bad-symbols, bad-signature, drop-pairs=PERCENT, lazy-challenge"

// ParseFaults reads a comma-separated list of fault names.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	for _, item := range strings.Split(s, ",") {
		name, value, hasValue := strings.Cut(strings.TrimSpace(item), "=")
		if hasValue != (name == "drop-pairs") {
			return Faults{}, fmt.Errorf("storage: fault %q: only drop-pairs takes a value (%s)", item, FaultNames)
		}
		switch name {
		case "":
		case "corrupt-slivers":
			f.CorruptSlivers = true
		case "bad-symbols":
			f.BadSymbols = true
		case "bad-signature":
			f.BadSignature = true
		case "lazy-challenge":
			f.LazyChallenge = true
		case "drop-pairs":
			p, err := strconv.ParseFloat(value, 64)
			if err != nil || p <= 0 || p > 100 {
				return Faults{}, fmt.Errorf("storage: drop-pairs=%q: want a percentage in (0, 100]", value)
			}
			f.DropPairs = p
		default:
			return Faults{}, fmt.Errorf("storage: unknown fault %q (%s)", name, FaultNames)
		}
	}
	return f, nil
}

// dropper returns the DropPairs choice for a node: whether it drops its
// pair of a blob on a shard (nil when it drops none). The choice is a hash
// of (node, blob, shard), so it is the same on every call and restart.
func (f Faults) dropper(node shardmap.NodeID) func(shard uint32, id crypto.BlobID) bool {
	if f.DropPairs <= 0 {
		return nil
	}
	threshold := uint64(f.DropPairs / 100 * (1 << 32))
	return func(shard uint32, id crypto.BlobID) bool {
		h := sha256.New()
		h.Write([]byte("weft/fault/drop-pairs\x00"))
		h.Write([]byte(node))
		h.Write(id[:])
		h.Write(binary.BigEndian.AppendUint32(nil, shard))
		return uint64(binary.BigEndian.Uint32(h.Sum(nil))) < threshold
	}
}

// spoil flips one byte in place (the middle one, so it is inside a symbol).
func spoil(b []byte) {
	if len(b) > 0 {
		b[len(b)/2] ^= 0xff
	}
}
