package challenge

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// BenchmarkRoundBytes measures one round's traffic against the bytes
// stored, at n = 100 over 10 nodes (10 shards each) with 1,000 blobs of
// 1 MiB: every node's signed response, as sent, times the challengers
// that fetch it — its sample (Challengers with DefaultChallengers draws:
// all 9 peers in a committee this small; about k at a hundred nodes). Reported: round-bytes and x-stored (target ≤ 0.01).
// Blobs are generated from seeds and encoded to learn their IDs, then
// dropped; only the sampled ones are encoded again to be proven.
func BenchmarkRoundBytes(b *testing.B) {
	const n, nodes, count, size = 100, 10, 1000, 1 << 20
	codec, err := coding.New(n)
	if err != nil {
		b.Fatal(err)
	}
	blob := func(i int) []byte {
		data := make([]byte, size)
		r := mrand.New(mrand.NewPCG(uint64(i), 99))
		for j := 0; j < len(data); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		return data
	}
	ids := make([]crypto.BlobID, count)
	index := map[crypto.BlobID]int{}
	for i := range ids {
		enc, err := codec.Encode(blob(i))
		if err != nil {
			b.Fatal(err)
		}
		ids[i], index[enc.ID] = enc.ID, i
	}
	perBlob, err := codec.Params().EncodedSize(size)
	if err != nil {
		b.Fatal(err)
	}
	stored := float64(perBlob) * count
	lookup := func(seq uint64) (crypto.BlobID, bool) { return ids[seq], seq < count }
	next := func(seq uint64) (uint64, crypto.BlobID, bool) { return seq, ids[seq], seq < count }
	var members []Member
	for node := range nodes {
		members = append(members, Member{Node: fmt.Sprintf("node-%d", node), Weight: n / nodes})
	}
	sk, _ := crypto.GenerateKey(nil)
	var roundBytes float64
	for r := 0; b.Loop(); r++ {
		seed := seedFor(uint64(r))
		sampled := SampleBlobs(seed, DefaultSamples, count, lookup, next)
		encoded := map[crypto.BlobID]*coding.Encoded{}
		for _, id := range sampled {
			if encoded[id], err = codec.Encode(blob(index[id])); err != nil {
				b.Fatal(err)
			}
		}
		var total int
		sampler := NewSampler(seed, members, DefaultChallengers)
		for node := range nodes {
			var held []uint32
			for s := node; s < n; s += nodes {
				held = append(held, uint32(s))
			}
			items, err := Prove(Positions(seed, sampled, held, n, DefaultShardsPerBlob), func(p Position) (*coding.ExtendedSliver, error) {
				enc := encoded[p.Blob]
				pair := enc.Pairs[crypto.PairIndex(p.Axis, p.Sliver, n)]
				sl := pair.Primary
				if p.Axis == crypto.Secondary {
					sl = pair.Secondary
				}
				return codec.Extend(enc.Metadata, sl)
			})
			if err != nil {
				b.Fatal(err)
			}
			resp := &Response{Epoch: 2, Round: uint64(r + 1), Node: fmt.Sprintf("node-%d", node), Items: items}
			if err := resp.Sign(sk); err != nil {
				b.Fatal(err)
			}
			raw, err := resp.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			total += len(raw) * len(sampler.Of(members[node].Node).Challengers) // fetched by its sample
		}
		roundBytes = float64(total)
	}
	b.ReportMetric(roundBytes, "round-bytes")
	b.ReportMetric(stored, "stored-bytes")
	b.ReportMetric(roundBytes/stored, "x-stored")
}

// BenchmarkChallengersFanout draws every node's sample in a round of 100
// members (n = 1000, unequal stake) with DefaultChallengers draws — what
// the control plane recomputes per verdict and each storage node per
// round. Reported: fetches per round (sum of sample sizes, against 9,900
// all-to-all) and the most targets one member judges.
func BenchmarkChallengersFanout(b *testing.B) {
	members, _ := scaleCommittee()
	var fetches, busiest int
	for r := 0; b.Loop(); r++ {
		sampler := NewSampler(seedFor(uint64(r)), members, DefaultChallengers)
		judges := map[string]int{}
		fetches = 0
		for _, m := range members {
			for _, c := range sampler.Of(m.Node).Challengers {
				judges[c.Node]++
				fetches++
			}
		}
		busiest = 0
		for _, j := range judges {
			busiest = max(busiest, j)
		}
	}
	b.ReportMetric(float64(fetches), "fetches/round")
	b.ReportMetric(float64(busiest), "max-targets")
}
