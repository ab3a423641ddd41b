package coding

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// roundTripSizes are the blob sizes the acceptance asks for: empty, one
// byte, one source row of minimum-size symbols ±1, the whole minimum-size
// source matrix ±1 (where the symbol size steps up), and several MiB.
// Above 300 shards, where every encode hashes n² symbols, only the sizes
// the acceptance names are run.
func roundTripSizes(p Params) []int {
	align := p.Encoding.symbolAlignment()
	row := p.NS * align
	matrix := p.NP * p.NS * align
	several := 3<<20 + 12345
	if p.Shards > 300 {
		return []int{0, 1, row - 1, row + 1, several}
	}
	return []int{0, 1, row - 1, row, row + 1, matrix - 1, matrix, matrix + 1, several}
}

// The default encoding at each n, and leopard16 above 256 shards too (the
// default there before lanes16: its blobs still read and may still be
// stored).
func TestRoundTrip(t *testing.T) {
	type roundTripCase struct {
		name string
		n    int
		opts []Option
	}
	var cases []roundTripCase
	for _, n := range []int{4, 5, 6, 7, 10, 31, 100, 301, 1000} {
		cases = append(cases, roundTripCase{fmt.Sprintf("n=%d", n), n, nil})
	}
	cases = append(cases, roundTripCase{"n=301/leopard16", 301, []Option{WithEncoding(Leopard16)}})
	for _, tc := range cases {
		n := tc.n
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && n >= 301 {
				t.Skip("large n in -short mode")
			}
			t.Parallel()
			c := mustCodec(t, n, tc.opts...)
			rng := testRand(t)
			for _, size := range roundTripSizes(c.Params()) {
				blob := randomBlob(int64(n*1000+size), size)
				enc := mustEncode(t, c, blob)
				checkRoundTrip(t, c, enc, blob, rng.IntN(1<<30))
			}
		})
	}
}

// The Leopard codec must work at small n too (a network may choose it).
func TestRoundTripLeopardSmallN(t *testing.T) {
	for _, n := range []int{4, 7, 10, 31} {
		c := mustCodec(t, n, WithEncoding(Leopard16))
		for _, size := range roundTripSizes(c.Params()) {
			blob := randomBlob(int64(size), size)
			checkRoundTrip(t, c, mustEncode(t, c, blob), blob, size)
		}
	}
}

