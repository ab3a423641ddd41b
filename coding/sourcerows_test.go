package coding

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// systematicReceived lays the nP systematic primaries of enc back to back
// in one buffer, as a reader receives them, each prepared for the check (PrepareCheck).
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
			c.PrepareCheck(&slivers[i])
		}
	}
	return slivers
}

// A decode whose slivers carry their share of the check returns the blob,
// from the systematic slivers or with rows rebuilt, and its check uses
// that work for exactly the rows the blob fills whole: a wrong source or
// parity hash, or wrong parity bytes, there fail the check; on the
// partial last row they change nothing.
//
// Every encoding: RS8 at n = 10 and 100, and both of n > 256 at n = 300
// (≈ 6 MB, the smallest blobs there with symbols PrepareCheck works for).
func TestPrepareCheckDecode(t *testing.T) {
	cases := []struct {
		n   int
		enc Encoding
	}{{10, RS8}, {100, RS8}, {300, Lanes16}, {300, Leopard16}}
	for _, tc := range cases {
		n := tc.n
		c := mustCodec(t, n, WithEncoding(tc.enc))
		p := c.Params()
		sizes := []int{1 << 20, 1<<20 + 12345}
		if n > MaxShardsRS8 {
			sizes = []int{p.NP * p.NS * 300, p.NP*p.NS*300 - 12345}
		}
		for _, size := range sizes {
			t.Run(fmt.Sprintf("n=%d/%s/%d", n, tc.enc, size), func(t *testing.T) {
				blob := randomBlob(int64(n+size), size)
				enc := mustEncode(t, c, blob)
				if enc.SymbolSize < minHashedSymbol {
					t.Fatalf("%d-byte symbols: below what PrepareCheck keeps hashes for", enc.SymbolSize)
				}
				rowLen := p.NS * enc.SymbolSize
				whole := min(p.NP, size/rowLen)
				slivers := systematicReceived(t, c, enc)
				known := c.knownSourceRows(slivers, enc.SymbolSize, uint64(size))
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
				c.PrepareCheck(&mixed[0]) // a parity primary: no hashes
				if mixed[0].source != nil {
					t.Fatal("PrepareCheck hashed a parity primary")
				}
				if got, err := c.Decode(enc.Metadata, mixed); err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("decode with a row rebuilt: %v", err)
				}

				// Wrong work on a whole row is used, and fails the check.
				s := enc.SymbolSize
				for name, spoil := range map[string]func(*sourceRow){
					"source hash": func(r *sourceRow) { r.leaves[3][0] ^= 1 },
					"parity hash": func(r *sourceRow) { r.leaves[p.NS+1][0] ^= 1 },
					"parity byte": func(r *sourceRow) { r.parity[s+7] ^= 1 },
				} {
					bad := append([]Sliver(nil), slivers...)
					bad[0] = spoiled(slivers[0], spoil)
					if _, err := c.Decode(enc.Metadata, bad); err == nil {
						t.Fatalf("a wrong %s on row 0 went unnoticed: the check did not use it", name)
					}
					if whole < p.NP { // on the partial last row it is not used
						last := append([]Sliver(nil), slivers...)
						last[whole] = spoiled(slivers[whole], spoil)
						if got, err := c.Decode(enc.Metadata, last); err != nil || !bytes.Equal(got, blob) {
							t.Fatalf("a %s on the partial last row was used: %v", name, err)
						}
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
func TestPrepareCheckNonZeroPaddingInconsistent(t *testing.T) {
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

// PrepareCheck leaves alone what the check would not use: secondaries,
// slivers of the wrong shape, symbols too small to be worth the memory.
func TestPrepareCheckSkips(t *testing.T) {
	c := mustCodec(t, 10)
	enc := mustEncode(t, c, randomBlob(1, 1<<20))
	sec := enc.Pairs[0].Secondary
	c.PrepareCheck(&sec)
	short := enc.Pairs[0].Primary
	short.Data = short.Data[:len(short.Data)-1]
	c.PrepareCheck(&short)
	small := mustEncode(t, c, randomBlob(2, 1000)).Pairs[0].Primary
	c.PrepareCheck(&small)
	for name, sl := range map[string]Sliver{"secondary": sec, "short": short, "small symbols": small} {
		if sl.source != nil {
			t.Errorf("%s sliver hashed", name)
		}
	}
}

// spoiled returns sl with a copy of its PrepareCheck work changed by spoil.
func spoiled(sl Sliver, spoil func(*sourceRow)) Sliver {
	row := &sourceRow{leaves: slices.Clone(sl.source.leaves), parity: slices.Clone(sl.source.parity)}
	spoil(row)
	sl.source = row
	return sl
}
