package storage

// A blob's metadata (64·n bytes: every pair's two sliver hashes) is kept
// once per node, not once per shard: at n = 1000 a node owning 100 shards
// would otherwise keep 6.4 MB per blob. Each shard lists the blobs whose
// metadata it references (a 32-byte key per blob), and a node-wide count
// says how many shards list each blob; the metadata goes when the count
// reaches zero — when no shard of the node stores a pair of the blob or
// may still receive one. All three change in the same transactions.

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

var (
	bucketMetadata = []byte("blob-metadata") // blob ID → metadata, once per node
	bucketMetaRefs = []byte("metadata-refs") // blob ID → u32 shards listing it
	// subMetaRefs is a shard's list of the blobs whose metadata it
	// references: blob ID → present. Every blob with a pair stored on the
	// shard is listed (CommitStaged sees to it), and so is one whose
	// metadata arrived before its pair.
	subMetaRefs = []byte("metadata-ref")
)

// metadataRaw returns the node's copy of a blob's metadata (nil: none),
// valid only during tx.
func metadataRaw(tx *bolt.Tx, id crypto.BlobID) []byte {
	return tx.Bucket(bucketMetadata).Get(id[:])
}

// listsMetadata reports whether a shard references a blob's metadata.
func listsMetadata(tx *bolt.Tx, shard uint32, id crypto.BlobID) bool {
	b, _ := shardBucket(tx, shard, subMetaRefs, false)
	return b != nil && b.Get(id[:]) != nil
}

// refMetadata makes a shard reference a blob's metadata, which the node
// must already keep. Referencing it again changes nothing.
func refMetadata(tx *bolt.Tx, shard uint32, id crypto.BlobID) error {
	if metadataRaw(tx, id) == nil {
		return fmt.Errorf("%w: %s, shard %d", ErrNoMetadata, id, shard)
	}
	b, err := shardBucket(tx, shard, subMetaRefs, true)
	if err != nil || b.Get(id[:]) != nil {
		return err
	}
	if err := b.Put(id[:], present); err != nil {
		return err
	}
	refs, err := metadataRefs(tx, id)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMetaRefs).Put(id[:], binary.BigEndian.AppendUint32(nil, refs+1))
}

// unrefMetadata drops a shard's reference to a blob's metadata (sb is the
// shard's bucket; nil or unlisted: nothing to do), and the metadata with
// the last reference.
func unrefMetadata(tx *bolt.Tx, sb *bolt.Bucket, id crypto.BlobID) error {
	if sb == nil {
		return nil
	}
	b := sb.Bucket(subMetaRefs)
	if b == nil || b.Get(id[:]) == nil {
		return nil
	}
	if err := b.Delete(id[:]); err != nil {
		return err
	}
	return releaseMetadata(tx, id)
}

// releaseMetadata counts one reference to a blob's metadata less, and
// deletes the metadata when none is left. The caller removed the shard's
// entry.
func releaseMetadata(tx *bolt.Tx, id crypto.BlobID) error {
	refs, err := metadataRefs(tx, id)
	if err != nil {
		return err
	}
	if refs > 1 {
		return tx.Bucket(bucketMetaRefs).Put(id[:], binary.BigEndian.AppendUint32(nil, refs-1))
	}
	return forgetMetadata(tx, id)
}

// forgetMetadata deletes a blob's metadata and its count; the shards'
// entries are the caller's.
func forgetMetadata(tx *bolt.Tx, id crypto.BlobID) error {
	if err := tx.Bucket(bucketMetaRefs).Delete(id[:]); err != nil {
		return err
	}
	return tx.Bucket(bucketMetadata).Delete(id[:])
}

// metadataRefs is how many shards reference a blob's metadata.
func metadataRefs(tx *bolt.Tx, id crypto.BlobID) (uint32, error) {
	v := tx.Bucket(bucketMetaRefs).Get(id[:])
	switch len(v) {
	case 0:
		return 0, nil
	case 4:
		return binary.BigEndian.Uint32(v), nil
	}
	return 0, fmt.Errorf("storage: the reference count of %s's metadata is %d bytes (%x), not 4", id, len(v), v)
}

// releaseShardMetadata drops every reference a shard's bucket holds (before
// the bucket itself is deleted): O(blobs the shard lists).
func releaseShardMetadata(tx *bolt.Tx, sb *bolt.Bucket) error {
	b := sb.Bucket(subMetaRefs)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, _ []byte) error {
		if len(k) != crypto.DigestSize {
			return fmt.Errorf("storage: a shard's metadata reference has a %d-byte key (%x)", len(k), k)
		}
		return releaseMetadata(tx, crypto.BlobID(k))
	})
}

// subLegacyMetadata is where stores written before metadata was kept once
// per node kept it: a full copy per shard, blob ID → metadata.
var subLegacyMetadata = []byte("metadata")

// migrateMetadata moves the per-shard copies of an older store into the
// node-wide layout: the first copy of each blob becomes the node's (the
// copies are identical: each was checked against the blob ID), each shard
// that had one references it, and the per-shard buckets go. It runs in the
// transaction that opens the store, so a crash leaves either layout whole;
// a migrated store has no per-shard copies left, so running it again does
// nothing.
func migrateMetadata(tx *bolt.Tx) error {
	shards := tx.Bucket(bucketShards)
	var legacy [][]byte
	err := shards.ForEachBucket(func(k []byte) error {
		if shards.Bucket(k).Bucket(subLegacyMetadata) != nil {
			legacy = append(legacy, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range legacy {
		if err := migrateShardMetadata(tx, binary.BigEndian.Uint32(k), shards.Bucket(k)); err != nil {
			return fmt.Errorf("storage: moving shard %d's metadata to the node-wide layout: %w", binary.BigEndian.Uint32(k), err)
		}
	}
	return nil
}

// migrateShardMetadata moves one shard's per-shard copies (sb is the
// shard's bucket).
func migrateShardMetadata(tx *bolt.Tx, shard uint32, sb *bolt.Bucket) error {
	type entry struct{ id, raw []byte }
	var entries []entry
	err := sb.Bucket(subLegacyMetadata).ForEach(func(k, v []byte) error {
		if len(k) != crypto.DigestSize {
			return fmt.Errorf("a metadata key of %d bytes (%x)", len(k), k)
		}
		entries = append(entries, entry{bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range entries {
		id := crypto.BlobID(e.id)
		if metadataRaw(tx, id) == nil {
			if err := tx.Bucket(bucketMetadata).Put(e.id, e.raw); err != nil {
				return err
			}
		}
		if err := refMetadata(tx, shard, id); err != nil {
			return err
		}
	}
	return sb.DeleteBucket(subLegacyMetadata)
}
