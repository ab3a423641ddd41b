package committee

import (
	"sync"

	"github.com/weftstore/weft/epoch"
)

// stateTracker is the watchers' view of the epoch state: the state as of
// the last applied batch, and for every shard the Raft index of the last
// command that changed its owner or holder. A watcher holding the state
// at index `after` needs exactly the shards changed above it, so a delta
// is exact by construction, whatever command made the change (advance,
// forced advance, shard synced, a restore), and needs neither the event
// log (which may be compacted) nor a history bounded by guesswork.
//
// What it cannot know is what changed before it started: at open or
// restore it records the applied index as `since`, and a watcher whose
// `after` is below it (or above the current index: it saw a voter that
// is ahead) gets a full state.
//
// Cost: 8 bytes per shard; an update marks the shards its commands
// changed; a delta scans the n indexes (a few microseconds at n = 1000)
// and sends only the changed shards.
type stateTracker struct {
	mu      sync.RWMutex
	opened  bool   // reset has run once: later resets are restores
	since   uint64 // changes at or below this index are unknown
	index   uint64 // the applied index the state is as of
	state   epoch.State
	changed []uint64 // per shard: index of its last change above since (0: none)
}

// shardMark is one shard changed by the command at index.
type shardMark struct {
	shard int
	index uint64
}

// stagedChanges are the epoch-state changes of a batch being applied,
// published only once its transaction commits.
type stagedChanges struct {
	marks []shardMark
	state *epoch.State // nil: the batch left the epoch state alone
	// tokens are the batch's changes of the tokens bucket, for the FSM's
	// token table (tokens.go).
	tokens []tokenChange
}

func newStateTracker(shards int) *stateTracker {
	return &stateTracker{changed: make([]uint64, shards)}
}

// reset starts tracking afresh from the state file as opened: nothing
// before index is known. After a restore, not even index is trusted, nor
// anything this voter served before: the restored file may come from
// another history (an operator's backup) whose indices a watcher's
// `after` does not name, and Raft goes on above every index it had.
func (t *stateTracker) reset(index uint64, st epoch.State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.since = index
	if t.opened {
		t.since = max(index, t.index) + 1
	}
	t.opened, t.index, t.state = true, index, st
	clear(t.changed)
}

// publish records a committed batch ending at index.
func (t *stateTracker) publish(index uint64, staged stagedChanges) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range staged.marks {
		if m.shard >= 0 && m.shard < len(t.changed) {
			t.changed[m.shard] = m.index
		}
	}
	if staged.state != nil {
		t.state = *staged.state
	}
	t.index = max(t.index, index)
}

// current returns the state and the index it is as of.
func (t *stateTracker) current() (uint64, epoch.State) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.index, t.state
}

// changesSince returns the state now, its index, and the shards (ascending) whose
// owner or holder changed above after; ok is false when the changes since
// after are not known.
func (t *stateTracker) changesSince(after uint64) (index uint64, st epoch.State, shards []int, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if after < t.since || after > t.index {
		return t.index, t.state, nil, false
	}
	for shard, at := range t.changed {
		if at > after {
			shards = append(shards, shard)
		}
	}
	return t.index, t.state, shards, true
}

// changedShards lists the shards whose owner or holder differs between two
// states of the same network (all of them from or to genesis).
func changedShards(before, after epoch.State) []int {
	n := max(before.Shards(), after.Shards())
	var out []int
	for shard := range n {
		if shard >= before.Shards() || shard >= after.Shards() ||
			before.Owner(shard) != after.Owner(shard) || before.Holder(shard) != after.Holder(shard) {
			out = append(out, shard)
		}
	}
	return out
}

// WatchSnapshot is the epoch state as of an applied index.
func (f *FSM) WatchSnapshot() (index uint64, st epoch.State) { return f.tracker.current() }

// ChangesSince returns the epoch state now, the index it is as of, and the
// shards whose owner or holder changed above after — every shard that
// may differ from the state at after; ok is false when this voter cannot
// know (after precedes what it has seen since it opened its state file,
// or is ahead of it).
func (f *FSM) ChangesSince(after uint64) (index uint64, st epoch.State, shards []int, ok bool) {
	return f.tracker.changesSince(after)
}
