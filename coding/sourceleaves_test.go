package coding

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// systematicReceived lays the nP systematic primaries of enc back to back
// in one buffer, as a reader receives them, each hashed (HashSource).
func systematicReceived(t *testing.T, c *Codec, enc *Encoded) []Sliver {
	t.Helper()
	p := c.Params()
	size, total := p.SystematicLayout(enc.SymbolSize)
	buf := make([]byte, total)
	slivers := make([]Sliver, p.NP)
	for _, pair := range enc.Pairs {
		if i := int(pair.Primary.Index); i < p.NP {
			copy(buf[i*size:], pair.Primary.Data)
			slivers[i] = Sliver{SliverRef: pair.Primary.SliverRef, SymbolSize: enc.SymbolSize, Data: buf[i*size : (i+1)*size]}
			c.HashSource(&slivers[i])
		}
	}
	return slivers
}

// A decode whose slivers carry their source leaf hashes returns the blob,
// from the systematic slivers or with rows rebuilt, and its check uses
// those hashes for exactly the rows the blob fills whole: a wrong hash
// there fails the check, one on the partial last row changes nothing.
func TestHashSourceDecode(t *testing.T) {
	for _, n := range []int{10, 100} {
		c := mustCodec(t, n)
		p := c.Params()
		for _, size := range []int{1 << 20, 1<<20 + 12345} {
			t.Run(fmt.Sprintf("n=%d/%d", n, size), func(t *testing.T) {
				blob := randomBlob(int64(n+size), size)
				enc := mustEncode(t, c, blob)
				if enc.SymbolSize < minHashedSymbol {
					t.Fatalf("%d-byte symbols: below what HashSource keeps hashes for", enc.SymbolSize)
				}
				rowLen := p.NS * enc.SymbolSize
				whole := min(p.NP, size/rowLen)
				slivers := systematicReceived(t, c, enc)
				known := c.knownSourceLeaves(slivers, enc.SymbolSize, uint64(size))
				used := 0
				for _, k := range known {
					if k != nil {
						used++
					}
				}
				if used != whole {
					t.Fatalf("%d rows' hashes taken, want the %d rows the blob fills whole", used, whole)
				}
				got, err := c.Decode(enc.Metadata, slivers)
				if err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("systematic decode with hashes: %v", err)
				}

				// Row 0 lost: a parity primary stands in and rows are rebuilt.
				mixed := append([]Sliver{enc.Pairs[p.NP].Primary}, slivers[1:]...)
				c.HashSource(&mixed[0]) // a parity primary: no hashes
				if mixed[0].sourceLeaves != nil {
					t.Fatal("HashSource hashed a parity primary")
				}
				if got, err := c.Decode(enc.Metadata, mixed); err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("decode with a row rebuilt: %v", err)
				}

				// A wrong hash on a whole row is used, and fails the check.
				bad := append([]Sliver(nil), slivers...)
				bad[0].sourceLeaves = append([]crypto.Digest(nil), slivers[0].sourceLeaves...)
				bad[0].sourceLeaves[3][0] ^= 1
				if _, err := c.Decode(enc.Metadata, bad); err == nil {
					t.Fatal("a wrong source hash on row 0 went unnoticed: the check did not use it")
				}
				if whole < p.NP { // on the partial last row it is not used
					last := append([]Sliver(nil), slivers...)
					last[whole].sourceLeaves = append([]crypto.Digest(nil), slivers[whole].sourceLeaves...)
					last[whole].sourceLeaves[0][0] ^= 1
					if got, err := c.Decode(enc.Metadata, last); err != nil || !bytes.Equal(got, blob) {
						t.Fatalf("a hash on the partial last row was used: %v", err)
					}
				}
			})
		}
	}
}

// A writer whose slivers hold bytes past the blob's length (non-zero
// padding) published a blob no reader may return, hashed slivers or not:
// the check codes the bytes it returns, zero-padded, whatever hashes it
// was handed.
func TestHashSourceNonZeroPaddingInconsistent(t *testing.T) {
	c := mustCodec(t, 10)
	p := c.Params()
	longer := randomBlob(7, p.NP*p.NS*40000) // every row whole, 40000-byte symbols
	length := uint64(len(longer) - 20)       // the same symbol size, the last row 20 bytes short
	enc := mustEncode(t, c, longer)
	if s, _ := c.Params().SymbolSize(length); s != enc.SymbolSize {
		t.Fatalf("symbol size %d for %d bytes, %d for %d", s, length, enc.SymbolSize, len(longer))
	}
	meta := *enc.Metadata
	meta.Length = length // its padding is longer's last 20 bytes
	got, err := c.Decode(&meta, systematicReceived(t, c, enc))
	if got != nil || !errors.Is(err, ErrInconsistentBlob) {
		t.Fatalf("Decode returned %d bytes, err = %v; want an inconsistent blob", len(got), err)
	}
}

// HashSource leaves alone what the check would not use: secondaries,
// slivers of the wrong shape, symbols too small to be worth the memory.
func TestHashSourceSkips(t *testing.T) {
	c := mustCodec(t, 10)
	enc := mustEncode(t, c, randomBlob(1, 1<<20))
	sec := enc.Pairs[0].Secondary
	c.HashSource(&sec)
	short := enc.Pairs[0].Primary
	short.Data = short.Data[:len(short.Data)-1]
	c.HashSource(&short)
	small := mustEncode(t, c, randomBlob(2, 1000)).Pairs[0].Primary
	c.HashSource(&small)
	for name, sl := range map[string]Sliver{"secondary": sec, "short": short, "small symbols": small} {
		if sl.sourceLeaves != nil {
			t.Errorf("%s sliver hashed", name)
		}
	}
}
