package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/crypto"
)

// Bootstrap from state (DESIGN.md "Bootstrap from state"). A node that
// has applied no event yet, or whose applied index fell below the control
// plane's event horizon (Events answers OutOfRange), does not replay
// history: it records the current state index as applied — from then on
// it follows events and takes writes like a node that had replayed — and,
// interleaved with following, pages in what replay would have left it:
//
//   - listing: every live certified blob goes on the recovery list (what
//     each certified event would have put there);
//   - sweep: every blob it held when the bootstrap began is checked with
//     BlobStatus; one that ended or turned invalid meanwhile is dropped
//     (and tombstoned or marked invalid), as its event would have done.
//
// The progress is in the store (`bootstrap` in the node bucket: phase ‖
// epoch ‖ cursor, and `bootstrap-held`: the blobs left to check), so a
// restart resumes.
var (
	keyBootstrap   = []byte("bootstrap")
	bucketBootHeld = []byte("bootstrap-held") // blob ID → present: held when the bootstrap began, not yet checked
)

// Bootstrap phases.
const (
	bootListing  byte = 'L'
	bootSweeping byte = 'S'
)

const (
	bootListPage  = 1000 // the control plane's largest ListCertified page
	bootSweepPage = 256
)

// BootstrapState is a bootstrap under way.
type BootstrapState struct {
	Phase  byte
	Epoch  uint64        // the epoch when it began: the tombstones' age
	Cursor crypto.BlobID // listing: the last blob listed
}

func (b BootstrapState) encode() []byte {
	out := binary.BigEndian.AppendUint64([]byte{b.Phase}, b.Epoch)
	return append(out, b.Cursor[:]...)
}

func decodeBootstrap(v []byte) (BootstrapState, error) {
	if len(v) != 1+8+crypto.DigestSize || (v[0] != bootListing && v[0] != bootSweeping) {
		return BootstrapState{}, fmt.Errorf("storage: malformed bootstrap record of %d bytes", len(v))
	}
	return BootstrapState{Phase: v[0], Epoch: binary.BigEndian.Uint64(v[1:9]), Cursor: crypto.BlobID(v[9:])}, nil
}

// Bootstrap returns the bootstrap under way, if any.
func (s *Store) Bootstrap() (b BootstrapState, active bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNode).Get(keyBootstrap)
		if v == nil {
			return nil
		}
		active = true
		b, err = decodeBootstrap(v)
		return err
	})
	return b, active, err
}

// BeginBootstrap records index as the last applied event and starts a
// bootstrap: the blobs held now are the ones its sweep checks.
func (s *Store) BeginBootstrap(index, epoch uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketBootHeld) != nil {
			if err := tx.DeleteBucket(bucketBootHeld); err != nil {
				return err
			}
		}
		held, err := tx.CreateBucket(bucketBootHeld)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketMetadata).ForEach(func(k, _ []byte) error { return held.Put(k, present) }); err != nil {
			return err
		}
		node := tx.Bucket(bucketNode)
		if err := node.Put(keyBootstrap, BootstrapState{Phase: bootListing, Epoch: epoch}.encode()); err != nil {
			return err
		}
		return node.Put(keyEvent, binary.BigEndian.AppendUint64(nil, index))
	})
}

// BootstrapListed puts a page of listed certified blobs on the recovery
// list — those the node has not seen end (an end it applied is newer than
// a lagging voter's list) — and records the cursor, or the listing's end.
func (s *Store) BootstrapListed(page []PendingBlob, b BootstrapState, done bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, p := range page {
			if checkLive(tx, p.ID) != nil {
				continue
			}
			if err := tx.Bucket(bucketPending).Put(p.ID[:], binary.BigEndian.AppendUint64(nil, p.Epoch)); err != nil {
				return err
			}
		}
		if done {
			b.Phase, b.Cursor = bootSweeping, crypto.BlobID{}
		}
		return tx.Bucket(bucketNode).Put(keyBootstrap, b.encode())
	})
}

// BootstrapHeld returns up to limit blobs the sweep has still to check.
func (s *Store) BootstrapHeld(limit int) (ids []crypto.BlobID, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBootHeld)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(ids) < limit; k, _ = c.Next() {
			if len(k) == crypto.DigestSize {
				ids = append(ids, crypto.BlobID(k))
			}
		}
		return nil
	})
	return ids, err
}

