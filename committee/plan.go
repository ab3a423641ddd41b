package committee

import (
	"fmt"
	"slices"

	"github.com/weftstore/weft/shardmap"
)

// PlanEpoch computes the next epoch change from the registry, as the leader
// does before proposing it: shard counts by D'Hondt over the stakes (with
// the per-node cap), assigned stickily from the current map. The FSM will
// validate the result rather than recompute it. With evictAfter > 0, nodes
// that failed or missed their last evictAfter challenge rounds are planned
// with no stake, and the command evicts them.
func (f *FSM) PlanEpoch(force bool, evictAfter int) (AdvanceEpoch, error) {
	if evictAfter > MaxEvictAfter {
		// Only the last retainRounds rounds are kept: a longer streak
		// could never be seen, and nobody would ever be evicted.
		return AdvanceEpoch{}, fmt.Errorf("committee: --auto-evict %d: at most %d challenge rounds are kept", evictAfter, MaxEvictAfter)
	}
	nodes, err := f.Nodes()
	if err != nil {
		return AdvanceEpoch{}, err
	}
	evict, err := f.Evictable(evictAfter)
	if err != nil {
		return AdvanceEpoch{}, err
	}
	stakes := make([]shardmap.Stake, 0, len(nodes))
	for _, n := range nodes {
		if slices.Contains(evict, n.ID) {
			n.Stake = 0
		}
		stakes = append(stakes, shardmap.Stake{Node: n.ID, Amount: n.Stake})
	}
	counts, err := shardmap.Counts(f.cfg.Shards, f.cfg.PerNodeCap, stakes)
	if err != nil {
		return AdvanceEpoch{}, fmt.Errorf("committee: planning the next epoch: %w", err)
	}
	state, err := f.EpochState()
	if err != nil {
		return AdvanceEpoch{}, err
	}
	next, err := shardmap.Assign(f.cfg.Shards, state.Map(), counts)
	if err != nil {
		return AdvanceEpoch{}, err
	}
	plan := AdvanceEpoch{Force: force, Owners: next.Owners()}
	if len(evict) > 0 {
		plan.Evict, plan.EvictAfter = evict, evictAfter
	}
	return plan, nil
}
