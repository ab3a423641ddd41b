package challenge

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

const testShards = 10

// network is a handful of real encoded blobs and one node's holdings.
type network struct {
	codec  *coding.Codec
	blobs  map[crypto.BlobID]*coding.Encoded
	order  []crypto.BlobID // certification order: the eligible set
	shards []uint32        // shards the challenged node holds
	sk     *crypto.SecretKey
}

func newNetwork(t testing.TB, blobs int) *network {
	t.Helper()
	c, err := coding.New(testShards)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &network{codec: c, blobs: map[crypto.BlobID]*coding.Encoded{}, shards: []uint32{7, 2, 4}, sk: sk}
	for i := range blobs {
		blob := make([]byte, 1000+37*i)
		rand.Read(blob)
		enc, err := c.Encode(blob)
		if err != nil {
			t.Fatal(err)
		}
		w.blobs[enc.ID] = enc
		w.order = append(w.order, enc.ID)
	}
	return w
}

func (w *network) lookup(seq uint64) (crypto.BlobID, bool) {
	if seq >= uint64(len(w.order)) {
		return crypto.BlobID{}, false
	}
	return w.order[seq], true
}

func (w *network) next(seq uint64) (uint64, crypto.BlobID, bool) {
	if seq >= uint64(len(w.order)) {
		return 0, crypto.BlobID{}, false
	}
	return seq, w.order[seq], true
}

func (w *network) metadata(id crypto.BlobID) (*crypto.Metadata, error) {
	enc, ok := w.blobs[id]
	if !ok {
		return nil, fmt.Errorf("unknown blob %s", id)
	}
	return enc.Metadata, nil
}

// extend is an honest node: the position's sliver from the encoded blob.
func (w *network) extend(p Position) (*coding.ExtendedSliver, error) {
	enc := w.blobs[p.Blob]
	pair := enc.PairOnShard(w.codec.Params(), int(p.Shard))
	sl := pair.Primary
	if p.Axis == crypto.Secondary {
		sl = pair.Secondary
	}
	if sl.Index != p.Sliver {
		return nil, fmt.Errorf("shard %d stores %s, position names sliver %d", p.Shard, sl.SliverRef, p.Sliver)
	}
	return w.codec.Extend(enc.Metadata, sl)
}

func (w *network) respond(t testing.TB, epoch, round uint64, positions []Position) *Response {
	t.Helper()
	items, err := Prove(positions, w.extend)
	if err != nil {
		t.Fatal(err)
	}
	r := &Response{Epoch: epoch, Round: round, Node: "node-a", Items: items}
	if err := r.Sign(w.sk); err != nil {
		t.Fatal(err)
	}
	return r
}

// sameSymbolOf is the symbol at p's sliver and position, but of another
// blob: right shape, right position, wrong data.
func (w *network) sameSymbolOf(t testing.TB, id crypto.BlobID, p Position) coding.RecoverySymbol {
	t.Helper()
	enc := w.blobs[id]
	pair := enc.Pairs[crypto.PairIndex(p.Axis, p.Sliver, testShards)]
	sl := pair.Primary
	if p.Axis == crypto.Secondary {
		sl = pair.Secondary
	}
	ext, err := w.codec.Extend(enc.Metadata, sl)
	if err != nil {
		t.Fatal(err)
	}
	sym, err := ext.Symbol(int(p.Symbol), true)
	if err != nil {
		t.Fatal(err)
	}
	return sym
}

func seedFor(i uint64) Seed {
	var fresh [32]byte
	fresh[0] = byte(i)
	return DeriveSeed(3, i, 100+i, fresh)
}

