// Package epoch is the control plane's epoch state machine (DESIGN §5),
// pure in the manner of etcd's raft: a State and a command go in, a new
// State and events come out, or a typed error and the State unchanged. No
// I/O, no clocks, so every invariant can be checked over many thousands of
// random command sequences.
//
// Per shard the state records its owner in the current epoch and its
// holder: the last node known to hold every blob of the shard certified
// before it took the shard over. The epoch is in Handover while some
// shard's holder is not its owner, Stable when none is.
package epoch

import (
	"errors"
	"fmt"
	"slices"

	"github.com/weftstore/weft/shardmap"
)

// Phase is where an epoch stands.
type Phase uint8

const (
	// Stable: every shard's owner holds it.
	Stable Phase = iota
	// Handover: some shard's owner has not yet reported it synced.
	Handover
)

func (p Phase) String() string {
	if p == Stable {
		return "stable"
	}
	return "handover"
}

// Config is fixed at genesis.
type Config struct {
	Shards     int // n
	PerNodeCap int // most shards one node may own; 0 = no cap
}

// State is the epoch, and every shard's owner and holder. Epoch 0 is
// genesis: no committee, no shards assigned. The zero State is genesis.
type State struct {
	epoch   uint64
	owners  []shardmap.NodeID // nil at genesis
	holders []shardmap.NodeID
}

// FromParts rebuilds a State (for example from storage), checking that it
// is one the machine could have reached: every shard owned and held, and
// nothing assigned at genesis.
func FromParts(epoch uint64, owners, holders []shardmap.NodeID) (State, error) {
	s := State{epoch: epoch, owners: slices.Clone(owners), holders: slices.Clone(holders)}
	if epoch == 0 {
		if len(owners) != 0 || len(holders) != 0 {
			return State{}, fmt.Errorf("%w: shards assigned at genesis", ErrInvalidState)
		}
		return State{}, nil
	}
	if len(owners) == 0 || len(owners) != len(holders) {
		return State{}, fmt.Errorf("%w: %d owners and %d holders", ErrInvalidState, len(owners), len(holders))
	}
	for shard := range owners {
		if owners[shard] == "" || holders[shard] == "" {
			return State{}, fmt.Errorf("%w: shard %d without owner or holder", ErrInvalidState, shard)
		}
	}
	return s, nil
}

// Epoch is the current epoch.
func (s State) Epoch() uint64 { return s.epoch }

// Shards is n, or 0 at genesis.
func (s State) Shards() int { return len(s.owners) }

// Owner of a shard in the current epoch.
func (s State) Owner(shard int) shardmap.NodeID { return s.owners[shard] }

// Holder of a shard: the node reads of data certified before the owner
// took over go to, until the owner reports the shard synced.
func (s State) Holder(shard int) shardmap.NodeID { return s.holders[shard] }

// Owners returns a copy of the owners, indexed by shard.
func (s State) Owners() []shardmap.NodeID { return slices.Clone(s.owners) }

// Holders returns a copy of the holders, indexed by shard.
func (s State) Holders() []shardmap.NodeID { return slices.Clone(s.holders) }

// Map returns the current shard map (nil at genesis).
func (s State) Map() *shardmap.Map {
	if len(s.owners) == 0 {
		return nil
	}
	m, _ := shardmap.New(s.owners)
	return m
}

// Phase is Handover while any shard's holder is not its owner.
func (s State) Phase() Phase {
	if len(s.Pending()) > 0 {
		return Handover
	}
	return Stable
}

// Pending lists the shards whose handover is not complete, ascending.
func (s State) Pending() []int {
	var out []int
	for shard := range s.owners {
		if s.holders[shard] != s.owners[shard] {
			out = append(out, shard)
		}
	}
	return out
}

// MayDelete reports whether node may delete its copy of shard: only when
// it neither owns nor holds it. (A node re-checks this against committed
// state inside the transaction that deletes.)
func (s State) MayDelete(node shardmap.NodeID, shard int) bool {
	if shard < 0 || shard >= len(s.owners) {
		return false
	}
	return s.owners[shard] != node && s.holders[shard] != node
}

// Command is an input to the machine.
type Command interface{ isCommand() }

// Advance starts the next epoch with a shard map the leader computed and
// committed. From Handover it needs Force: shards whose handover is not
// complete then keep their holder as the source into the next epoch.
type Advance struct {
	Next  *shardmap.Map
	Force bool
}

// ShardSynced is an owner's report that it holds every blob of a shard
// certified before it took the shard over.
type ShardSynced struct {
	Epoch uint64
	Shard int
	Node  shardmap.NodeID
}

func (Advance) isCommand()     {}
func (ShardSynced) isCommand() {}

// Event is an output of the machine, in the order it happened.
type Event interface{ isEvent() }

// EpochStarted: a new epoch began. Handover lists the shards whose owner
// must sync them, each from its holder. Carried lists, after a forced
// change, the shards whose handover the last epoch left unfinished (their
// holder stays the node with their data), ascending.
type EpochStarted struct {
	Epoch    uint64
	Forced   bool
	Handover []shardmap.Move // From = holder (the source), To = owner
	Carried  []int
}

