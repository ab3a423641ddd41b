package client

import (
	"context"
	"math/bits"

	"google.golang.org/grpc"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
)

// Quota is a client credential's allowance at the control plane, in bytes
// × epochs: a store is charged the blob's encoded size on all shards × its
// epochs, an extension that size × the epochs added.
type Quota struct {
	Client string // the client the token was issued to
	Total  uint64
	Used   uint64
}

// Left is what the client can still be charged.
func (q *Quota) Left() uint64 { return q.Total - min(q.Used, q.Total) }

// Quota returns the quota of the client's token, including the charges of
// this client's own writes so far.
func (c *Client) Quota(ctx context.Context) (*Quota, error) {
	if err := c.requireToken(ctx, "read its quota"); err != nil {
		return nil, err
	}
	var resp *weftv1.GetClientResponse
	err := c.controlCall(ctx, "GetClient", func(ctx context.Context, conn *grpc.ClientConn) error {
		if err := c.caughtUp(ctx, conn); err != nil {
			return err
		}
		actx, err := c.authContext(ctx)
		if err != nil {
			return err
		}
		resp, err = weftv1.NewClientClient(conn).GetClient(actx, &weftv1.GetClientRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	info := resp.GetClient()
	return &Quota{Client: info.GetClient(), Total: info.GetQuota(), Used: info.GetUsed()}, nil
}

// StoreCost is what storing a blob of length bytes for epochs epochs
// charges, on the current committee's network (n shards): the bytes the
// blob takes on all shards × epochs. ok is false when it overflows.
func (c *Client) StoreCost(ctx context.Context, length, epochs uint64) (cost uint64, ok bool, err error) {
	com, err := c.currentCommittee(ctx, false)
	if err != nil {
		return 0, false, err
	}
	codec, err := c.storeCodec(len(com.Owners))
	if err != nil {
		return 0, false, err
	}
	return costOf(codec.Params(), length, epochs)
}

// costOf is what the control plane charges for a blob of length bytes
// for epochs epochs: its encoded size on all shards × epochs. ok is false
// when that overflows (the control plane refuses it).
func costOf(params coding.Params, length, epochs uint64) (cost uint64, ok bool, err error) {
	size, err := params.EncodedSize(length)
	if err != nil {
		return 0, false, err
	}
	hi, cost := bits.Mul64(size, epochs)
	return cost, hi == 0, nil
}