func TestHonestResponseVerifies(t *testing.T) {
	w := newNetwork(t, 12)
	seed := seedFor(1)
	blobs := SampleBlobs(seed, 5, uint64(len(w.order)), w.lookup, w.next)
	if len(blobs) != 5 {
		t.Fatalf("sampled %d blobs of 12, want 5", len(blobs))
	}
	want := Positions(seed, blobs, w.shards, testShards, 0)
	if len(want) != 5*len(w.shards) {
		t.Fatalf("%d positions", len(want))
	}
	r := w.respond(t, 3, 1, want)
	raw, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Response
	if err := got.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if err := Verify(&got, 3, 1, "node-a", w.sk.PublicKey(), want, w.metadata); err != nil {
		t.Fatalf("honest response: %v", err)
	}
}

// Every way a response can be wrong fails, with evidence naming the item.
func TestBadResponsesFail(t *testing.T) {
	w := newNetwork(t, 12)
	seed := seedFor(2)
	blobs := SampleBlobs(seed, 4, uint64(len(w.order)), w.lookup, w.next)
	want := Positions(seed, blobs, w.shards, testShards, 0)
	pk := w.sk.PublicKey()
	other := w.order[0]
	for _, id := range w.order {
		if id != want[0].Blob {
			other = id
			break
		}
	}
	cases := []struct {
		name   string
		spoil  func(r *Response)
		resign bool
		want   error
	}{
		{"symbol from another blob", func(r *Response) {
			r.Items[0].Symbol = w.sameSymbolOf(t, other, want[0])
		}, true, ErrBadSymbol},
		{"another blob's item", func(r *Response) { r.Items[1].Blob = other }, true, ErrWrongPositions},
		{"corrupted symbol", func(r *Response) {
			r.Items[2].Symbol.Data = bytes.Clone(r.Items[2].Symbol.Data)
			r.Items[2].Symbol.Data[0] ^= 1
		}, true, ErrBadSymbol},
		{"another symbol of the sliver", func(r *Response) {
			p := want[0]
			p.Symbol = (p.Symbol + 1) % testShards
			items, _ := Prove([]Position{p}, w.extend)
			r.Items[0] = items[0]
		}, true, ErrWrongPositions},
		{"stale proof (another blob's path)", func(r *Response) {
			r.Items[0].Symbol.Proof = w.sameSymbolOf(t, other, want[0]).Proof
		}, true, ErrBadSymbol},
		{"an item left out", func(r *Response) { r.Items = r.Items[1:] }, true, ErrWrongPositions},
		{"another round", func(r *Response) { r.Round = 2 }, true, ErrWrongRound},
		{"another epoch", func(r *Response) { r.Epoch = 4 }, true, ErrWrongRound},
		{"content changed after signing", func(r *Response) { r.Items[0], r.Items[1] = r.Items[1], r.Items[0] }, false, ErrBadSignature},
		{"another node's signature", func(r *Response) {
			sk, _ := crypto.GenerateKey(nil)
			r.Sign(sk)
		}, false, ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := w.respond(t, 3, 1, want)
			tc.spoil(r)
			if tc.resign {
				if err := r.Sign(w.sk); err != nil {
					t.Fatal(err)
				}
			}
			err := Verify(r, 3, 1, "node-a", pk, want, w.metadata)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("%v is not a *Failure", err)
			}
		})
	}
	// A response for one round is not an answer to the next, even if the
	// node had it signed before: the positions differ.
	next := Positions(seedFor(3), SampleBlobs(seedFor(3), 4, uint64(len(w.order)), w.lookup, w.next), w.shards, testShards, 0)
	r := w.respond(t, 3, 1, want)
	r.Round = 3
	r.Sign(w.sk)
	if err := Verify(r, 3, 3, "node-a", pk, next, w.metadata); err == nil {
		t.Fatal("round 1's items verified as round 3's answer")
	}
}

