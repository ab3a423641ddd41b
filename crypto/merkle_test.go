package crypto

import (
	"crypto/sha256"
	"errors"
	"math/big"
	"strconv"
	"testing"
)

func leavesOf(n int) []Digest {
	out := make([]Digest, n)
	for i := range out {
		out[i] = LeafHash([]byte{byte(i), byte(i >> 8), 0xaa})
	}
	return out
}

// naiveRoot is DESIGN §3's definition written the obvious recursive way:
// pair up a level, pad an odd one with 32 zero bytes.
func naiveRoot(level []Digest) Digest {
	if len(level) == 1 {
		return level[0]
	}
	var next []Digest
	for i := 0; i < len(level); i += 2 {
		right := Digest{}
		if i+1 < len(level) {
			right = level[i+1]
		}
		buf := append([]byte{0x01}, level[i][:]...)
		buf = append(buf, right[:]...)
		next = append(next, sha256.Sum256(buf))
	}
	return naiveRoot(next)
}

func TestLeafAndInnerHashArePrefixed(t *testing.T) {
	data := []byte("symbol")
	if LeafHash(data) != sha256.Sum256(append([]byte{0x00}, data...)) {
		t.Fatal("leaf hash is not H(0x00 ‖ data)")
	}
	a, b := LeafHash([]byte("a")), LeafHash([]byte("b"))
	want := sha256.Sum256(append(append([]byte{0x01}, a[:]...), b[:]...))
	if InnerHash(a, b) != want {
		t.Fatal("inner hash is not H(0x01 ‖ left ‖ right)")
	}
	var lh LeafHasher
	for _, d := range [][]byte{nil, {1}, make([]byte, 5000)} {
		if lh.Sum(d) != LeafHash(d) {
			t.Fatal("reused LeafHasher differs")
		}
	}
}

func TestMerkleRootAndProofs(t *testing.T) {
	for n := 1; n <= 70; n++ {
		leaves := leavesOf(n)
		want := naiveRoot(leaves)
		if got := MerkleRoot(leaves, nil); got != want {
			t.Fatalf("n=%d: MerkleRoot differs from the definition", n)
		}
		if got := MerkleRoot(leaves, make([]Digest, n)); got != want {
			t.Fatalf("n=%d: MerkleRoot with scratch differs", n)
		}
		tree := NewMerkleTree(leaves)
		if tree.Root() != want {
			t.Fatalf("n=%d: tree root differs", n)
		}
		for i := range n {
			proof, err := tree.Proof(i)
			if err != nil {
				t.Fatal(err)
			}
			if len(proof.Siblings) != MerkleDepth(n) {
				t.Fatalf("n=%d: proof of %d siblings, depth %d", n, len(proof.Siblings), MerkleDepth(n))
			}
			if err := proof.Verify(want, leaves[i], n); err != nil {
				t.Fatalf("n=%d leaf %d: %v", n, i, err)
			}
			if n > 1 {
				if err := proof.Verify(want, leaves[(i+1)%n], n); !errors.Is(err, ErrProofMismatch) {
					t.Fatalf("n=%d leaf %d: proof accepts another leaf", n, i)
				}
				for s := range proof.Siblings {
					bad := MerkleProof{Index: proof.Index, Siblings: append([]Digest(nil), proof.Siblings...)}
					bad.Siblings[s][3] ^= 0x10
					if bad.Verify(want, leaves[i], n) == nil {
						t.Fatalf("n=%d leaf %d: flipped sibling %d accepted", n, i, s)
					}
				}
				moved := proof
				moved.Index = uint32((i + 1) % n)
				if moved.Verify(want, leaves[i], n) == nil {
					t.Fatalf("n=%d leaf %d: proof accepted at another index", n, i)
				}
			}
			if proof.Verify(want, leaves[i], n+1) == nil && MerkleDepth(n+1) != MerkleDepth(n) {
				t.Fatalf("n=%d: proof accepted for a tree of another depth", n)
			}
		}
		if _, err := tree.Proof(n); err == nil {
			t.Fatalf("n=%d: proof for a leaf past the end", n)
		}
	}
}

