package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/shardmap"
)

// Watch implements Plane. When the client holds the state at after (the
// last one it returned), it asks only for the shards changed since and
// applies them; a delta it cannot apply is answered by asking again for
// the full state. Either way the caller gets a full State.
func (c *Client) Watch(ctx context.Context, after uint64, timeout time.Duration) (State, error) {
	base, haveBase := c.lastState(after)
	req := &weftv1.WatchStateRequest{AfterIndex: after, TimeoutMs: uint32(timeout.Milliseconds()), Delta: haveBase}
	resp, err := weftv1.NewWatchClient(c.conn).WatchState(ctx, req)
	if err != nil {
		return State{}, err
	}
	st, err := stateFrom(base, resp)
	if err != nil && resp.Delta {
		// The voter's delta does not fit what we hold: take nothing of it.
		req.Delta = false
		if resp, err = weftv1.NewWatchClient(c.conn).WatchState(ctx, req); err != nil {
			return State{}, err
		}
		st, err = stateFrom(State{}, resp)
	}
	if err != nil {
		return State{}, err
	}
	c.keepState(st)
	return st, nil
}

// stateFrom reads a response: a full state, or a delta applied to base.
func stateFrom(base State, resp *weftv1.WatchStateResponse) (State, error) {
	if resp.Delta {
		return ApplyDelta(base, resp)
	}
	return StateFromProto(resp)
}

// lastState returns the state last returned if it is the one at index.
func (c *Client) lastState(index uint64) (State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || c.last.Index != index || index == 0 {
		return State{}, false
	}
	return *c.last, true
}

// keepState remembers st as the base of the next delta, unless a
// concurrent Watch already returned a later one.
func (c *Client) keepState(st State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || st.Index >= c.last.Index {
		c.last = &st
	}
}

// ApplyDelta returns base with a delta response's changes applied. The
// delta must fit base: no older than it, each shard below base's shard
// count, ascending (so each once), with an owner and a holder. base is
// not modified: a State once returned is the caller's.
func ApplyDelta(base State, resp *weftv1.WatchStateResponse) (State, error) {
	if err := checkDelta(base, resp); err != nil {
		return State{}, err
	}
	st := State{Index: resp.Index, Epoch: resp.Epoch, Owners: base.Owners, Holders: base.Holders}
	if len(resp.Changes) == 0 {
		return st, nil
	}
	st.Owners, st.Holders = slices.Clone(base.Owners), slices.Clone(base.Holders)
	for _, ch := range resp.Changes {
		st.Owners[ch.Shard], st.Holders[ch.Shard] = shardmap.NodeID(ch.Owner), shardmap.NodeID(ch.Holder)
	}
	return st, nil
}

// checkDelta validates a delta against the state it claims to follow.
func checkDelta(base State, resp *weftv1.WatchStateResponse) error {
	n := len(base.Owners)
	switch {
	case !resp.Delta:
		return fmt.Errorf("control: state %d is not a delta", resp.Index)
	case len(resp.Owners) != 0 || len(resp.Holders) != 0:
		return fmt.Errorf("control: delta %d also names %d owners and %d holders", resp.Index, len(resp.Owners), len(resp.Holders))
	case len(base.Holders) != n:
		return fmt.Errorf("control: base state %d names %d owners and %d holders", base.Index, n, len(base.Holders))
	case resp.Index < base.Index || resp.Epoch < base.Epoch:
		return fmt.Errorf("control: delta to index %d, epoch %d is older than the state it follows (index %d, epoch %d)",
			resp.Index, resp.Epoch, base.Index, base.Epoch)
	case len(resp.Changes) > n:
		return fmt.Errorf("control: delta %d changes %d shards of %d", resp.Index, len(resp.Changes), n)
	}
	for i, ch := range resp.Changes {
		switch {
		case ch == nil:
			return fmt.Errorf("control: delta %d: change %d is empty", resp.Index, i)
		case int64(ch.Shard) >= int64(n):
			return fmt.Errorf("control: delta %d changes shard %d of %d", resp.Index, ch.Shard, n)
		case i > 0 && ch.Shard <= resp.Changes[i-1].Shard:
			return fmt.Errorf("control: delta %d lists shard %d after shard %d", resp.Index, ch.Shard, resp.Changes[i-1].Shard)
		case ch.Owner == "" || ch.Holder == "":
			return fmt.Errorf("control: delta %d leaves shard %d without owner or holder", resp.Index, ch.Shard)
		}
	}
	return nil
}