// The seed comes from the leader's fresh value: the same committed state
// (epoch, round, index) gives unrelated seeds and positions for different
// fresh values, so nothing known before the round's command commits tells
// a node what it will have to prove.
func TestSeedIsNotAFunctionOfPriorState(t *testing.T) {
	w := newNetwork(t, 40)
	var a, b [32]byte
	rand.Read(a[:])
	rand.Read(b[:])
	sa, sb := DeriveSeed(5, 9, 1234, a), DeriveSeed(5, 9, 1234, b)
	if sa == sb {
		t.Fatal("two fresh values gave one seed")
	}
	pa := Positions(sa, SampleBlobs(sa, 10, 40, w.lookup, w.next), w.shards, testShards, 0)
	pb := Positions(sb, SampleBlobs(sb, 10, 40, w.lookup, w.next), w.shards, testShards, 0)
	same := 0
	for i := range pa {
		if pa[i] == pb[i] {
			same++
		}
	}
	if same > len(pa)/4 {
		t.Fatalf("%d of %d positions equal under different fresh values", same, len(pa))
	}
	// And the seed is deterministic given its inputs (every replica agrees).
	if DeriveSeed(5, 9, 1234, a) != sa {
		t.Fatal("seed not deterministic")
	}
}

// Draws are uniform: over many seeds every blob of the set is sampled
// about equally often, also when positions have left the set.
func TestSampleBlobsIsUniform(t *testing.T) {
	const count, k, rounds = 50, 5, 4000
	gone := map[uint64]bool{}
	for i := uint64(0); i < count; i += 3 {
		gone[i] = true // a third expired
	}
	lookup := func(seq uint64) (crypto.BlobID, bool) {
		var id crypto.BlobID
		id[0] = byte(seq)
		return id, seq < count && !gone[seq]
	}
	next := func(seq uint64) (uint64, crypto.BlobID, bool) {
		for ; seq < count; seq++ {
			if id, ok := lookup(seq); ok {
				return seq, id, true
			}
		}
		return 0, crypto.BlobID{}, false
	}
	hits := map[byte]int{}
	for r := range uint64(rounds) {
		got := SampleBlobs(seedFor(r), k, count, lookup, next)
		if len(got) != k {
			t.Fatalf("round %d: %d blobs", r, len(got))
		}
		for _, id := range got {
			if gone[uint64(id[0])] {
				t.Fatalf("sampled expired position %d", id[0])
			}
			hits[id[0]]++
		}
	}
	live := count - len(gone)
	mean := float64(rounds*k) / float64(live)
	for id, h := range hits {
		if float64(h) < 0.75*mean || float64(h) > 1.25*mean {
			t.Errorf("blob %d sampled %d times, mean %.0f", id, h, mean)
		}
	}
	if len(hits) != live {
		t.Fatalf("%d of %d live blobs ever sampled", len(hits), live)
	}
	if got := SampleBlobs(seedFor(1), k, 0, lookup, next); len(got) != 0 {
		t.Fatalf("empty set gave %d blobs", len(got))
	}
}

// A node that deleted 5% of its slivers (chosen at random per run) is
// caught within two rounds of DefaultSamples blobs in at least 99% of runs:
// a position on a deleted sliver cannot be proven.
func TestDeletingFivePercentIsCaughtWithinTwoRounds(t *testing.T) {
	const blobs, shards, runs = 2000, 8, 1000
	order := make([]crypto.BlobID, blobs)
	for i := range order {
		order[i][0], order[i][1] = byte(i>>8), byte(i)
	}
	lookup := func(seq uint64) (crypto.BlobID, bool) {
		if seq >= blobs {
			return crypto.BlobID{}, false
		}
		return order[seq], true
	}
	next := func(seq uint64) (uint64, crypto.BlobID, bool) {
		if seq >= blobs {
			return 0, crypto.BlobID{}, false
		}
		return seq, order[seq], true
	}
	held := []uint32{3, 11, 19, 27, 35, 43, 51, 59}
	type sliver struct {
		blob  crypto.BlobID
		shard uint32
	}
	caught := 0
	for run := range uint64(runs) {
		rng := mrand.New(mrand.NewPCG(run, 7))
		deleted := map[sliver]bool{}
		for len(deleted) < blobs*shards/20 { // 5% of the node's pairs
			deleted[sliver{order[rng.IntN(blobs)], held[rng.IntN(shards)]}] = true
		}
		for round := range uint64(2) {
			seed := seedFor(run*2 + round + 1000)
			positions := Positions(seed, SampleBlobs(seed, DefaultSamples, blobs, lookup, next), held, 64, DefaultShardsPerBlob)
			found := false
			for _, p := range positions {
				found = found || deleted[sliver{p.Blob, p.Shard}]
			}
			if found {
				caught++
				break
			}
		}
	}
	if rate := float64(caught) / runs; rate < 0.99 {
		t.Fatalf("caught in %d of %d runs (%.3f), want ≥ 0.99", caught, runs, rate)
	} else {
		t.Logf("caught within two rounds in %d of %d runs", caught, runs)
	}
}