func checkRoundTrip(t *testing.T, c *Codec, enc *Encoded, blob []byte, seed int) {
	t.Helper()
	p := c.Params()
	n := p.Shards
	if err := enc.Metadata.CheckBlobID(enc.ID); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	// Every decode re-encodes (the consistent-read check): keep large n to
	// one random set per axis.
	primaryTrials, secondaryTrials := 3, 2
	if n > 300 {
		primaryTrials, secondaryTrials = 1, 1
	}
	// Exactly nP primaries, chosen at random over systematic and parity.
	for trial := range primaryTrials {
		var sl []Sliver
		for _, i := range pick(rng, n, p.NP) {
			sl = append(sl, enc.Pairs[i].Primary)
		}
		if trial == 1 { // and once only parity rows, so decoding has real work
			sl = sl[:0]
			for i := n - p.NP; i < n; i++ {
				sl = append(sl, enc.Pairs[i].Primary)
			}
		}
		got, err := c.Decode(enc.Metadata, sl)
		if err != nil {
			t.Fatalf("n=%d size %d: decode from primaries: %v", n, len(blob), err)
		}
		if !bytes.Equal(got, blob) {
			t.Fatalf("n=%d size %d: primaries decode to different bytes", n, len(blob))
		}
		// nP−1 is not enough.
		if _, err := c.Decode(enc.Metadata, sl[:p.NP-1]); !errors.Is(err, ErrNotEnoughSlivers) {
			t.Fatalf("n=%d: decode from nP−1 primaries: err = %v", n, err)
		}
	}
	for trial := range secondaryTrials {
		var sl []Sliver
		for _, j := range pick(rng, n, p.NS) {
			sl = append(sl, sliverOf(enc, SliverRef{crypto.Secondary, uint32(j)}))
		}
		if trial == 1 {
			sl = sl[:0]
			for j := n - p.NS; j < n; j++ {
				sl = append(sl, sliverOf(enc, SliverRef{crypto.Secondary, uint32(j)}))
			}
		}
		got, err := c.Decode(enc.Metadata, sl)
		if err != nil {
			t.Fatalf("n=%d size %d: decode from secondaries: %v", n, len(blob), err)
		}
		if !bytes.Equal(got, blob) {
			t.Fatalf("n=%d size %d: secondaries decode to different bytes", n, len(blob))
		}
		var nse *NotEnoughSliversError
		if _, err := c.Decode(enc.Metadata, sl[:p.NS-1]); !errors.As(err, &nse) || nse.NeedSecondary != p.NS {
			t.Fatalf("n=%d: decode from nS−1 secondaries: err = %v", n, err)
		}
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	c := mustCodec(t, 7)
	blob := randomBlob(1, 5000)
	enc := mustEncode(t, c, blob)
	p := c.Params()
	primaries := func() []Sliver {
		var sl []Sliver
		for i := range p.NP {
			sl = append(sl, enc.Pairs[i].Primary)
		}
		return sl
	}
	// A corrupted sliver is named.
	sl := primaries()
	bad := append([]byte(nil), sl[1].Data...)
	bad[17] ^= 0x40
	sl[1].Data = bad
	var mismatch *crypto.SliverMismatchError
	if _, err := c.Decode(enc.Metadata, sl); !errors.As(err, &mismatch) || mismatch.Index != 1 || mismatch.Axis != crypto.Primary {
		t.Fatalf("corrupted primary 1: err = %v", err)
	}
	// Duplicates, wrong sizes, wrong metadata.
	sl = primaries()
	sl[1] = sl[0]
	if _, err := c.Decode(enc.Metadata, sl); err == nil {
		t.Fatal("duplicate sliver accepted")
	}
	sl = primaries()
	sl[0].Data = sl[0].Data[:len(sl[0].Data)-sl[0].SymbolSize]
	if _, err := c.Decode(enc.Metadata, sl); err == nil {
		t.Fatal("short sliver accepted")
	}
	other := mustCodec(t, 10)
	if _, err := other.Decode(enc.Metadata, primaries()); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("metadata of another n: err = %v", err)
	}
}

// Systematic primaries received back to back into one buffer decode to
// that buffer itself, with the same check: a corrupted one is still named.
func TestDecodeSystematicInPlace(t *testing.T) {
	for _, n := range []int{4, 10, 100} {
		c := mustCodec(t, n)
		p := c.Params()
		blob := randomBlob(int64(n), 50_000+n)
		enc := mustEncode(t, c, blob)
		s, _ := p.SymbolSize(uint64(len(blob)))
		size, total := p.SystematicLayout(s)
		buf := make([]byte, total)
		slivers := make([]Sliver, p.NP)
		for _, pair := range enc.Pairs {
			if i := int(pair.Primary.Index); i < p.NP {
				copy(buf[i*size:], pair.Primary.Data)
				slivers[i] = Sliver{SliverRef: pair.Primary.SliverRef, SymbolSize: s, Data: buf[i*size : (i+1)*size]}
			}
		}
		got, err := c.Decode(enc.Metadata, slivers)
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("n=%d: in-place decode: %v", n, err)
		}
		if &got[0] != &buf[0] {
			t.Fatalf("n=%d: the blob was copied", n)
		}
		buf[size+17] ^= 0x40 // inside sliver 1
		var mismatch *crypto.SliverMismatchError
		if _, err := c.Decode(enc.Metadata, slivers); !errors.As(err, &mismatch) || mismatch.Index != 1 {
			t.Fatalf("n=%d: corrupted sliver 1 in place: err = %v", n, err)
		}
	}
}
