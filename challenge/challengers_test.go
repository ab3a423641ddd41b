package challenge

import (
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/weftstore/weft/crypto"
)

// scaleCommittee is 100 members over n = 1000 with unequal stake: 50
// members of 6 shards and 50 of 14. The first 19 large and 11 small ones
// (332 shards, just under a third) are Byzantine.
func scaleCommittee() (members []Member, byzantine map[string]bool) {
	byzantine = map[string]bool{}
	for i := range 100 {
		m := Member{Node: fmt.Sprintf("node-%03d", i), Weight: 6}
		if i%2 == 1 {
			m.Weight = 14
		}
		members = append(members, m)
		if (i%2 == 1 && i/2 < 19) || (i%2 == 0 && i/2 < 11) {
			byzantine[m.Node] = true
		}
	}
	return members, byzantine
}

func TestChallengersAreDeterministicAndBounded(t *testing.T) {
	members, _ := scaleCommittee()
	shuffled := slices.Clone(members)
	mrand.New(mrand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i := range uint64(50) {
		seed := seedFor(i)
		target := members[i].Node
		a := Challengers(seed, target, members, DefaultChallengers)
		b := Challengers(seed, target, shuffled, DefaultChallengers)
		if !slices.Equal(a.Challengers, b.Challengers) || a.Need != b.Need {
			t.Fatalf("seed %d: the member order changed the sample", i)
		}
		if a.Everyone || a.Need != DefaultChallengers/2+1 {
			t.Fatalf("seed %d: everyone %v, need %d", i, a.Everyone, a.Need)
		}
		if len(a.Challengers) > DefaultChallengers || len(a.Challengers) == 0 {
			t.Fatalf("seed %d: %d challengers", i, len(a.Challengers))
		}
		var votes uint64
		for j, c := range a.Challengers {
			if c.Node == target {
				t.Fatalf("seed %d: %s judges itself", i, target)
			}
			if a.Index(c.Node) != j {
				t.Fatalf("seed %d: Index(%s) = %d, want %d", i, c.Node, a.Index(c.Node), j)
			}
			votes += c.Votes
		}
		if votes != DefaultChallengers {
			t.Fatalf("seed %d: %d votes, want one per draw", i, votes)
		}
		if a.Index(target) != -1 || a.Index("stranger") != -1 {
			t.Fatal("Index found a node outside the sample")
		}
		other := Challengers(seedFor(i+1000), target, members, DefaultChallengers)
		if slices.Equal(a.Challengers, other.Challengers) {
			t.Fatalf("seed %d: another seed drew the same sample", i)
		}
	}
}

// A committee whose peers number at most k is judged by everyone, each
// voting its shards, at f+1 of n — the rule before sampling; so is a
// round that asks for k = 0 (rounds recorded before sampling).
func TestSmallCommitteeIsJudgedByEveryone(t *testing.T) {
	members := []Member{{"a", 5}, {"b", 5}, {"c", 3}, {"d", 7}, {"idle", 0}}
	for _, k := range []int{0, 3, DefaultChallengers} {
		s := Challengers(seedFor(1), "b", members, k)
		want := []Challenger{{"a", 5}, {"c", 3}, {"d", 7}}
		if !s.Everyone || !slices.Equal(s.Challengers, want) || s.Need != (20-1)/3+1 {
			t.Fatalf("k = %d: %+v", k, s)
		}
	}
	// One peer more than k: drawn, by majority.
	s := Challengers(seedFor(1), "b", members, 2)
	if s.Everyone || s.Need != 2 || len(s.Challengers) > 2 || s.Index("b") != -1 || s.Index("idle") != -1 {
		t.Fatalf("k = 2 of 3 peers: %+v", s)
	}
}

// Load spreads with stake: at 100 equal members and k = 21 every member
// challenges about k others; a member with twice the shards is drawn
// about twice as often.
func TestChallengersSpreadLoad(t *testing.T) {
	const k, nodes = 21, 100
	var members []Member
	for i := range nodes {
		members = append(members, Member{Node: fmt.Sprintf("node-%03d", i), Weight: 10})
	}
	members[0].Weight = 20
	s := NewSampler(seedFor(7), members, k)
	targets := map[string]int{} // challenger → targets it judges
	draws := map[string]uint64{}
	for _, m := range members {
		sample := s.Of(m.Node)
		for _, c := range sample.Challengers {
			targets[c.Node]++
			draws[c.Node] += c.Votes
		}
	}
	var sum float64
	for _, m := range members[1:] {
		n := targets[m.Node]
		if n < 5 || n > 45 {
			t.Fatalf("%s challenges %d nodes; want about %d", m.Node, n, k)
		}
		sum += float64(draws[m.Node])
	}
	mean := sum / float64(nodes-1)
	if heavy := float64(draws[members[0].Node]); heavy < 1.4*mean || heavy > 2.8*mean {
		t.Fatalf("the member of double stake was drawn %v times, the others %.1f on average", heavy, mean)
	}
	t.Logf("mean draws per equal member %.1f (k = %d), double-stake member %d", mean, k, draws[members[0].Node])
}

// At n = 1000 over 100 members of unequal stake, with a third of the
// weight Byzantine and voting "passed" for a Byzantine node that deleted
// 5% of its slivers, the honest challengers in its sample still fail it
// within two rounds in ≥ 99% of seeds; and Byzantine "failed" votes fail
// an honest node in well under 1% of its rounds.
func TestSampledChallengersCatchFivePercentWithinTwoRounds(t *testing.T) {
	const n, blobs, runs = 1000, 2000, 1000
	members, byzantine := scaleCommittee()
	cheater := members[1] // Byzantine, 14 shards
	if !byzantine[cheater.Node] {
		t.Fatal("the cheater should be Byzantine")
	}
	var held []uint32
	for s := range uint32(cheater.Weight) {
		held = append(held, 10+s*71) // spread over the shard range
	}
	order := make([]crypto.BlobID, blobs)
	for i := range order {
		order[i][0], order[i][1] = byte(i>>8), byte(i)
	}
	lookup := func(seq uint64) (crypto.BlobID, bool) { return order[seq], seq < blobs }
	next := func(seq uint64) (uint64, crypto.BlobID, bool) { return seq, order[seq], seq < blobs }
	type sliver struct {
		blob  crypto.BlobID
		shard uint32
	}
	// honestVotes is what the honest draws of a node's sample add up to.
	honestVotes := func(s Sample) (honest uint64) {
		for _, c := range s.Challengers {
			if !byzantine[c.Node] {
				honest += c.Votes
			}
		}
		return honest
	}
	caught, honestRounds, honestFailed := 0, 0, 0
	for run := range uint64(runs) {
		rng := mrand.New(mrand.NewPCG(run, 11))
		deleted := map[sliver]bool{}
		for len(deleted) < blobs*len(held)/20 {
			deleted[sliver{order[rng.IntN(blobs)], held[rng.IntN(len(held))]}] = true
		}
		for round := range uint64(2) {
			seed := seedFor(run*2 + round + 5000)
			positions := Positions(seed, SampleBlobs(seed, DefaultSamples, blobs, lookup, next), held, n, DefaultShardsPerBlob)
			exposed := slices.ContainsFunc(positions, func(p Position) bool { return deleted[sliver{p.Blob, p.Shard}] })
			sampler := NewSampler(seed, members, DefaultChallengers)
			sample := sampler.Of(cheater.Node)
			// Honest challengers report "failed" when a position is exposed;
			// the Byzantine ones report "passed" whatever they see.
			if exposed && honestVotes(sample) >= sample.Need {
				caught++
				break
			}
		}
		// Byzantine challengers report "failed" for an honest node.
		sampler := NewSampler(seedFor(run+90_000), members, DefaultChallengers)
		for _, m := range members[60:] {
			if byzantine[m.Node] {
				continue
			}
			s := sampler.Of(m.Node)
			honestRounds++
			if uint64(DefaultChallengers)-honestVotes(s) >= s.Need {
				honestFailed++
			}
		}
	}
	rate := float64(caught) / runs
	falseRate := float64(honestFailed) / float64(honestRounds)
	t.Logf("caught within two rounds in %d of %d runs (%.3f); honest nodes failed by a Byzantine sample in %d of %d rounds (%.5f)",
		caught, runs, rate, honestFailed, honestRounds, falseRate)
	if rate < 0.99 {
		t.Fatalf("caught in %.3f of runs, want ≥ 0.99", rate)
	}
	if falseRate > 0.005 {
		t.Fatalf("an honest node was failed in %.4f of its rounds, want < 0.005", falseRate)
	}
}

// Any committee, target and draw count give a sample that excludes the
// target and members without weight, casts k votes (or every peer's
// shards), and is the same whatever the member order.
func FuzzChallengers(f *testing.F) {
	f.Add([]byte{5, 5, 3, 7, 0}, uint8(1), uint16(2), uint64(1))
	f.Add([]byte{1}, uint8(0), uint16(0), uint64(2))
	f.Fuzz(func(t *testing.T, weights []byte, target uint8, k uint16, seedNo uint64) {
		if len(weights) > 200 || int(k) > MaxChallengers {
			return
		}
		var members []Member
		for i, w := range weights {
			members = append(members, Member{Node: fmt.Sprintf("n%d", i), Weight: uint64(w)})
		}
		name := fmt.Sprintf("n%d", target)
		s := Challengers(seedFor(seedNo), name, members, int(k))
		reversed := slices.Clone(members)
		slices.Reverse(reversed)
		if again := Challengers(seedFor(seedNo), name, reversed, int(k)); !slices.Equal(s.Challengers, again.Challengers) || s.Need != again.Need {
			t.Fatal("member order changed the sample")
		}
		var votes uint64
		for _, c := range s.Challengers {
			if c.Node == name || c.Votes == 0 {
				t.Fatalf("challenger %+v of %s", c, name)
			}
			votes += c.Votes
		}
		if !s.Everyone && votes != uint64(k) {
			t.Fatalf("%d votes from %d draws", votes, k)
		}
	})
}