// BootstrapSwept drops the checked blobs that ended (tombstoned at the
// bootstrap's epoch) or turned invalid, as their events would have, and
// takes the checked ones off the sweep; with nothing left the bootstrap
// is over.
func (s *Store) BootstrapSwept(checked, ended, invalid []crypto.BlobID, b BootstrapState) error {
	return s.update(func(tx *bolt.Tx, freed *bool) error {
		if err := s.applyBatch(tx, EventBatch{Epoch: b.Epoch, Ended: ended, Invalid: invalid}, freed); err != nil {
			return err
		}
		held := tx.Bucket(bucketBootHeld)
		if held == nil {
			return tx.Bucket(bucketNode).Delete(keyBootstrap)
		}
		for _, id := range checked {
			if err := held.Delete(id[:]); err != nil {
				return err
			}
		}
		if k, _ := held.Cursor().First(); k != nil {
			return nil
		}
		if err := tx.DeleteBucket(bucketBootHeld); err != nil {
			return err
		}
		return tx.Bucket(bucketNode).Delete(keyBootstrap)
	})
}

// beginBootstrap starts a bootstrap from the control plane's current
// state index.
func (n *Node) beginBootstrap(ctx context.Context, why string) error {
	st, err := n.cfg.Plane.Watch(ctx, 0, 0)
	if err != nil {
		return err
	}
	if err := n.store.BeginBootstrap(st.Index, st.Epoch); err != nil {
		return err
	}
	// Blobs confirmed registered before may have ended in the history
	// skipped: ask again.
	n.registered.Purge()
	n.log.Info("storage: bootstrapping from the control plane's state instead of replaying its events", "why", why, "index", st.Index, "epoch", st.Epoch)
	n.appliedEvents()
	return nil
}

// bootstrapStep does one page of the bootstrap under way.
func (n *Node) bootstrapStep(ctx context.Context, b BootstrapState) error {
	if b.Phase == bootListing {
		return n.bootstrapList(ctx, b)
	}
	return n.bootstrapSweep(ctx, b)
}

func (n *Node) bootstrapList(ctx context.Context, b BootstrapState) error {
	page, more, err := n.cfg.Plane.ListCertifiedBlobs(ctx, math.MaxUint64, b.Cursor, bootListPage)
	if status.Code(err) == codes.FailedPrecondition && b.Cursor != (crypto.BlobID{}) {
		// The cursor blob's record was compacted: list again (the list is
		// idempotent; what ended meanwhile is skipped by its tombstone).
		b.Cursor = crypto.BlobID{}
		return n.store.BootstrapListed(nil, b, false)
	}
	if err != nil {
		return err
	}
	pending := make([]PendingBlob, len(page))
	for i, p := range page {
		pending[i] = PendingBlob{ID: p.ID, Epoch: p.Epoch}
	}
	if len(page) > 0 {
		b.Cursor = page[len(page)-1].ID
	}
	if err := n.store.BootstrapListed(pending, b, !more); err != nil {
		return err
	}
	if len(pending) > 0 {
		n.recovery.wake()
	}
	return nil
}

func (n *Node) bootstrapSweep(ctx context.Context, b BootstrapState) error {
	checked, err := n.store.BootstrapHeld(bootSweepPage)
	if err != nil {
		return err
	}
	var ended, invalid []crypto.BlobID
	for _, id := range checked {
		st, err := n.cfg.Plane.BlobStatus(ctx, id)
		switch {
		case status.Code(err) == codes.NotFound:
			ended = append(ended, id) // its record was compacted: it ended long ago
		case err != nil:
			return err
		case st.Status == "invalid":
			invalid = append(invalid, id)
		case st.Status == "expired" || st.Status == "deleted":
			// Deleted: its last object was deleted and it ended as
			// blob-deleted, which the events would have applied as an
			// expiry.
			ended = append(ended, id)
		}
	}
	if err := n.store.BootstrapSwept(checked, ended, invalid, b); err != nil {
		return err
	}
	for _, id := range append(ended, invalid...) {
		n.registered.Remove(id)
	}
	if len(checked) < bootSweepPage {
		n.log.Info("storage: bootstrap from state done", "epoch", b.Epoch)
	}
	return nil
}
