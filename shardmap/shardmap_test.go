package shardmap

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
)

func randomStakes(r *rand.Rand, nodes int) []Stake {
	out := make([]Stake, nodes)
	for i := range out {
		amount := uint64(0)
		switch r.IntN(5) {
		case 0: // no stake
		case 1:
			amount = r.Uint64() >> r.IntN(64) // anything up to 2^64−1
		default:
			amount = uint64(1 + r.IntN(1000))
		}
		out[i] = Stake{Node: NodeID(fmt.Sprintf("node-%03d", r.IntN(1000))), Amount: amount}
	}
	// Drop duplicate IDs: Counts refuses them (tested separately).
	seen := map[NodeID]bool{}
	var uniq []Stake
	for _, s := range out {
		if !seen[s.Node] {
			seen[s.Node] = true
			uniq = append(uniq, s)
		}
	}
	return uniq
}

func staked(stakes []Stake) int {
	n := 0
	for _, s := range stakes {
		if s.Amount > 0 {
			n++
		}
	}
	return n
}

// quotientAtLeast reports whether a/as ≥ b/bs exactly.
func quotientAtLeast(a uint64, as int, b uint64, bs int) bool {
	ah, al := bits.Mul64(a, uint64(bs))
	bh, bl := bits.Mul64(b, uint64(as))
	return ah > bh || (ah == bh && al >= bl)
}

