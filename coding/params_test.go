package coding

import (
	"errors"
	"slices"
	"testing"

	"github.com/klauspost/reedsolomon"

	"github.com/weftstore/weft/crypto"
)

func TestParamsMatchDesignTable(t *testing.T) {
	// DESIGN §3's table.
	for _, tc := range []struct{ n, f, np, ns, quorum int }{
		{4, 1, 2, 3, 3}, {7, 2, 3, 5, 5}, {100, 33, 34, 67, 67}, {1000, 333, 334, 667, 667},
	} {
		p, err := NewParams(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if p.F != tc.f || p.NP != tc.np || p.NS != tc.ns || p.WriteQuorum() != tc.quorum {
			t.Errorf("n=%d: got f=%d nP=%d nS=%d quorum=%d, want %d %d %d %d",
				tc.n, p.F, p.NP, p.NS, p.WriteQuorum(), tc.f, tc.np, tc.ns, tc.quorum)
		}
		if 3*p.WriteQuorum() < 2*tc.n+1 || 3*(p.WriteQuorum()-1) >= 2*tc.n+1 {
			t.Errorf("n=%d: quorum %d is not the smallest w with 3w ≥ 2n+1", tc.n, p.WriteQuorum())
		}
	}
	for n := MinShards; n <= 400; n++ {
		p, err := NewParams(n)
		if err != nil {
			t.Fatal(err)
		}
		if p.NP != n-2*p.F || p.NS != n-p.F || p.F != (n-1)/3 {
			t.Fatalf("n=%d: %+v", n, p)
		}
		if want := map[bool]Encoding{true: RS8, false: Lanes16}[n <= 256]; p.Encoding != want {
			t.Fatalf("n=%d: default encoding %s, want %s", n, p.Encoding, want)
		}
		// The default first; above 256 shards leopard16 too (the default
		// there before lanes16: its blobs still read).
		if want := map[bool][]Encoding{true: {RS8}, false: {Lanes16, Leopard16}}[n <= 256]; !slices.Equal(Encodings(n), want) {
			t.Fatalf("n=%d: encodings %v, want %v", n, Encodings(n), want)
		}
	}
}

func TestParamsErrors(t *testing.T) {
	for _, tc := range []struct {
		n    int
		opts []Option
	}{
		{3, nil}, {0, nil}, {-1, nil},
		{257, []Option{WithEncoding(RS8)}},
		{MaxShards + 1, nil},
		{10, []Option{WithEncoding(Encoding(9))}},
	} {
		if _, err := NewParams(tc.n, tc.opts...); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("NewParams(%d): err = %v, want ErrInvalidParams", tc.n, err)
		}
		if _, err := New(tc.n, tc.opts...); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("New(%d): err = %v, want ErrInvalidParams", tc.n, err)
		}
	}
	p, _ := NewParams(10, WithMaxBlobLength(1000))
	if _, err := p.SymbolSize(1000); err != nil {
		t.Errorf("blob at the maximum: %v", err)
	}
	if _, err := p.SymbolSize(1001); !errors.Is(err, ErrBlobTooLarge) {
		t.Errorf("blob over the maximum: err = %v", err)
	}
	c := mustCodec(t, 10, WithMaxBlobLength(1000))
	if _, err := c.Encode(make([]byte, 1001)); !errors.Is(err, ErrBlobTooLarge) {
		t.Errorf("Encode over the maximum: err = %v", err)
	}
}

// MaxShards must be exactly the largest n whose two Leopard codes the
// library builds.
func TestMaxShardsIsTheCodecLimit(t *testing.T) {
	fits := func(n int) bool {
		f := (n - 1) / 3
		for _, k := range []int{n - 2*f, n - f} {
			if _, err := reedsolomon.New(k, n-k, reedsolomon.WithLeopardGF16(true)); err != nil {
				return false
			}
		}
		return true
	}
	if !fits(MaxShards) {
		t.Fatalf("the codec refuses n = MaxShards = %d", MaxShards)
	}
	if fits(MaxShards + 1) {
		t.Fatalf("the codec accepts n = %d > MaxShards", MaxShards+1)
	}
	if _, err := New(MaxShards); err != nil {
		t.Fatalf("New(MaxShards): %v", err)
	}
}

func TestSymbolSize(t *testing.T) {
	for _, enc := range []Encoding{RS8, Leopard16} {
		p, _ := NewParams(10, WithEncoding(enc))
		align := uint64(enc.symbolAlignment())
		cells := uint64(p.NP * p.NS)
		for _, length := range []uint64{0, 1, cells - 1, cells, cells + 1, cells * align, cells*align + 1, 1 << 20} {
			s, err := p.SymbolSize(length)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(s)%align != 0 || uint64(s)*cells < length || s < 1 {
				t.Fatalf("%s length %d: symbol size %d does not fit or align", enc, length, s)
			}
			if uint64(s) > align && uint64(s-int(align))*cells >= length {
				t.Fatalf("%s length %d: symbol size %d is not the smallest", enc, length, s)
			}
		}
	}
}

func TestPairShardMapping(t *testing.T) {
	for _, n := range []int{4, 7, 100, 1000} {
		p, _ := NewParams(n)
		for seed := range 20 {
			var id crypto.BlobID
			copy(id[:], randomBlob(int64(seed), 32))
			seen := make([]bool, n)
			for pair := range n {
				shard := p.ShardForPair(pair, id)
				if seen[shard] {
					t.Fatalf("n=%d: two pairs on shard %d", n, shard)
				}
				seen[shard] = true
				if back := p.PairForShard(shard, id); back != pair {
					t.Fatalf("n=%d: PairForShard(ShardForPair(%d)) = %d", n, pair, back)
				}
				if want := (pair + int(id.Mod(uint32(n)))) % n; shard != want {
					t.Fatalf("n=%d: pair %d on shard %d, want %d", n, pair, shard, want)
				}
			}
		}
	}
}

// The encoding does not depend on how many workers compute it.
func TestWorkersDoNotChangeTheEncoding(t *testing.T) {
	blob := randomBlob(21, 50_000)
	one := mustEncode(t, mustCodec(t, 31, WithWorkers(1)), blob)
	many := mustEncode(t, mustCodec(t, 31, WithWorkers(3)), blob)
	if one.ID != many.ID {
		t.Fatal("1 and 3 workers give different blob IDs")
	}
	if _, err := New(31, WithWorkers(0)); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("0 workers: err = %v", err)
	}
}
