package storage

import (
	"fmt"
	"slices"
	"strings"
)

// Faults make a node lie, so that tests can check that everyone else
// rejects its data: it is the real node with its answers spoiled, not a
// mock. Enabled only by `weft node --inject-faults` (hidden) or in tests.
type Faults struct {
	CorruptSlivers bool // flip a byte of every sliver served
	BadSymbols     bool // flip a byte of every recovery symbol served
	BadSignature   bool // sign confirmations of another message
}

// Any reports whether any fault is on.
func (f Faults) Any() bool { return f.CorruptSlivers || f.BadSymbols || f.BadSignature }

func (f Faults) String() string {
	var on []string
	for name, set := range map[string]bool{"corrupt-slivers": f.CorruptSlivers, "bad-symbols": f.BadSymbols, "bad-signature": f.BadSignature} {
		if set {
			on = append(on, name)
		}
	}
	slices.Sort(on)
	return strings.Join(on, ",")
}

// ParseFaults reads a comma-separated list of fault names.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "corrupt-slivers":
			f.CorruptSlivers = true
		case "bad-symbols":
			f.BadSymbols = true
		case "bad-signature":
			f.BadSignature = true
		default:
			return Faults{}, fmt.Errorf("storage: unknown fault %q (corrupt-slivers, bad-symbols, bad-signature)", name)
		}
	}
	return f, nil
}

// spoil flips one byte in place (the middle one, so it is inside a symbol).
func spoil(b []byte) {
	if len(b) > 0 {
		b[len(b)/2] ^= 0xff
	}
}
