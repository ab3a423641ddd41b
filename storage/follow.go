package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Assignment is the control plane's epoch state as a storage node last
// saw it: every shard's owner and holder.
type Assignment = control.State

// Follower registers a storage node with the control plane and follows the
// epoch state with blocking watches (no busy polling): each watch returns
// when the state index passes the last one seen, or at its timeout.
type Follower struct {
	id      shardmap.NodeID
	key     *crypto.SecretKey
	address string
	plane   control.Plane

	mu      sync.RWMutex
	current Assignment
	changed chan struct{} // closed and replaced on every change
}

// NewFollower follows the control plane; plane signs as node id with key.
func NewFollower(plane control.Plane, id shardmap.NodeID, key *crypto.SecretKey, address string) *Follower {
	return &Follower{id: id, key: key, address: address, plane: plane, changed: make(chan struct{})}
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
	st, err := f.plane.Watch(ctx, 0, 0)
	if err != nil {
		return err
	}
	err = f.plane.Report(ctx, st.Epoch, req)
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
	for ctx.Err() == nil {
		after := f.Current().Index
		resp, err := f.plane.Watch(ctx, after, wait)
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

func (f *Follower) update(a Assignment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current = a
	close(f.changed)
	f.changed = make(chan struct{})
}
