package epoch

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/weftstore/weft/shardmap"
)

var pool = []shardmap.NodeID{"a", "b", "c", "d", "e", "f", "g", "h"}

// randomAdvance builds the command the leader would commit for random
// stakes, and now and then a wrong one.
func randomAdvance(r *rand.Rand, cfg Config, s State) Advance {
	force := r.IntN(3) == 0
	switch r.IntN(12) {
	case 0:
		return Advance{Next: nil, Force: force}
	case 1: // random owners: almost never the sticky, minimal map
		owners := make([]shardmap.NodeID, cfg.Shards)
		for i := range owners {
			owners[i] = pool[r.IntN(len(pool))]
		}
		m, _ := shardmap.New(owners)
		return Advance{Next: m, Force: force}
	case 2: // the wrong number of shards
		m, _ := shardmap.New(slices.Repeat([]shardmap.NodeID{"a"}, cfg.Shards+1))
		return Advance{Next: m, Force: force}
	}
	var stakes []shardmap.Stake
	for _, node := range pool {
		if r.IntN(3) > 0 {
			stakes = append(stakes, shardmap.Stake{Node: node, Amount: uint64(1 + r.IntN(50))})
		}
	}
	counts, err := shardmap.Counts(cfg.Shards, cfg.PerNodeCap, stakes)
	if err != nil {
		return Advance{Next: nil, Force: force}
	}
	next, err := shardmap.Assign(cfg.Shards, s.Map(), counts)
	if err != nil {
		panic(err)
	}
	return Advance{Next: next, Force: force}
}

func randomSynced(r *rand.Rand, cfg Config, s State) ShardSynced {
	if pending := s.Pending(); len(pending) > 0 && r.IntN(10) < 7 {
		shard := pending[r.IntN(len(pending))]
		return ShardSynced{Epoch: s.Epoch(), Shard: shard, Node: s.Owner(shard)}
	}
	c := ShardSynced{Epoch: s.Epoch(), Shard: r.IntN(cfg.Shards + 2), Node: pool[r.IntN(len(pool))]}
	if r.IntN(4) == 0 {
		c.Epoch += uint64(r.IntN(3)) - 1
	}
	if c.Shard < s.Shards() && r.IntN(2) == 0 {
		c.Node = s.Owner(c.Shard)
	}
	return c
}

// expectAccepted is the reference model: whether DESIGN §5 allows the
// command, worked out independently of Apply.
func expectAccepted(cfg Config, s State, cmd Command) bool {
	switch c := cmd.(type) {
	case Advance:
		if c.Next == nil || c.Next.Shards() != cfg.Shards {
			return false
		}
		for node, count := range c.Next.Counts() {
			if cfg.PerNodeCap > 0 && count > cfg.PerNodeCap || node == "" {
				return false
			}
		}
		if s.Epoch() == 0 {
			return true
		}
		if len(s.Pending()) > 0 && !c.Force {
			return false
		}
		moved := 0
		for shard := range cfg.Shards {
			if c.Next.Owner(shard) != s.Owner(shard) {
				moved++
			}
		}
		return moved == shardmap.MinimumMoves(s.Map(), c.Next.Counts())
	case ShardSynced:
		return s.Epoch() > 0 && c.Epoch == s.Epoch() && c.Shard >= 0 && c.Shard < s.Shards() &&
			s.Owner(c.Shard) == c.Node && s.Holder(c.Shard) != c.Node
	}
	return false
}

func sameState(a, b State) bool {
	return a.Epoch() == b.Epoch() && slices.Equal(a.Owners(), b.Owners()) && slices.Equal(a.Holders(), b.Holders())
}