// Counts, over random stakes and caps: deterministic and independent of
// input order, sums to n, respects the cap, gives zero stake nothing, and
// is D'Hondt — no node below the cap would win a shard from another.
func TestCountsProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 3000 {
		n := 1 + r.IntN(300)
		stakes := randomStakes(r, 1+r.IntN(40))
		perNodeCap := 0
		if r.IntN(2) == 0 {
			perNodeCap = 1 + r.IntN(n)
		}
		counts, err := Counts(n, perNodeCap, stakes)
		k := staked(stakes)
		effectiveCap := perNodeCap
		if effectiveCap == 0 {
			effectiveCap = n
		}
		if k == 0 || k*effectiveCap < n {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("trial %d: %d staked nodes, cap %d, n %d: err = %v", trial, k, perNodeCap, n, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		shuffled := append([]Stake(nil), stakes...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, _ := Counts(n, perNodeCap, shuffled)
		total := 0
		for node, c := range counts {
			total += c
			if again[node] != c {
				t.Fatalf("trial %d: result depends on input order", trial)
			}
			if c > effectiveCap {
				t.Fatalf("trial %d: %s has %d shards over cap %d", trial, node, c, effectiveCap)
			}
		}
		if total != n || len(again) != len(counts) {
			t.Fatalf("trial %d: counts sum to %d, want %d", trial, total, n)
		}
		for _, a := range stakes {
			if a.Amount == 0 && counts[a.Node] != 0 {
				t.Fatalf("trial %d: zero-stake %s got shards", trial, a.Node)
			}
			for _, b := range stakes {
				ca, cb := counts[a.Node], counts[b.Node]
				if a.Node == b.Node || ca == 0 || b.Amount == 0 || cb >= effectiveCap {
					continue
				}
				// a's last seat had quotient stake_a/ca; b's next would be stake_b/(cb+1).
				if !quotientAtLeast(a.Amount, ca, b.Amount, cb+1) {
					t.Fatalf("trial %d: not D'Hondt: %s (%d, %d seats) vs %s (%d, %d seats)", trial, a.Node, a.Amount, ca, b.Node, b.Amount, cb)
				}
			}
		}
	}
}

func TestCountsExamples(t *testing.T) {
	counts, err := Counts(10, 0, []Stake{{"a", 600}, {"b", 300}, {"c", 100}})
	if err != nil || counts["a"] != 6 || counts["b"] != 3 || counts["c"] != 1 {
		t.Fatalf("proportional stakes: %v %v", counts, err)
	}
	counts, _ = Counts(10, 4, []Stake{{"a", 600}, {"b", 300}, {"c", 100}})
	if counts["a"] != 4 || counts["b"] != 4 || counts["c"] != 2 {
		t.Fatalf("capped at 4: %v", counts)
	}
	counts, _ = Counts(3, 0, []Stake{{"b", 5}, {"a", 5}, {"c", 5}, {"d", 5}})
	if counts["a"] != 1 || counts["b"] != 1 || counts["c"] != 1 || counts["d"] != 0 {
		t.Fatalf("ties go to the smaller ID: %v", counts)
	}
	if _, err := Counts(10, 0, []Stake{{"a", 1}, {"a", 2}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("duplicate node: err = %v", err)
	}
	if _, err := Counts(10, 3, []Stake{{"a", 1}, {"b", 2}, {"c", 0}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cap × staked nodes < n: err = %v", err)
	}
}

// Sticky transitions over random sequences of stake changes: every map is
// valid, moves exactly the minimum, keeps what it can, and is what
// ValidateTransition accepts; a map that moves one shard too many is not.
func TestTransitionProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		n := 4 + r.IntN(200)
		var prev *Map
		stakes := map[NodeID]uint64{}
		for step := range 8 {
			// Nodes join, leave and change stake.
			for range 1 + r.IntN(4) {
				node := NodeID(fmt.Sprintf("n%02d", r.IntN(30)))
				if r.IntN(4) == 0 {
					delete(stakes, node)
				} else {
					stakes[node] = uint64(1 + r.IntN(100))
				}
			}
			var list []Stake
			for node, amount := range stakes {
				list = append(list, Stake{node, amount})
			}
			counts, err := Counts(n, 0, list)
			if err != nil {
				continue // nobody staked this step
			}
			next, err := Assign(n, prev, counts)
			if err != nil {
				t.Fatalf("trial %d step %d: %v", trial, step, err)
			}
			for node, c := range counts {
				if len(OwnedBy(next.Owners(), node)) != c {
					t.Fatalf("trial %d step %d: %s owns %d, count %d", trial, step, node, len(OwnedBy(next.Owners(), node)), c)
				}
			}
			if prev == nil {
				if err := ValidateGenesis(next, 0); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := ValidateTransition(prev, next, 0); err != nil {
					t.Fatalf("trial %d step %d: own transition rejected: %v", trial, step, err)
				}
				if got, want := len(Plan(prev, next)), MinimumMoves(prev, counts); got != want {
					t.Fatalf("trial %d step %d: %d moves, minimum %d", trial, step, got, want)
				}
				for _, mv := range Plan(prev, next) {
					if counts[mv.From] >= prev.Counts()[mv.From] {
						t.Fatalf("trial %d step %d: shard %d taken from %s, which did not shrink", trial, step, mv.Shard, mv.From)
					}
				}
				if bad := swapOne(next, prev); bad != nil {
					if err := ValidateTransition(prev, bad, 0); !errors.Is(err, ErrInvalid) {
						t.Fatalf("trial %d step %d: a map with a needless move validates", trial, step)
					}
				}
			}
			again, _ := Assign(n, prev, counts)
			if !again.Equal(next) {
				t.Fatalf("trial %d step %d: Assign is not deterministic", trial, step)
			}
			prev = next
		}
	}
}

// swapOne exchanges the owners of two shards that both stayed put, which
// keeps every count but moves two shards needlessly; nil if there is no
// such pair.
func swapOne(next, prev *Map) *Map {
	owners := next.Owners()
	for a := range owners {
		for b := a + 1; b < len(owners); b++ {
			if owners[a] != owners[b] && owners[a] == prev.Owner(a) && owners[b] == prev.Owner(b) {
				owners[a], owners[b] = owners[b], owners[a]
				m, _ := New(owners)
				return m
			}
		}
	}
	return nil
}

func TestValidateRejectsBadMaps(t *testing.T) {
	prev, _ := New([]NodeID{"a", "a", "b", "b"})
	overCap, _ := New([]NodeID{"a", "a", "a", "b"})
	if err := ValidateTransition(prev, overCap, 2); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cap: err = %v", err)
	}
	short, _ := New([]NodeID{"a", "b"})
	if err := ValidateTransition(prev, short, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("shard count: err = %v", err)
	}
	if _, err := New([]NodeID{"a", ""}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unowned shard: err = %v", err)
	}
	if _, err := Assign(4, prev, map[NodeID]int{"a": 3}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("counts not summing to n: err = %v", err)
	}
}
