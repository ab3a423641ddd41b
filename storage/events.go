package storage

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
)

// eventPage is how many events one Events call asks for.
const eventPage = 256

// followEvents applies the control plane's event stream from the last
// applied index on: certified blobs go on the recovery list (the node
// checks it holds their slivers), invalid blobs are dropped and refused
// from then on, expired and lapsed blobs are dropped and refused until
// registered again — each page in one transaction with its index, so a
// restart resumes exactly. A node that has applied nothing yet, or fell
// behind the event horizon, bootstraps from state instead (bootstrap.go);
// its pages are interleaved with the events it follows meanwhile.
func (n *Node) followEvents(ctx context.Context) {
	for ctx.Err() == nil {
		if err := n.followStep(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("storage: following control-plane events", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// followStep applies one page of events, and a page of the bootstrap
// under way (starting one when needed).
func (n *Node) followStep(ctx context.Context) error {
	after, err := n.store.AppliedEvent()
	if err != nil {
		return fmt.Errorf("reading the applied event index: %w", err)
	}
	boot, booting, err := n.store.Bootstrap()
	if err != nil {
		return err
	}
	if after == 0 && !booting {
		return n.beginBootstrap(ctx, "a new node")
	}
	wait := n.cfg.WatchTimeout
	if booting {
		wait = 0 // the bootstrap's pages go on meanwhile
	}
	events, err := n.cfg.Plane.Events(ctx, after, eventPage, wait)
	if status.Code(err) == codes.OutOfRange {
		return n.beginBootstrap(ctx, status.Convert(err).Message())
	}
	if err != nil {
		return err
	}
	if len(events) > 0 {
		if err := n.applyEventPage(events); err != nil {
			return fmt.Errorf("applying control-plane events: %w", err)
		}
	}
	if booting {
		return n.bootstrapStep(ctx, boot)
	}
	return nil
}

// applyEventPage applies a page of events and wakes who waits on them.
func (n *Node) applyEventPage(events []control.Event) error {
	batch, challenged := eventBatch(events)
	for _, e := range events {
		if e.Kind == control.EventChallengeFailed && e.Node == n.cfg.ID {
			n.log.Error("storage: this node FAILED a storage challenge: its challengers found slivers missing or wrong (see weft admin node list)", "epoch", e.Epoch)
		}
	}
	if err := n.store.ApplyEvents(batch); err != nil {
		return err
	}
	for _, id := range batch.Invalid {
		n.log.Info("storage: blob marked invalid; its data is dropped", "blob", id)
	}
	for _, id := range slices.Concat(batch.Invalid, batch.Ended) {
		n.registered.Remove(id)
	}
	n.appliedEvents()
	if len(batch.Recover) > 0 {
		n.recovery.wake()
	}
	if challenged > 0 {
		n.chal.notify(challenged)
	}
	return nil
}

// trackShardStates records, on every epoch change, what the node does
// with each shard, starts the sync of shards it gained, and deletes the
// shards it neither owns nor holds any more.
func (n *Node) trackShardStates(ctx context.Context) {
	h := newHandover(n)
	for {
		changed := n.follower.Changed()
		a := n.follower.Current()
		if err := n.recordShardStates(a); err != nil {
			n.log.Error("storage: recording shard states", "err", err)
		}
		n.metrics.setShardStates(n)
		h.start(ctx, a)
		n.deleteRetired()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// recordShardStates: a shard the node owns is Syncing when it was gained
// (its holder is another node, or the node did not own it before — it may
// have missed blobs certified meanwhile, even as the holder) and Owned
// once synced; a shard it only holds is Held; one it neither owns nor
// holds is Retired.
func (n *Node) recordShardStates(a Assignment) error {
	states, err := n.store.ShardStates()
	if err != nil {
		return err
	}
	changes := map[uint32]ShardState{}
	for shard, owner := range a.Owners {
		s := uint32(shard)
		old, want := states[s], states[s]
		switch {
		case owner == n.cfg.ID && (a.Holders[shard] != n.cfg.ID || (old != ShardOwned && old != ShardSyncing)):
			want = ShardSyncing
		case owner == n.cfg.ID:
			// Owned, or Syncing until its sync is done.
		case a.Holders[shard] == n.cfg.ID:
			want = ShardHeld
		case old == ShardOwned || old == ShardHeld || old == ShardSyncing:
			want = ShardRetired
		}
		if want != old {
			changes[s] = want
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return n.store.SetShardStates(changes)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// eventBatch turns a page of events into what the store applies, and
// returns the index of the page's last challenge-round event (0: none).
func eventBatch(events []control.Event) (batch EventBatch, challenged uint64) {
	batch.Index = events[len(events)-1].Index
	for _, e := range events {
		switch e.Kind {
		case control.EventEpochStarted, control.EventBlobRegistered, control.EventBlobCertified, control.EventBlobInvalid,
			control.EventBlobExpired, control.EventBlobDeleted, control.EventRegistrationLapsed:
			// The epoch they happened in (EventBlobExtended names the new
			// end epoch instead): it ages the tombstones.
			batch.Epoch = max(batch.Epoch, e.Epoch)
		case control.EventChallengeStarted, control.EventChallengeClosed:
			challenged = e.Index
		}
		if e.BlobID == (crypto.BlobID{}) {
			continue
		}
		id := e.BlobID
		switch e.Kind {
		case control.EventBlobCertified:
			batch.Recover = append(batch.Recover, PendingBlob{ID: id, Epoch: e.Epoch})
		case control.EventBlobInvalid:
			batch.Invalid = append(batch.Invalid, id)
		case control.EventBlobExpired, control.EventBlobDeleted, control.EventRegistrationLapsed:
			// A deleted blob leaves by the path an expired one does.
			batch.Ended = append(batch.Ended, id)
			// Ended after a registration in the same page: it stays
			// ended (a blob in both lists was registered after it ended).
			batch.Registered = slices.DeleteFunc(batch.Registered, func(r crypto.BlobID) bool { return r == id })
		case control.EventBlobRegistered:
			batch.Registered = append(batch.Registered, id)
		}
	}
	return batch, challenged
}