// Over 10,000 random command sequences, every DESIGN §5 invariant holds
// after every command: epochs only increase, every shard has one owner and
// one holder, a holder is always a node that owned the shard (so it has the
// data), "shard synced" counts once and only from the owner in the current
// epoch, a plain advance needs Stable, a forced one keeps unfinished
// shards' holders, no node may delete what it owns or holds, and rejected
// commands change nothing.
func TestInvariantsOverRandomSequences(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const sequences = 10_000
	accepted, rejected := 0, 0
	for seq := range sequences {
		cfg := Config{Shards: 4 + r.IntN(29)}
		if r.IntN(2) == 0 {
			cfg.PerNodeCap = (cfg.Shards + 2) / 3
		}
		var s State
		owned := make([]map[shardmap.NodeID]bool, cfg.Shards) // every owner each shard has had
		for i := range owned {
			owned[i] = map[shardmap.NodeID]bool{}
		}
		for step := range 1 + r.IntN(25) {
			var cmd Command
			if s.Epoch() == 0 || r.IntN(3) == 0 {
				cmd = randomAdvance(r, cfg, s)
			} else {
				cmd = randomSynced(r, cfg, s)
			}
			want := expectAccepted(cfg, s, cmd)
			next, events, err := s.Apply(cfg, cmd)
			where := fmt.Sprintf("sequence %d step %d (%T)", seq, step, cmd)
			if (err == nil) != want {
				t.Fatalf("%s: accepted=%v, the model says %v (err %v)", where, err == nil, want, err)
			}
			if err != nil {
				rejected++
				if !sameState(next, s) || events != nil {
					t.Fatalf("%s: a rejected command changed the state or emitted events", where)
				}
				continue
			}
			accepted++
			checkTransition(t, where, cfg, s, next, cmd, events)
			for shard := range next.Shards() {
				owned[shard][next.Owner(shard)] = true
				if !owned[shard][next.Holder(shard)] {
					t.Fatalf("%s: shard %d held by %s, which never owned it", where, shard, next.Holder(shard))
				}
				if next.MayDelete(next.Owner(shard), shard) || next.MayDelete(next.Holder(shard), shard) {
					t.Fatalf("%s: owner or holder of shard %d may delete it", where, shard)
				}
			}
			rebuilt, err := FromParts(next.Epoch(), next.Owners(), next.Holders())
			if err != nil || !sameState(rebuilt, next) {
				t.Fatalf("%s: state does not survive FromParts: %v", where, err)
			}
			s = next
		}
	}
	if accepted < sequences || rejected < sequences/10 {
		t.Fatalf("the sequences exercise too little: %d accepted, %d rejected", accepted, rejected)
	}
}

func checkTransition(t *testing.T, where string, cfg Config, s, next State, cmd Command, events []Event) {
	t.Helper()
	if next.Shards() != cfg.Shards {
		t.Fatalf("%s: %d shards, want %d", where, next.Shards(), cfg.Shards)
	}
	for shard := range cfg.Shards {
		if next.Owner(shard) == "" || next.Holder(shard) == "" {
			t.Fatalf("%s: shard %d without owner or holder", where, shard)
		}
	}
	becameStable := next.Phase() == Stable && (s.Epoch() != next.Epoch() || s.Phase() == Handover)
	stableEvents := 0
	for _, e := range events {
		if _, ok := e.(EpochStable); ok {
			stableEvents++
		}
	}
	if (stableEvents == 1) != becameStable || stableEvents > 1 {
		t.Fatalf("%s: %d EpochStable events, became stable = %v", where, stableEvents, becameStable)
	}
	switch c := cmd.(type) {
	case Advance:
		if next.Epoch() != s.Epoch()+1 {
			t.Fatalf("%s: epoch %d → %d", where, s.Epoch(), next.Epoch())
		}
		if !slices.Equal(next.Owners(), c.Next.Owners()) {
			t.Fatalf("%s: owners are not the committed map", where)
		}
		wantHolders := s.Holders()
		if s.Epoch() == 0 {
			wantHolders = c.Next.Owners()
		}
		if !slices.Equal(next.Holders(), wantHolders) {
			t.Fatalf("%s: holders did not carry over", where)
		}
		started, ok := events[0].(EpochStarted)
		if !ok || started.Epoch != next.Epoch() || len(started.Handover) != len(next.Pending()) {
			t.Fatalf("%s: first event %+v", where, events[0])
		}
	case ShardSynced:
		if next.Epoch() != s.Epoch() || next.Holder(c.Shard) != c.Node {
			t.Fatalf("%s: synced shard %d not held by %s", where, c.Shard, c.Node)
		}
		for shard := range cfg.Shards {
			if shard != c.Shard && next.Holder(shard) != s.Holder(shard) {
				t.Fatalf("%s: syncing shard %d changed shard %d", where, c.Shard, shard)
			}
		}
	}
}