// ShardHandedOver: a shard's owner became its holder.
type ShardHandedOver struct {
	Epoch    uint64
	Shard    int
	From, To shardmap.NodeID
}

// EpochStable: every shard of the epoch is held by its owner.
type EpochStable struct{ Epoch uint64 }

func (EpochStarted) isEvent()    {}
func (ShardHandedOver) isEvent() {}
func (EpochStable) isEvent()     {}

// The machine's errors; a command that fails leaves the state unchanged.
var (
	ErrInvalidState  = errors.New("epoch: invalid state")
	ErrInvalidMap    = errors.New("epoch: invalid shard map")
	ErrNotStable     = errors.New("epoch: the current epoch's handover is not complete")
	ErrWrongEpoch    = errors.New("epoch: command for another epoch")
	ErrNoSuchShard   = errors.New("epoch: no such shard")
	ErrNotOwner      = errors.New("epoch: reported by a node that does not own the shard")
	ErrAlreadySynced = errors.New("epoch: shard already synced")
	ErrUnknown       = errors.New("epoch: unknown command")
)

// NotStableError says how many shards are still pending.
type NotStableError struct {
	Epoch   uint64
	Pending int
}

func (e *NotStableError) Error() string {
	return fmt.Sprintf("epoch: epoch %d still has %d shards in handover; advance with force to go on without them", e.Epoch, e.Pending)
}

func (e *NotStableError) Unwrap() error { return ErrNotStable }

// Apply runs one command.
func (s State) Apply(cfg Config, cmd Command) (State, []Event, error) {
	switch c := cmd.(type) {
	case Advance:
		return s.advance(cfg, c)
	case ShardSynced:
		return s.shardSynced(c)
	}
	return s, nil, fmt.Errorf("%w: %T", ErrUnknown, cmd)
}

func (s State) advance(cfg Config, c Advance) (State, []Event, error) {
	if c.Next == nil || c.Next.Shards() != cfg.Shards {
		return s, nil, fmt.Errorf("%w: the network has %d shards", ErrInvalidMap, cfg.Shards)
	}
	next := State{epoch: s.epoch + 1, owners: c.Next.Owners()}
	if s.epoch == 0 {
		// The first committee: there is no data anywhere yet, so every
		// owner already holds everything its shards contain.
		if err := shardmap.ValidateGenesis(c.Next, cfg.PerNodeCap); err != nil {
			return s, nil, fmt.Errorf("%w: %v", ErrInvalidMap, err)
		}
		next.holders = next.Owners()
		return next, []Event{EpochStarted{Epoch: next.epoch}, EpochStable{Epoch: next.epoch}}, nil
	}
	unfinished := s.Pending()
	if len(unfinished) > 0 && !c.Force {
		return s, nil, &NotStableError{Epoch: s.epoch, Pending: len(unfinished)}
	}
	if err := shardmap.ValidateTransition(s.Map(), c.Next, cfg.PerNodeCap); err != nil {
		return s, nil, fmt.Errorf("%w: %v", ErrInvalidMap, err)
	}
	// Holders carry over: in Stable they are the previous owners; after a
	// forced change, an unfinished shard's source stays the node that has
	// its data.
	next.holders = slices.Clone(s.holders)
	started := EpochStarted{Epoch: next.epoch, Forced: c.Force, Carried: unfinished}
	for _, shard := range next.Pending() {
		started.Handover = append(started.Handover, shardmap.Move{Shard: shard, From: next.holders[shard], To: next.owners[shard]})
	}
	events := []Event{started}
	if len(started.Handover) == 0 {
		events = append(events, EpochStable{Epoch: next.epoch})
	}
	return next, events, nil
}

func (s State) shardSynced(c ShardSynced) (State, []Event, error) {
	switch {
	case c.Epoch != s.epoch || s.epoch == 0:
		return s, nil, fmt.Errorf("%w: shard synced for epoch %d, the epoch is %d", ErrWrongEpoch, c.Epoch, s.epoch)
	case c.Shard < 0 || c.Shard >= len(s.owners):
		return s, nil, fmt.Errorf("%w: %d of %d", ErrNoSuchShard, c.Shard, len(s.owners))
	case s.owners[c.Shard] != c.Node:
		return s, nil, fmt.Errorf("%w: shard %d is owned by %q, not %q", ErrNotOwner, c.Shard, s.owners[c.Shard], c.Node)
	case s.holders[c.Shard] == c.Node:
		return s, nil, fmt.Errorf("%w: shard %d in epoch %d", ErrAlreadySynced, c.Shard, s.epoch)
	}
	next := State{epoch: s.epoch, owners: s.owners, holders: slices.Clone(s.holders)}
	from := next.holders[c.Shard]
	next.holders[c.Shard] = c.Node
	events := []Event{ShardHandedOver{Epoch: s.epoch, Shard: c.Shard, From: from, To: c.Node}}
	if next.Phase() == Stable {
		events = append(events, EpochStable{Epoch: s.epoch})
	}
	return next, events, nil
}
