// Package shardmap assigns shards to storage nodes (DESIGN §5): how many
// shards each node owns, from its stake (D'Hondt with a per-node cap), which
// shards, sticking to the previous epoch's map so that as few shards as
// possible move, and the handover plan of those that do. It is pure: the
// control plane's leader computes a map with it, and every replica's FSM
// validates the committed map with it instead of recomputing it.
package shardmap

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// NodeID names a storage node in the registry.
type NodeID string

// Stake is a node's stake, the weight D'Hondt divides shards by.
type Stake struct {
	Node   NodeID
	Amount uint64
}

// ErrInvalid is wrapped by every error of this package.
var ErrInvalid = errors.New("shardmap: invalid")

// Counts returns how many of the n shards each node owns: D'Hondt over the
// stakes (each shard goes in turn to the node with the largest quotient
// stake/(shards so far + 1)), skipping nodes that reached perNodeCap.
// Nodes with zero stake get nothing and are left out. Ties go to the
// smaller node ID, so the result depends only on the set of stakes.
// perNodeCap = 0 means no cap. It is an error when the staked nodes
// cannot hold n shards under the cap.
func Counts(n, perNodeCap int, stakes []Stake) (map[NodeID]int, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: %d shards", ErrInvalid, n)
	}
	if perNodeCap <= 0 {
		perNodeCap = n
	}
	nodes := make([]Stake, 0, len(stakes))
	seen := make(map[NodeID]bool, len(stakes))
	for _, s := range stakes {
		if seen[s.Node] {
			return nil, fmt.Errorf("%w: node %q staked twice", ErrInvalid, s.Node)
		}
		seen[s.Node] = true
		if s.Amount > 0 {
			nodes = append(nodes, s)
		}
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: no node has stake", ErrInvalid)
	}
	if len(nodes)*perNodeCap < n {
		return nil, fmt.Errorf("%w: %d staked nodes × cap %d < %d shards", ErrInvalid, len(nodes), perNodeCap, n)
	}
	slices.SortFunc(nodes, func(a, b Stake) int { return cmp.Compare(a.Node, b.Node) })
	h := &quotientHeap{}
	for i := range nodes {
		h.push(dhondtEntry{node: i, stake: nodes[i].Amount})
	}
	assigned := make([]int, len(nodes))
	for given := 0; given < n; {
		e := h.pop()
		assigned[e.node]++
		given++
		if assigned[e.node] < perNodeCap {
			e.seats = assigned[e.node]
			h.push(e)
		}
	}
	out := make(map[NodeID]int, len(nodes))
	for i, s := range nodes {
		if assigned[i] > 0 {
			out[s.Node] = assigned[i]
		}
	}
	return out, nil
}

// dhondtEntry is a node's next quotient stake/(seats+1).
type dhondtEntry struct {
	node  int // index into the sorted nodes: ties go to the smaller ID
	stake uint64
	seats int
}

// before reports whether a's quotient beats b's: a.stake/(a.seats+1) >
// b.stake/(b.seats+1), compared exactly as 128-bit cross products.
func (a dhondtEntry) before(b dhondtEntry) bool {
	ah, al := bits.Mul64(a.stake, uint64(b.seats+1))
	bh, bl := bits.Mul64(b.stake, uint64(a.seats+1))
	if ah != bh {
		return ah > bh
	}
	if al != bl {
		return al > bl
	}
	return a.node < b.node
}

// quotientHeap is a max-heap of quotients.
type quotientHeap struct{ items []dhondtEntry }

func (h *quotientHeap) push(e dhondtEntry) {
	h.items = append(h.items, e)
	for i := len(h.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.items[i].before(h.items[parent]) {
			break
		}
		h.items[i], h.items[parent] = h.items[parent], h.items[i]
		i = parent
	}
}

func (h *quotientHeap) pop() dhondtEntry {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	for i := 0; ; {
		l, r, best := 2*i+1, 2*i+2, i
		if l < len(h.items) && h.items[l].before(h.items[best]) {
			best = l
		}
		if r < len(h.items) && h.items[r].before(h.items[best]) {
			best = r
		}
		if best == i {
			return top
		}
		h.items[i], h.items[best] = h.items[best], h.items[i]
		i = best
	}
}

// Map is the owner of every shard in one epoch.
type Map struct {
	owners []NodeID
}

// New wraps a list of owners, one per shard; none may be empty.
func New(owners []NodeID) (*Map, error) {
	if len(owners) == 0 {
		return nil, fmt.Errorf("%w: a map of zero shards", ErrInvalid)
	}
	for shard, o := range owners {
		if o == "" {
			return nil, fmt.Errorf("%w: shard %d has no owner", ErrInvalid, shard)
		}
	}
	return &Map{owners: slices.Clone(owners)}, nil
}

// Shards is n.
func (m *Map) Shards() int { return len(m.owners) }

// Owner returns the owner of a shard.
func (m *Map) Owner(shard int) NodeID { return m.owners[shard] }

