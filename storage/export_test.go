package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// ValueLocation says where a stored sliver's bytes sit in the value log:
// the segment file and the record's offset (tests corrupt them there).
func (s *Store) ValueLocation(shard uint32, id crypto.BlobID, axis crypto.Axis) (string, int64, error) {
	var raw []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b, _ := shardBucket(tx, shard, sliverBucket(axis), false); b != nil {
			raw = append([]byte(nil), b.Get(id[:])...)
		}
		return nil
	}); err != nil {
		return "", 0, err
	}
	e, external, err := parseExtent(raw)
	if err != nil || !external {
		return "", 0, fmt.Errorf("%s sliver of %s on shard %d is not in the value log (%d bytes, %v)", axis, id, shard, len(raw), err)
	}
	return s.values.path(e.seg), e.off, nil
}

// MetadataFootprint counts the full copies of blob metadata in the bbolt
// file and their bytes: the node-wide ones and any per-shard copies an
// older store kept.
func (s *Store) MetadataFootprint() (copies, size int, err error) {
	count := func(_, v []byte) error { copies++; size += len(v); return nil }
	err = s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMetadata); b != nil {
			if err := b.ForEach(count); err != nil {
				return err
			}
		}
		shards := tx.Bucket(bucketShards)
		return shards.ForEachBucket(func(k []byte) error {
			if b := shards.Bucket(k).Bucket(subLegacyMetadata); b != nil {
				return b.ForEach(count)
			}
			return nil
		})
	})
	return copies, size, err
}

// CheckMetadataRefs checks the bookkeeping of the node-wide metadata:
// every count equals the shards listing its blob, every listed blob's
// metadata is kept, no metadata is kept unlisted, and every stored sliver
// is listed on its shard.
func (s *Store) CheckMetadataRefs() error {
	return s.db.View(func(tx *bolt.Tx) error {
		listed := map[crypto.BlobID]uint32{}
		shards := tx.Bucket(bucketShards)
		err := shards.ForEachBucket(func(k []byte) error {
			sb, shard := shards.Bucket(k), binary.BigEndian.Uint32(k)
			refs := sb.Bucket(subMetaRefs)
			for _, name := range [][]byte{subPrimary, subSecondary} {
				b := sb.Bucket(name)
				if b == nil {
					continue
				}
				if err := b.ForEach(func(id, _ []byte) error {
					if refs == nil || refs.Get(id) == nil {
						return fmt.Errorf("shard %d stores a %s sliver of %x without referencing its metadata", shard, name, id)
					}
					return nil
				}); err != nil {
					return err
				}
			}
			if refs == nil {
				return nil
			}
			return refs.ForEach(func(id, _ []byte) error {
				listed[crypto.BlobID(id)]++
				if metadataRaw(tx, crypto.BlobID(id)) == nil {
					return fmt.Errorf("shard %d references the metadata of %x, which is not kept", shard, id)
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketMetadata).ForEach(func(id, _ []byte) error {
			if listed[crypto.BlobID(id)] == 0 {
				return fmt.Errorf("the metadata of %x is kept, but no shard references it", id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for id, want := range listed {
			if got, err := metadataRefs(tx, id); err != nil || got != want {
				return fmt.Errorf("the metadata of %s is counted %d times (%v), %d shards list it", id, got, err, want)
			}
		}
		return tx.Bucket(bucketMetaRefs).ForEach(func(id, _ []byte) error {
			if listed[crypto.BlobID(id)] == 0 {
				return fmt.Errorf("a count for the metadata of %x, which no shard lists", id)
			}
			return nil
		})
	})
}

// RewriteAsLegacyLayout turns the store into the layout stores had before
// metadata was kept once per node (what the previous release wrote): a
// full copy of a blob's metadata in each shard's "metadata" bucket that
// references it, and no node-wide buckets.
func (s *Store) RewriteAsLegacyLayout() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		shards := tx.Bucket(bucketShards)
		err := shards.ForEachBucket(func(k []byte) error {
			sb := shards.Bucket(k)
			refs := sb.Bucket(subMetaRefs)
			if refs == nil {
				return nil
			}
			legacy, err := sb.CreateBucket(subLegacyMetadata)
			if err != nil {
				return err
			}
			if err := refs.ForEach(func(id, _ []byte) error {
				return legacy.Put(id, bytes.Clone(metadataRaw(tx, crypto.BlobID(id))))
			}); err != nil {
				return err
			}
			return sb.DeleteBucket(subMetaRefs)
		})
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketMetadata, bucketMetaRefs} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// FollowEvents runs a node's event follower alone over a store — what a
// node derives from the control plane's events (replayed or bootstrapped
// from state), without the rest of the node — until the returned stop.
func FollowEvents(st *Store, plane control.Plane, id shardmap.NodeID) (stop func()) {
	n := &Node{cfg: Config{ID: id, Plane: plane, WatchTimeout: 200 * time.Millisecond}, store: st,
		log: slog.Default().With("node", id), applied: make(chan struct{})}
	n.registered, _ = lru.New[crypto.BlobID, struct{}](registeredCacheSize)
	n.recovery, n.chal = newRecoverer(n), newChallenges(n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.followEvents(ctx) }()
	return func() { cancel(); <-done }
}

// SyncPeaks are what a node's handover held at once (a rebuild's pair
// counts twice: its symbols and the pair).
type SyncPeaks = syncPeaks

// SyncPeaks reads the node's handover peaks.
func (n *Node) SyncPeaks() SyncPeaks { return n.syncLim.budget.peaks() }

// AnswerSymbolsUpTo makes the node answer GetRecoverySymbols in at most
// the given recovery-symbol version, as a node of an earlier release does
// (coding.SymbolVersionCompact: symbol by symbol, never a batch); 0 lifts
// the cap.
func (n *Node) AnswerSymbolsUpTo(version uint32) { n.symbolVersionCap.Store(version) }
