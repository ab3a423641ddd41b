package storage

import (
	"crypto/rand"
	"testing"

	"github.com/weftstore/weft/crypto"
)

func TestParseFaults(t *testing.T) {
	f, err := ParseFaults("bad-symbols, drop-pairs=5,lazy-challenge")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Faults{BadSymbols: true, DropPairs: 5, LazyChallenge: true}); f != want {
		t.Fatalf("parsed %+v, want %+v", f, want)
	}
	if s := f.String(); s != "bad-symbols,drop-pairs=5,lazy-challenge" {
		t.Fatalf("String() = %q", s)
	}
	if again, err := ParseFaults(f.String()); err != nil || again != f {
		t.Fatalf("round trip: %+v, %v", again, err)
	}
	for _, bad := range []string{"drop-pairs", "drop-pairs=0", "drop-pairs=101", "drop-pairs=x", "lazy-challenge=1", "nap"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Fatalf("ParseFaults(%q) accepted", bad)
		}
	}
	if f, err := ParseFaults(""); err != nil || f.Any() {
		t.Fatalf("empty: %+v, %v", f, err)
	}
}

// drop-pairs drops about the given share of (blob, shard) pairs, the same
// ones on every call, differently per node.
func TestDropPairsShare(t *testing.T) {
	drop := Faults{DropPairs: 5}.dropper("node-a")
	other := Faults{DropPairs: 5}.dropper("node-b")
	const blobs, shards = 2000, 10
	dropped, same := 0, 0
	for range blobs {
		var id crypto.BlobID
		rand.Read(id[:])
		for s := range uint32(shards) {
			if drop(s, id) {
				dropped++
				if !drop(s, id) {
					t.Fatal("the choice changed between calls")
				}
				if other(s, id) {
					same++
				}
			}
		}
	}
	share := float64(dropped) / (blobs * shards)
	if share < 0.04 || share > 0.06 {
		t.Fatalf("dropped %.3f of the pairs, want 0.05", share)
	}
	if same > dropped/5 {
		t.Fatalf("two nodes dropped %d of the same %d pairs", same, dropped)
	}
	if (Faults{}).dropper("node-a") != nil {
		t.Fatal("no fault, yet a dropper")
	}
}