// Owners returns a copy of the owner list, indexed by shard.
func (m *Map) Owners() []NodeID { return slices.Clone(m.owners) }

// OwnedBy lists the shards of an owner list (an owner per shard) that
// node owns, ascending.
func OwnedBy(owners []NodeID, node NodeID) []uint32 {
	var out []uint32
	for shard, o := range owners {
		if o == node {
			out = append(out, uint32(shard))
		}
	}
	return out
}

// Counts returns how many shards each node owns.
func (m *Map) Counts() map[NodeID]int {
	out := map[NodeID]int{}
	for _, o := range m.owners {
		out[o]++
	}
	return out
}

// Equal reports whether two maps assign every shard alike.
func (m *Map) Equal(o *Map) bool { return slices.Equal(m.owners, o.owners) }

// Assign builds the map for the given counts (which must sum to n). With
// no previous map (the first epoch) shards are dealt out in node-ID order.
// Otherwise it is sticky: every node keeps as many of the shards it owned
// as its new count allows (the lowest-numbered ones); what shrinking and
// departing nodes give up goes, lowest shard first, to the nodes that grow,
// in node-ID order. The number of shards that change owner is then the
// minimum the counts allow: the sum of every node's growth.
func Assign(n int, prev *Map, counts map[NodeID]int) (*Map, error) {
	if err := checkCounts(n, counts); err != nil {
		return nil, err
	}
	if prev != nil && prev.Shards() != n {
		return nil, fmt.Errorf("%w: previous map has %d shards, not %d", ErrInvalid, prev.Shards(), n)
	}
	owners := make([]NodeID, n)
	kept := map[NodeID]int{}
	var free []int
	for shard := range n {
		if prev != nil {
			if o := prev.owners[shard]; kept[o] < counts[o] {
				owners[shard] = o
				kept[o]++
				continue
			}
		}
		free = append(free, shard)
	}
	for _, node := range sortedNodes(counts) {
		for ; kept[node] < counts[node]; kept[node]++ {
			owners[free[0]] = node
			free = free[1:]
		}
	}
	return &Map{owners: owners}, nil
}

func checkCounts(n int, counts map[NodeID]int) error {
	total := 0
	for node, c := range counts {
		if node == "" || c < 0 {
			return fmt.Errorf("%w: count %d for node %q", ErrInvalid, c, node)
		}
		total += c
	}
	if total != n {
		return fmt.Errorf("%w: counts sum to %d, not %d shards", ErrInvalid, total, n)
	}
	return nil
}

func sortedNodes(counts map[NodeID]int) []NodeID {
	nodes := make([]NodeID, 0, len(counts))
	for node := range counts {
		nodes = append(nodes, node)
	}
	slices.Sort(nodes)
	return nodes
}

// MinimumMoves is the fewest shards that must change owner to go from prev
// to a map with the given counts: every node's growth, summed.
func MinimumMoves(prev *Map, counts map[NodeID]int) int {
	had := prev.Counts()
	moves := 0
	for node, c := range counts {
		moves += max(0, c-had[node])
	}
	return moves
}

// Move is one shard's handover.
type Move struct {
	Shard    int
	From, To NodeID
}

// Plan lists the shards whose owner changes from prev to next, ascending.
func Plan(prev, next *Map) []Move {
	var moves []Move
	for shard := range next.owners {
		if from, to := prev.owners[shard], next.owners[shard]; from != to {
			moves = append(moves, Move{Shard: shard, From: from, To: to})
		}
	}
	return moves
}

// ValidateTransition checks a proposed next map the way the control
// plane's FSM does, without recomputing it: same shard count, every shard
// owned, no node above the cap (0 = none), and no more shards moved than
// the new counts force.
func ValidateTransition(prev, next *Map, perNodeCap int) error {
	if prev.Shards() != next.Shards() {
		return fmt.Errorf("%w: next map has %d shards, previous %d", ErrInvalid, next.Shards(), prev.Shards())
	}
	if err := validateMap(next, perNodeCap); err != nil {
		return err
	}
	if moved, least := len(Plan(prev, next)), MinimumMoves(prev, next.Counts()); moved != least {
		return fmt.Errorf("%w: %d shards move, the new counts need only %d", ErrInvalid, moved, least)
	}
	return nil
}

// ValidateGenesis checks the first map: every shard owned, the cap kept.
func ValidateGenesis(next *Map, perNodeCap int) error { return validateMap(next, perNodeCap) }

func validateMap(m *Map, perNodeCap int) error {
	for shard, o := range m.owners {
		if o == "" {
			return fmt.Errorf("%w: shard %d has no owner", ErrInvalid, shard)
		}
	}
	if perNodeCap > 0 {
		for node, c := range m.Counts() {
			if c > perNodeCap {
				return fmt.Errorf("%w: node %q owns %d shards, the cap is %d", ErrInvalid, node, c, perNodeCap)
			}
		}
	}
	return nil
}
