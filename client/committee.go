package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// Member is one storage node of an epoch's committee.
type Member = control.Member

// Committee is an epoch's committee as the control plane records it
// (control.Committee: members in committee order, the shard map of the
// current epoch, the view certificates are verified with).
type Committee = control.Committee

// ErrNoCommittee is wrapped when the control plane has no committee for
// the epoch asked (before the first epoch, or one that has not happened).
var ErrNoCommittee = errors.New("client: no committee for that epoch")

// CommitteeInfo returns an epoch's committee with the members' addresses
// (epoch 0: the current one, with its shard map).
func (c *Client) CommitteeInfo(ctx context.Context, epoch uint64) (*Committee, error) {
	return c.committeeInfo(ctx, epoch, false)
}

// committeeInfo is CommitteeInfo; fresh first waits until the voter asked
// has applied everything committed, so that epoch 0 is the current epoch
// as the leader knows it.
func (c *Client) committeeInfo(ctx context.Context, epoch uint64, fresh bool) (*Committee, error) {
	var resp *weftv1.GetCommitteeResponse
	err := c.controlCall(ctx, "GetCommittee", func(ctx context.Context, conn *grpc.ClientConn) error {
		if fresh {
			if err := catchUpCommitted(ctx, conn); err != nil {
				return err
			}
		}
		var err error
		resp, err = weftv1.NewClientClient(conn).GetCommittee(ctx, &weftv1.GetCommitteeRequest{Epoch: epoch})
		return err
	})
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%w %d: %w", ErrNoCommittee, epoch, err)
	}
	if err != nil {
		return nil, err
	}
	if epoch != 0 && resp.Epoch != epoch {
		return nil, fmt.Errorf("client: asked for the committee of epoch %d, got epoch %d", epoch, resp.Epoch)
	}
	com, err := control.CommitteeFromProto(resp)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.cacheViewLocked(com.Epoch, com.View())
	c.mu.Unlock()
	return com, nil
}

// Committee returns an epoch's committee view (epoch 0: the current one),
// for verifying certificates. Past committees never change, so views are
// cached.
func (c *Client) Committee(ctx context.Context, epoch uint64) (*crypto.CommitteeView, error) {
	if epoch != 0 {
		c.mu.Lock()
		v, ok := c.views[epoch]
		c.mu.Unlock()
		if ok {
			return v, nil
		}
	}
	com, err := c.CommitteeInfo(ctx, epoch)
	if err != nil {
		return nil, err
	}
	return com.View(), nil
}

// currentCommittee returns the current epoch's committee with its shard
// map, which a write needs. fresh asks a voter that has applied everything
// committed: a follower learns of a commit a heartbeat after the leader,
// so right after the leader refused a write for its epoch, a plain read
// could still show the old epoch.
func (c *Client) currentCommittee(ctx context.Context, fresh bool) (*Committee, error) {
	com, err := c.committeeInfo(ctx, 0, fresh)
	if err != nil {
		return nil, err
	}
	if len(com.Owners) == 0 {
		// The epoch moved between reading the state and the committee:
		// the control plane only sends the map for the current epoch.
		return nil, fmt.Errorf("client: the control plane sent no shard map with the committee of epoch %d", com.Epoch)
	}
	return com, nil
}

// ParseCommittee reads a committee file (`weft committee -o json`, `weft
// verify --committee`) and checks it as one from the control plane is
// checked.
func ParseCommittee(data []byte) (*Committee, error) { return control.ParseCommittee(data) }