// Padding is the zero node, never a duplicate of the last node: [a b c]
// and [a b c c] must have different roots.
func TestOddLevelPaddedWithZeroNode(t *testing.T) {
	l := leavesOf(3)
	want := InnerHash(InnerHash(l[0], l[1]), InnerHash(l[2], Digest{}))
	if MerkleRoot(l, nil) != want {
		t.Fatal("odd level not padded with the zero node")
	}
	if MerkleRoot(l, nil) == MerkleRoot(append(l, l[2]), nil) {
		t.Fatal("duplicating the last leaf gives the same root")
	}
}

func TestMerkleDepth(t *testing.T) {
	for n, want := range map[int]int{1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 100: 7, 1000: 10, 1024: 10, 1025: 11} {
		if got := MerkleDepth(n); got != want {
			t.Errorf("MerkleDepth(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestMerkleProofEncoding(t *testing.T) {
	tree := NewMerkleTree(leavesOf(1000))
	proof, _ := tree.Proof(777)
	b, err := proof.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != proof.EncodedLen() || len(b) != 6+32*10 {
		t.Fatalf("proof encodes to %d bytes", len(b))
	}
	var got MerkleProof
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Verify(tree.Root(), tree.Leaf(777), 1000) != nil {
		t.Fatal("decoded proof does not verify")
	}
	for _, bad := range [][]byte{nil, b[:5], b[:len(b)-1], append(append([]byte(nil), b...), 0), append([]byte{2}, b[1:]...)} {
		if new(MerkleProof).UnmarshalBinary(bad) == nil {
			t.Fatalf("malformed proof of %d bytes accepted", len(bad))
		}
	}
}

func TestBlobIDLayout(t *testing.T) {
	var root Digest
	for i := range root {
		root[i] = byte(i)
	}
	// u8 encoding ‖ u32 n ‖ u64 length ‖ root, big-endian, written out by hand.
	raw := []byte{0x02, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05}
	raw = append(raw, root[:]...)
	if got, want := DeriveBlobID(2, 1000, 0x0102030405, root), BlobID(sha256.Sum256(raw)); got != want {
		t.Fatalf("DeriveBlobID = %x, want %x", got, want)
	}
}

func TestBlobIDText(t *testing.T) {
	id := BlobID(sha256.Sum256([]byte("x")))
	s := id.String()
	if len(s) != 43 {
		t.Fatalf("ID text of %d characters", len(s))
	}
	back, err := ParseBlobID(s)
	if err != nil || back != id {
		t.Fatalf("ParseBlobID(String()) = %v, %v", back, err)
	}
	// The last character carries 2 padding bits: any other value of them
	// is a second spelling of some ID and must be refused.
	alt := []byte(s)
	alt[42]++
	if _, err := ParseBlobID(string(alt)); err == nil {
		t.Fatal("non-canonical ID text accepted")
	}
	for _, bad := range []string{"", s[:42], s + "A", s[:42] + "=", "!" + s[1:]} {
		if _, err := ParseBlobID(bad); err == nil {
			t.Fatalf("ParseBlobID(%q) accepted", bad)
		}
	}
}

func TestBlobIDMod(t *testing.T) {
	for seed := range 50 {
		id := BlobID(sha256.Sum256([]byte{byte(seed)}))
		v := new(big.Int).SetBytes(id[:])
		for _, m := range []uint32{1, 4, 7, 100, 1000, 49155, 1<<32 - 1} {
			want := new(big.Int).Mod(v, big.NewInt(int64(m))).Uint64()
			if got := id.Mod(m); uint64(got) != want {
				t.Fatalf("Mod(%d) = %d, want %d", m, got, want)
			}
		}
	}
}

func BenchmarkLeafHash(b *testing.B) {
	for _, size := range []int{64, 320, 4096} {
		b.Run(fmtSize(size), func(b *testing.B) {
			data := make([]byte, size)
			var lh LeafHasher
			b.SetBytes(int64(size))
			for b.Loop() {
				lh.Sum(data)
			}
		})
	}
}

func BenchmarkInnerHash(b *testing.B) {
	l, r := LeafHash([]byte("l")), LeafHash([]byte("r"))
	for b.Loop() {
		l = InnerHash(l, r)
	}
}

func BenchmarkMerkleRoot(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmtSize(n)+"leaves", func(b *testing.B) {
			leaves := leavesOf(n)
			scratch := make([]Digest, n)
			for b.Loop() {
				MerkleRoot(leaves, scratch)
			}
		})
	}
}

func fmtSize(n int) string { return strconv.Itoa(n) }