func TestPositionsAreDeterministicAndInRange(t *testing.T) {
	w := newNetwork(t, 6)
	seed := seedFor(9)
	a := Positions(seed, w.order, []uint32{4, 1}, testShards, 0)
	b := Positions(seed, w.order, []uint32{1, 4}, testShards, 0)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("positions depend on the order shards are given in")
	}
	axes := map[crypto.Axis]int{}
	for _, p := range a {
		if p.Symbol >= testShards || p.Sliver >= testShards {
			t.Fatalf("position out of range: %+v", p)
		}
		pair := w.codec.Params().PairForShard(int(p.Shard), p.Blob)
		if int(p.Sliver) != w.codec.Params().PairSliver(pair, p.Axis) {
			t.Fatalf("shard %d of blob %s does not store %s sliver %d", p.Shard, p.Blob, p.Axis, p.Sliver)
		}
		axes[p.Axis]++
	}
	if axes[crypto.Primary] == 0 || axes[crypto.Secondary] == 0 {
		t.Fatalf("both axes should be challenged: %v", axes)
	}
}

// With a bound on the shards per blob, each blob gets that many distinct
// held shards, drawn from the seed: the same for every caller, spread over
// all held shards across blobs, and different from seed to seed.
func TestPositionsCheckABoundedDrawOfShardsPerBlob(t *testing.T) {
	w := newNetwork(t, 40)
	held := []uint32{2, 5, 7, 11, 13, 17, 19, 23}
	seen := map[uint32]int{}
	a := Positions(seedFor(4), w.order, held, testShards, 2)
	if len(a) != 2*len(w.order) {
		t.Fatalf("%d positions for %d blobs at 2 per blob", len(a), len(w.order))
	}
	for i := 0; i < len(a); i += 2 {
		p, q := a[i], a[i+1]
		if p.Blob != w.order[i/2] || q.Blob != p.Blob || p.Shard >= q.Shard {
			t.Fatalf("blob %d: positions %+v, %+v: want two distinct shards in order", i/2, p, q)
		}
		for _, s := range []uint32{p.Shard, q.Shard} {
			if !slices.Contains(held, s) {
				t.Fatalf("shard %d is not held", s)
			}
			seen[s]++
		}
	}
	if len(seen) != len(held) {
		t.Fatalf("over %d blobs only shards %v were drawn", len(w.order), seen)
	}
	reversed := slices.Clone(held)
	slices.Reverse(reversed)
	if b := Positions(seedFor(4), w.order, reversed, testShards, 2); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("the draw depends on the order shards are given in")
	}
	if c := Positions(seedFor(5), w.order, held, testShards, 2); fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("two seeds drew the same shards")
	}
	// A bound at or above the shards held, or 0, checks every one.
	all := Positions(seedFor(4), w.order, held, testShards, 0)
	if len(all) != len(held)*len(w.order) || fmt.Sprint(all) != fmt.Sprint(Positions(seedFor(4), w.order, held, testShards, len(held))) {
		t.Fatalf("%d positions with no bound, want every held shard of every blob", len(all))
	}
}