// The scenario the control-plane test will run end to end: 7 nodes, a
// node joins, Handover until every moved shard is reported, then Stable;
// the rejections the acceptance names; a forced advance keeps holders.
func TestJoinHandoverScenario(t *testing.T) {
	cfg := Config{Shards: 100}
	var stakes []shardmap.Stake
	for _, node := range pool[:7] {
		stakes = append(stakes, shardmap.Stake{Node: node, Amount: 10})
	}
	advance := func(s State, stakes []shardmap.Stake, force bool) (State, []Event, error) {
		counts, err := shardmap.Counts(cfg.Shards, cfg.PerNodeCap, stakes)
		if err != nil {
			t.Fatal(err)
		}
		m, err := shardmap.Assign(cfg.Shards, s.Map(), counts)
		if err != nil {
			t.Fatal(err)
		}
		return s.Apply(cfg, Advance{Next: m, Force: force})
	}
	s, _, err := advance(State{}, stakes, false)
	if err != nil || s.Epoch() != 1 || s.Phase() != Stable {
		t.Fatalf("genesis advance: epoch %d phase %s err %v", s.Epoch(), s.Phase(), err)
	}
	stakes = append(stakes, shardmap.Stake{Node: "h", Amount: 10})
	s, events, err := advance(s, stakes, false)
	if err != nil || s.Epoch() != 2 || s.Phase() != Handover {
		t.Fatalf("join: epoch %d phase %s err %v", s.Epoch(), s.Phase(), err)
	}
	moves := events[0].(EpochStarted).Handover
	if len(moves) != 12 { // 100/8 rounded by D'Hondt: h takes 12 or 13
		if len(moves) != 13 {
			t.Fatalf("%d shards move to the new node", len(moves))
		}
	}
	for _, mv := range moves {
		if mv.To != "h" {
			t.Fatalf("shard %d moves to %s", mv.Shard, mv.To)
		}
	}
	// A plain advance during Handover is refused; the rejections named.
	var ns *NotStableError
	if _, _, err := advance(s, stakes, false); !errors.As(err, &ns) || ns.Pending != len(moves) {
		t.Fatalf("advance during handover: err = %v", err)
	}
	first := moves[0]
	for name, c := range map[string]ShardSynced{
		"non-owner":     {Epoch: 2, Shard: first.Shard, Node: first.From},
		"another epoch": {Epoch: 1, Shard: first.Shard, Node: "h"},
	} {
		if _, _, err := s.Apply(cfg, c); err == nil {
			t.Fatalf("%s: shard synced accepted", name)
		}
	}
	s, _, err = s.Apply(cfg, ShardSynced{Epoch: 2, Shard: first.Shard, Node: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Apply(cfg, ShardSynced{Epoch: 2, Shard: first.Shard, Node: "h"}); !errors.Is(err, ErrAlreadySynced) {
		t.Fatalf("duplicate: err = %v", err)
	}
	// Forced: the 11+ unfinished shards keep "their" old holders.
	before := s.Holders()
	forced, events, err := advance(s, stakes, true)
	if err != nil || !events[0].(EpochStarted).Forced {
		t.Fatalf("forced advance: %v", err)
	}
	if !slices.Equal(forced.Holders(), before) || len(forced.Pending()) != len(moves)-1 {
		t.Fatalf("forced advance lost holders: %d pending", len(forced.Pending()))
	}
	// Carried names exactly the shards epoch 2 left unsynced.
	if carried, want := events[0].(EpochStarted).Carried, s.Pending(); !slices.Equal(carried, want) || len(carried) != len(moves)-1 {
		t.Fatalf("forced advance carried %v, want epoch 2's unsynced %v", carried, want)
	}
	// Report the rest in epoch 3: Stable.
	for _, shard := range forced.Pending() {
		forced, events, err = forced.Apply(cfg, ShardSynced{Epoch: 3, Shard: shard, Node: forced.Owner(shard)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if forced.Phase() != Stable {
		t.Fatal("not stable after every shard synced")
	}
	if _, ok := events[len(events)-1].(EpochStable); !ok {
		t.Fatal("no EpochStable event")
	}
}
