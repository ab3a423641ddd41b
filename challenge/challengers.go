package challenge

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	mrand "math/rand/v2"
	"slices"
	"sort"
)

// Who checks whom (DESIGN.md "Challengers"). A challenged node is judged by
// a sample drawn from the round's seed, not by every member: k draws, each
// picking a member other than the node with probability proportional to
// its shards (with replacement). A challenger drawn m times casts m votes;
// a verdict needs a strict majority of the k votes. When the node's peers
// number at most k the sample is all of them, each voting its shards, and
// a verdict needs f+1 shards — the rule of a round without sampling.

// DefaultChallengers is the number of draws per challenged node. Odd, so
// that "a majority passed" and "a majority failed" exclude each other and
// the honest draws reach a majority exactly when the Byzantine ones do
// not. With Byzantine weight below a third, a majority-Byzantine sample of
// 81 draws has probability ≤ 9.7·10⁻⁴ (DESIGN.md).
const DefaultChallengers = 81

// MaxChallengers bounds the draws a round may ask for: the control plane
// draws them for every verdict it records.
const MaxChallengers = 1024

const labelChallenger = 'c'

// Member is a committee member as sampling sees it: its shards are its
// weight.
type Member struct {
	Node   string
	Weight uint64
}

// Challenger is one member of a node's sample and the votes it casts.
type Challenger struct {
	Node  string
	Votes uint64
}

// Sample is who judges one node in a round.
type Sample struct {
	Challengers []Challenger // by node
	// Need is the votes a verdict needs: a majority of the draws, or f+1
	// shards when the sample is every peer.
	Need uint64
	// Everyone reports that the sample is all of the node's peers.
	Everyone bool
}

// Index returns a challenger's position in the sample, or -1.
func (s Sample) Index(node string) int {
	i, ok := slices.BinarySearchFunc(s.Challengers, node, func(c Challenger, n string) int { return cmp.Compare(c.Node, n) })
	if !ok {
		return -1
	}
	return i
}

// Sampler draws the samples of one round: its seed, its committee and k.
// Build it once per round (or per report) and ask it for each node.
type Sampler struct {
	seed    Seed
	k       int
	members []Member // by node, weight > 0, one each
	start   []uint64 // start[i]: the weight before members[i]
	total   uint64   // n: every member's weight
}

// NewSampler prepares a round's sampling. k ≤ 0 asks for every peer (the
// rule of rounds recorded before sampling). Members without weight never
// challenge; a member listed twice counts once with its weights summed.
func NewSampler(seed Seed, members []Member, k int) *Sampler {
	s := &Sampler{seed: seed, k: k}
	byNode := map[string]uint64{}
	for _, m := range members {
		if m.Weight > 0 {
			byNode[m.Node] += m.Weight
		}
	}
	for node, w := range byNode {
		s.members = append(s.members, Member{Node: node, Weight: w})
	}
	slices.SortFunc(s.members, func(a, b Member) int { return cmp.Compare(a.Node, b.Node) })
	s.start = make([]uint64, len(s.members))
	for i, m := range s.members {
		s.start[i] = s.total
		s.total += m.Weight
	}
	return s
}

// Challengers is NewSampler(seed, members, k).Of(target).
func Challengers(seed Seed, target string, members []Member, k int) Sample {
	return NewSampler(seed, members, k).Of(target)
}

// Of returns the sample that judges target.
func (s *Sampler) Of(target string) Sample {
	self := s.position(target)
	peers := len(s.members)
	if self >= 0 {
		peers--
	}
	if s.k <= 0 || peers <= s.k {
		return s.everyone(self)
	}
	return s.drawn(target, self)
}

func (s *Sampler) position(node string) int {
	i, ok := slices.BinarySearchFunc(s.members, node, func(m Member, n string) int { return cmp.Compare(m.Node, n) })
	if !ok {
		return -1
	}
	return i
}

// everyone is the sample of a small committee: every peer, voting its
// shards, deciding at f+1 of n.
func (s *Sampler) everyone(self int) Sample {
	out := Sample{Everyone: true, Need: (s.total-1)/3 + 1, Challengers: make([]Challenger, 0, len(s.members))}
	for i, m := range s.members {
		if i != self {
			out.Challengers = append(out.Challengers, Challenger{Node: m.Node, Votes: m.Weight})
		}
	}
	return out
}

// drawn is k weighted draws among the peers: a uniform point in the
// weight line with the target's own segment cut out.
func (s *Sampler) drawn(target string, self int) Sample {
	var selfStart, selfWeight uint64
	if self >= 0 {
		selfStart, selfWeight = s.start[self], s.members[self].Weight
	}
	others := s.total - selfWeight
	rng := s.stream(target)
	votes := map[int]uint64{}
	for range s.k {
		// Modulo bias: others ≤ 2^32·members, far below 2^64.
		x := rng.Uint64() % others
		if self >= 0 && x >= selfStart {
			x += selfWeight
		}
		i := sort.Search(len(s.start), func(i int) bool { return s.start[i] > x }) - 1
		votes[i]++
	}
	out := Sample{Need: uint64(s.k)/2 + 1, Challengers: make([]Challenger, 0, len(votes))}
	for i, v := range votes {
		out.Challengers = append(out.Challengers, Challenger{Node: s.members[i].Node, Votes: v})
	}
	slices.SortFunc(out.Challengers, func(a, b Challenger) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// stream is the target's draws: ChaCha8 (a fixed algorithm, the same on
// every voter and node) keyed by the seed and the target's ID.
func (s *Sampler) stream(target string) *mrand.ChaCha8 {
	h := sha256.New()
	h.Write(s.seed[:])
	h.Write([]byte{labelChallenger})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(target))))
	h.Write([]byte(target))
	var key [32]byte
	h.Sum(key[:0])
	return mrand.NewChaCha8(key)
}
