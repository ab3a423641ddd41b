package coding

import (
	"testing"

	"github.com/klauspost/reedsolomon"

	"github.com/weftstore/weft/crypto"
)

// refMatrix is the whole n×n matrix M, built the slow and obvious way: every
// source column extended down, then every row of the result extended
// across, one symbol per shard. It is independent of Encode's fused
// pipeline (which extends the other way round and never keeps M), so the two
// agreeing checks both, and tests can tamper with M before hashing it.
type refMatrix struct {
	n, s int
	m    [][]byte // M[i][j] at i·n + j
}

func referenceMatrix(t testing.TB, c *Codec, blob []byte) *refMatrix {
	t.Helper()
	p := c.Params()
	s, err := p.SymbolSize(uint64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	n := p.Shards
	padded := make([]byte, p.NP*p.NS*s)
	copy(padded, blob)
	r := &refMatrix{n: n, s: s, m: make([][]byte, n*n)}
	for i := range n {
		for j := range n {
			r.m[i*n+j] = make([]byte, s)
		}
	}
	for i := range p.NP {
		for j := range p.NS {
			copy(r.m[i*n+j], padded[(i*p.NS+j)*s:])
		}
	}
	run := symbolRun{size: s}
	colCode := func(sh [][]byte) error { return c.col.Encode(sh, run) }
	rowCode := func(sh [][]byte) error { return c.row.Encode(sh, run) }
	if p.Encoding == Lanes16 { // not the lane layout under test
		colCode, rowCode = newElementwise(t, p.NP, n).Encode, newElementwise(t, p.NS, n).Encode
	}
	for j := range p.NS { // columns: nP → n with the column code
		col := make([][]byte, n)
		for i := range n {
			col[i] = r.m[i*n+j]
		}
		if err := colCode(col); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n { // rows: nS → n with the row code
		if err := rowCode(r.m[i*n : (i+1)*n]); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// elementwise is Lanes16's line code the slow and obvious way, from its
// definition: each 2-byte element position of the shards (one symbol
// each; laneElement) on its own, as the only element (lane 0: low byte 0,
// high byte 32) of a 64-byte Leopard block.
type elementwise struct {
	rs   reedsolomon.Encoder
	k, n int
}

func newElementwise(t testing.TB, k, n int) elementwise {
	rs, err := reedsolomon.New(k, n-k, reedsolomon.WithLeopardGF16(true))
	if err != nil {
		t.Fatal(err)
	}
	return elementwise{rs, k, n}
}

// laneElement returns where element t of a Lanes16 symbol of s bytes
// lies: in a whole 64-byte block, bytes k and k+32 of it; in the tail of
// r = s mod 64 bytes, bytes k and r/2+k of the tail.
func laneElement(s, t int) (lo, hi int) {
	whole := s / 64 * 64
	if 2*t < whole {
		block, k := t/32, t%32
		return 64*block + k, 64*block + k + 32
	}
	k, r := t-whole/2, s-whole
	return whole + k, whole + r/2 + k
}

func (e elementwise) Encode(shards [][]byte) error {
	rs := e.rs
	block := make([][]byte, e.n)
	for x := range block {
		block[x] = make([]byte, laneBlock)
	}
	s := len(shards[0])
	for el := 0; el < s/2; el++ {
		lo, hi := laneElement(s, el)
		for x := range e.n {
			clear(block[x])
			if x < e.k {
				block[x][0], block[x][32] = shards[x][lo], shards[x][hi]
			}
		}
		if err := rs.Encode(block); err != nil {
			return err
		}
		for x := e.k; x < e.n; x++ {
			shards[x][lo], shards[x][hi] = block[x][0], block[x][32]
		}
	}
	return nil
}

func (r *refMatrix) at(i, j int) []byte { return r.m[i*r.n+j] }

func (r *refMatrix) rowRoot(i int) crypto.Digest {
	leaves := make([]crypto.Digest, r.n)
	for j := range r.n {
		leaves[j] = crypto.LeafHash(r.at(i, j))
	}
	return crypto.NewMerkleTree(leaves).Root()
}

func (r *refMatrix) colRoot(j int) crypto.Digest {
	leaves := make([]crypto.Digest, r.n)
	for i := range r.n {
		leaves[i] = crypto.LeafHash(r.at(i, j))
	}
	return crypto.NewMerkleTree(leaves).Root()
}

// metadata hashes M as it is now (tampered or not).
func (r *refMatrix) metadata(enc Encoding, length uint64) *crypto.Metadata {
	meta := &crypto.Metadata{Encoding: uint8(enc), Shards: uint32(r.n), Length: length, Pairs: make([]crypto.PairHashes, r.n)}
	for p := range r.n {
		meta.Pairs[p] = crypto.PairHashes{Primary: r.rowRoot(p), Secondary: r.colRoot(r.n - 1 - p)}
	}
	return meta
}

// primary and secondary cut slivers out of M as it is now.
func (r *refMatrix) primary(p Params, i int) Sliver {
	var data []byte
	for j := range p.NS {
		data = append(data, r.at(i, j)...)
	}
	return Sliver{SliverRef: SliverRef{crypto.Primary, uint32(i)}, SymbolSize: r.s, Data: data}
}

func (r *refMatrix) secondary(p Params, j int) Sliver {
	var data []byte
	for i := range p.NP {
		data = append(data, r.at(i, j)...)
	}
	return Sliver{SliverRef: SliverRef{crypto.Secondary, uint32(j)}, SymbolSize: r.s, Data: data}
}

func TestEncodeMatchesReference(t *testing.T) {
	cases := []struct {
		n   int
		enc Encoding
	}{{4, RS8}, {5, RS8}, {7, RS8}, {10, RS8}, {31, RS8}, {4, Leopard16}, {7, Leopard16}, {13, Leopard16}, {300, Leopard16},
		{4, Lanes16}, {7, Lanes16}, {10, Lanes16}, {100, Lanes16}}
	for _, tc := range cases {
		c := mustCodec(t, tc.n, WithEncoding(tc.enc))
		p := c.Params()
		for _, size := range []int{0, 1, 2, 63, 64, 65, p.NS*7 + 3, p.NP*p.NS*2 + 1, p.NP*p.NS*64 + 1, 200_000} {
			if tc.n == 300 && size == 200_000 {
				continue // n² symbols of 64 B already make this case slow enough
			}
			blob := randomBlob(int64(size), size)
			enc, err := c.Encode(blob)
			if err != nil {
				t.Fatalf("n=%d %s size %d: %v", tc.n, tc.enc, size, err)
			}
			ref := referenceMatrix(t, c, blob)
			want := ref.metadata(tc.enc, uint64(size))
			if enc.ID != want.BlobID() {
				t.Fatalf("n=%d %s size %d: blob ID differs from the reference encoding", tc.n, tc.enc, size)
			}
			for pair, sp := range enc.Pairs {
				if string(sp.Primary.Data) != string(ref.primary(p, pair).Data) ||
					string(sp.Secondary.Data) != string(ref.secondary(p, tc.n-1-pair).Data) {
					t.Fatalf("n=%d %s size %d: pair %d differs from the reference", tc.n, tc.enc, size, pair)
				}
			}
		}
	}
}
