package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/committee"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Assignment is the control plane's epoch state as a storage node last
// saw it: every shard's owner and holder.
type Assignment struct {
	Index   uint64 // the control plane's state index
	Epoch   uint64
	Owners  []shardmap.NodeID
	Holders []shardmap.NodeID
}

// Owned lists the shards node owns, ascending.
func (a Assignment) Owned(node shardmap.NodeID) []uint32 {
	var out []uint32
	for shard, o := range a.Owners {
		if o == node {
			out = append(out, uint32(shard))
		}
	}
	return out
}

// Follower registers a storage node with the control plane and follows the
// epoch state with blocking watches (no busy polling): each watch returns
// when the state index passes the last one seen, or at its timeout.
type Follower struct {
	id      shardmap.NodeID
	key     *crypto.SecretKey
	address string
	conn    *grpc.ClientConn

	mu      sync.RWMutex
	current Assignment
	changed chan struct{} // closed and replaced on every change
}

// NewFollower follows the control plane reached through conn.
func NewFollower(conn *grpc.ClientConn, id shardmap.NodeID, key *crypto.SecretKey, address string) *Follower {
	return &Follower{id: id, key: key, address: address, conn: conn, changed: make(chan struct{})}
}

// ErrKeyMismatch is wrapped by Register's error when the node's ID is
// registered to another key: retrying cannot help, the operator must start
// the node with the key it registered with, or under another ID.
var ErrKeyMismatch = errors.New("storage: this node's ID and key do not match the registry")

// Register registers the node (signed request with its proof of
// possession). The registry binds an ID to one key: registering again
// with the same key succeeds (a restart; the address may change), and
// AlreadyExists means another key holds this ID — or this key another ID.
func (f *Follower) Register(ctx context.Context) error {
	req := &weftv1.RegisterNodeRequest{
		PublicKey: f.key.PublicKey().Bytes(), ProofOfPossession: f.key.ProvePossession().Bytes(), Address: f.address,
	}
	// A node request is signed for the current epoch (or the one before):
	// learn it without waiting.
	st, err := weftv1.NewWatchClient(f.conn).WatchState(ctx, &weftv1.WatchStateRequest{})
	if err != nil {
		return err
	}
	// Nonces must grow across restarts too: the clock does that without
	// storing anything.
	auth, err := committee.SignRequest(f.key, f.id, st.Epoch, uint64(time.Now().UnixNano()), "RegisterNode", committee.RegisterPayload(req))
	if err != nil {
		return err
	}
	req.Auth = auth
	_, err = weftv1.NewNodeClient(f.conn).RegisterNode(ctx, req)
	if status.Code(err) == codes.AlreadyExists {
		// The message names both fingerprints (committee's registerNode).
		return fmt.Errorf("%w: %s: start node %s with the key it registered with, or under another ID",
			ErrKeyMismatch, status.Convert(err).Message(), f.id)
	}
	return err
}

// Current returns the last assignment seen.
func (f *Follower) Current() Assignment {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.current
}

// Changed returns a channel closed at the next change of the assignment.
func (f *Follower) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Run follows the control plane until ctx ends, retrying after errors.
func (f *Follower) Run(ctx context.Context, wait time.Duration) error {
	watch := weftv1.NewWatchClient(f.conn)
	for ctx.Err() == nil {
		after := f.Current().Index
		resp, err := watch.WatchState(ctx, &weftv1.WatchStateRequest{AfterIndex: after, TimeoutMs: uint32(wait.Milliseconds())})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			slog.Warn("storage: watching the control plane", "node", f.id, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if resp.Index > after {
			f.update(resp)
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

func (f *Follower) update(resp *weftv1.WatchStateResponse) {
	a := Assignment{Index: resp.Index, Epoch: resp.Epoch}
	for i := range resp.Owners {
		a.Owners = append(a.Owners, shardmap.NodeID(resp.Owners[i]))
		a.Holders = append(a.Holders, shardmap.NodeID(resp.Holders[i]))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current = a
	close(f.changed)
	f.changed = make(chan struct{})
}
