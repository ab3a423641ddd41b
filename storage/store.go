// Package storage is the storage node (DESIGN §7). This file is its store:
// per shard, a blob's metadata and the sliver pair the shard holds, in
// bbolt (large slivers' bytes in the value log beside it, values.go), each
// checked before it is written and durable when a call returns — a node
// signs nothing before that.
package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// ShardState is what a node is doing with a shard.
type ShardState uint8

const (
	ShardUnknown    ShardState = iota
	ShardOwned                 // owned and held: serves and accepts new blobs
	ShardSyncing               // gained this epoch: copying from the holder
	ShardRecovering            // rebuilding slivers it missed
	ShardHeld                  // given up, still the holder for its successor
	ShardRetired               // neither owned nor held: may be deleted
)

var (
	bucketShards = []byte("shards") // u32 shard → {metadata-ref, primary, secondary} by blob ID
	bucketStates = []byte("states") // u32 shard → ShardState
	bucketNode   = []byte("node")   // node-wide values
	keyEvent     = []byte("applied-event")

	subPrimary   = []byte("primary")
	subSecondary = []byte("secondary")
)

// Errors of the store; rejected writes change nothing.
var (
	ErrNotFound      = errors.New("storage: not found")
	ErrWrongShard    = errors.New("storage: sliver pair belongs to another shard")
	ErrNoMetadata    = errors.New("storage: no metadata stored for the blob on this shard")
	ErrDeleteRefused = errors.New("storage: deletion refused by the committed state")
	ErrCorrupt       = errors.New("storage: stored sliver is corrupt")
	// ErrEnded: the blob expired, lapsed or was marked invalid, and the
	// node applied that event; nothing of it is stored any more.
	ErrEnded = errors.New("storage: the blob has ended")
)

// CorruptError is a stored sliver whose bytes no longer check out: its
// value-log record fails its CRC, or its bytes no longer parse. It names
// the sliver and the cause; DropCorrupt acts on it. errors.Is(err,
// ErrCorrupt) holds.
type CorruptError struct {
	Shard uint32
	Blob  crypto.BlobID
	Axis  crypto.Axis
	Cause error
	value []byte // the bbolt value found: DropCorrupt drops only that
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("storage: the %s sliver of %s on shard %d is corrupt: %v", e.Axis, e.Blob, e.Shard, e.Cause)
}

func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Cause} }

// Store holds metadata and small slivers in one bbolt file, and the bytes
// of large slivers in a value log next to it.
type Store struct {
	db        *bolt.DB
	codecs    *coding.Codecs // each blob's encoding, its metadata's
	values    *valueLog
	inlineMax int // encoded slivers longer than this go to the value log
	// drop is the DropPairs fault (nil in production): pairs it names are
	// not written, and HasPair claims them anyway.
	drop  func(shard uint32, id crypto.BlobID) bool
	space space // capacity and refusals (capacity.go)
}

// Open opens (or creates) the store: the bbolt file at path and the value
// log in the directory beside it (path without ".db", plus ".values").
func Open(path string, codecs *coding.Codecs) (*Store, error) {
	return openWith(path, codecs, defaultInlineMax, defaultSegmentSize)
}

func openWith(path string, codecs *coding.Codecs, inlineMax int, segmentSize int64) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketShards, bucketStates, bucketNode, bucketPending, bucketInvalid, bucketEnded, bucketEndedBy,
			bucketMetadata, bucketMetaRefs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return migrateMetadata(tx)
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	values, err := openValueLog(strings.TrimSuffix(path, ".db")+".values", db, segmentSize)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, codecs: codecs, values: values, inlineMax: inlineMax}
	s.initSpace()
	return s, nil
}

// Close closes the files.
func (s *Store) Close() error { return errors.Join(s.values.close(), s.db.Close()) }

func shardKey(shard uint32) []byte { return binary.BigEndian.AppendUint32(nil, shard) }

// shardBucket returns a shard's sub-bucket, creating it when create is set
// (nil when absent and not created).
func shardBucket(tx *bolt.Tx, shard uint32, name []byte, create bool) (*bolt.Bucket, error) {
	shards := tx.Bucket(bucketShards)
	sb := shards.Bucket(shardKey(shard))
	if sb == nil {
		if !create {
			return nil, nil
		}
		var err error
		if sb, err = shards.CreateBucket(shardKey(shard)); err != nil {
			return nil, err
		}
	}
	b := sb.Bucket(name)
	if b == nil && create {
		return sb.CreateBucket(name)
	}
	return b, nil
}

// PutMetadata stores a blob's metadata for a shard after checking it
// against the blob ID and the codec (PutMetadataShards for one shard).
func (s *Store) PutMetadata(shard uint32, id crypto.BlobID, meta *crypto.Metadata) error {
	return s.PutMetadataShards([]uint32{shard}, id, meta)
}

// Metadata returns a blob's metadata if the shard references it: the
// shard holds the blob's pair or was given its metadata for one.
func (s *Store) Metadata(shard uint32, id crypto.BlobID) (*crypto.Metadata, error) {
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if listsMetadata(tx, shard, id) {
			raw = bytes.Clone(metadataRaw(tx, id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: metadata of %s on shard %d", ErrNotFound, id, shard)
	}
	meta := new(crypto.Metadata)
	return meta, meta.UnmarshalBinary(raw)
}

// PutPair stores the sliver pair a shard holds of a blob. The blob's
// metadata must be stored for the shard; the pair must be the one the blob
// places on this shard; both slivers are verified against the metadata —
// outside the write transaction, which then only writes. The pair is on
// disk when PutPair returns.
func (s *Store) PutPair(shard uint32, id crypto.BlobID, pair coding.SliverPair) error {
	v, err := s.VerifyPair(shard, id, pair)
	if err != nil {
		return err
	}
	return s.WritePairs(v)
}

// VerifiedPair is a sliver pair checked against its shard's metadata,
// ready to be written. Only VerifyPair makes one.
type VerifiedPair struct {
	shard uint32
	id    crypto.BlobID
	pair  coding.SliverPair
	// inPlace: both slivers' Data are record buffers of the writer's
	// (recordBuffer), which the value log may write the records from.
	inPlace bool
}

// Size is the pair's sliver bytes.
func (v VerifiedPair) Size() int { return len(v.pair.Primary.Data) + len(v.pair.Secondary.Data) }

// VerifyPair runs PutPair's checks without writing: the blob's metadata is
// stored for the shard, the pair is the one the blob places there, and
// both slivers match the metadata. It reads the store but holds no
// transaction while it computes, so pairs can be checked in parallel and
// written together.
func (s *Store) VerifyPair(shard uint32, id crypto.BlobID, pair coding.SliverPair) (VerifiedPair, error) {
	meta, err := s.Metadata(shard, id)
	if errors.Is(err, ErrNotFound) {
		return VerifiedPair{}, fmt.Errorf("%w: %s, shard %d", ErrNoMetadata, id, shard)
	}
	if err != nil {
		return VerifiedPair{}, err
	}
	codec, err := s.codecs.ForMetadata(meta)
	if err != nil {
		return VerifiedPair{}, err
	}
	p := codec.Params()
	if want := p.PairForShard(int(shard), id); int(pair.Index) != want ||
		int(pair.Primary.Index) != p.PairSliver(want, crypto.Primary) ||
		int(pair.Secondary.Index) != p.PairSliver(want, crypto.Secondary) ||
		pair.Primary.Axis != crypto.Primary || pair.Secondary.Axis != crypto.Secondary {
		return VerifiedPair{}, fmt.Errorf("%w: pair %d (slivers %s, %s) sent for shard %d, which holds pair %d",
			ErrWrongShard, pair.Index, pair.Primary.SliverRef, pair.Secondary.SliverRef, shard, want)
	}
	for _, sl := range []coding.Sliver{pair.Primary, pair.Secondary} {
		if err := codec.VerifySliver(meta, sl); err != nil {
			return VerifiedPair{}, err
		}
	}
	return VerifiedPair{shard: shard, id: id, pair: pair}, nil
}

// WritePairs writes verified pairs: all are on disk when it returns (the
// large slivers' bytes in one write and sync, then one transaction).
func (s *Store) WritePairs(pairs ...VerifiedPair) error {
	return s.writePairs(pairs, nil)
}

// writePairs writes verified pairs and, in the same transaction, whatever
// also commits with them (nil: nothing).
func (s *Store) writePairs(pairs []VerifiedPair, also func(tx *bolt.Tx) error) error {
	st, err := s.Stage(pairs...)
	if err != nil {
		return err
	}
	return s.CommitStaged(also, st)
}

// sliverValue is a sliver about to be stored: its bbolt key and value,
// which is the sliver itself when small and a pointer into the value log
// once its bytes are written there.
type sliverValue struct {
	shard uint32
	id    crypto.BlobID
	name  []byte
	value []byte
}

// StagedPairs are verified pairs whose large slivers' bytes are written to
// the value log — not yet durable, and not yet visible: CommitStaged makes
// them both. The sliver buffers may be reused once Stage returns.
// (Staging each pair of a StorePairs stream as soon as it was verified, to
// spread the disk writes over the stream, measured no better than one
// batch at the end: BenchmarkStoreRead's cores were as idle.)
type StagedPairs struct {
	values []sliverValue
	exts   []extent
	res    *reservation
}

// Stage writes verified pairs' large slivers to the value log (one write)
// and prepares the rest.
func (s *Store) Stage(pairs ...VerifiedPair) (*StagedPairs, error) {
	st := &StagedPairs{}
	var records []valueRecord
	var external []int // indices into values of the slivers in records
	var inline int64   // bytes going to bbolt
	for _, v := range pairs {
		if s.drop != nil && s.drop(v.shard, v.id) {
			continue // fault injection: a cheater that does not keep it
		}
		for _, sl := range []coding.Sliver{v.pair.Primary, v.pair.Secondary} {
			sv := sliverValue{shard: v.shard, id: v.id, name: sliverBucket(sl.Axis)}
			if sl.EncodedLen() > s.inlineMax {
				head, err := sl.MarshalHeader()
				if err != nil {
					return nil, err
				}
				records = append(records, valueRecord{head: head, body: sl.Data, inPlace: v.inPlace})
				external = append(external, len(st.values))
			} else {
				raw, err := sl.MarshalBinary()
				if err != nil {
					return nil, err
				}
				sv.value = raw
				inline += int64(len(raw)) + 2*crypto.DigestSize
			}
			st.values = append(st.values, sv)
		}
	}
	// Room for it all, before a byte is written: the inline part here,
	// the logged part (with the inline) under the value log's lock.
	s.measureDB()
	if len(records) == 0 && inline > 0 {
		if err := s.CheckRoom(inline); err != nil {
			return nil, err
		}
	}
	if len(records) > 0 {
		var err error
		if st.exts, st.res, err = s.appendChecked(records, inline); err != nil {
			return nil, s.noSpace(err, inline+recordBytes(records))
		}
		for i, e := range st.exts {
			st.values[external[i]].value = e.marshal()
		}
	}
	return st, nil
}

// CommitStaged makes staged pairs durable (one fsync per value segment
// used) and visible (one transaction, with whatever also commits; nil:
// nothing). On error none is committed and their space is given back.
func (s *Store) CommitStaged(also func(tx *bolt.Tx) error, staged ...*StagedPairs) error {
	var res []*reservation
	var size int64 // for a refusal's message
	empty := also == nil
	for _, st := range staged {
		res = append(res, st.res)
		empty = empty && len(st.values) == 0
		for _, sv := range st.values {
			size += int64(len(sv.value))
		}
		if st.res != nil {
			size += st.res.size
		}
	}
	release := func(committed bool) {
		for _, r := range res {
			r.release(committed)
		}
	}
	if empty {
		return nil
	}
	if err := s.values.sync(res...); err != nil {
		release(false)
		return s.noSpace(err, size)
	}
	err := s.update(func(tx *bolt.Tx, freed *bool) error {
		for _, st := range staged {
			for _, sv := range st.values {
				if err := checkLive(tx, sv.id); err != nil {
					return err
				}
				// A pair keeps its metadata: verified against it, it
				// is stored only while the node keeps it, and
				// references it on its shard.
				if err := refMetadata(tx, sv.shard, sv.id); err != nil {
					return err
				}
				b, err := shardBucket(tx, sv.shard, sv.name, true)
				if err != nil {
					return err
				}
				if err := s.dropValue(tx, b, sv.id[:], freed); err != nil { // a pair stored again
					return err
				}
				if err := b.Put(sv.id[:], sv.value); err != nil {
					return err
				}
			}
			if err := s.values.added(tx, st.exts); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	release(err == nil)
	return s.noSpace(err, size)
}

// update runs a write transaction that may drop sliver values (fn sets
// *freed when it did) and gives their space back after the commit.
func (s *Store) update(fn func(tx *bolt.Tx, freed *bool) error) error {
	var freed bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		freed = false
		return fn(tx, &freed)
	})
	if err != nil || !freed {
		return err
	}
	if err := s.values.reclaim(); err != nil {
		return fmt.Errorf("storage: deleted, but giving the space back failed (retried at the next deletion or open): %w", err)
	}
	return nil
}

// dropValue deletes a sliver's entry from its bucket; when the entry
// pointed into the value log, the extent is recorded as freed.
func (s *Store) dropValue(tx *bolt.Tx, b *bolt.Bucket, key []byte, freed *bool) error {
	if err := s.freeValue(tx, b.Get(key), freed); err != nil {
		return err
	}
	return b.Delete(key)
}

// freeValue records a sliver value's extent as freed when the value points
// into the value log (an inline value frees nothing).
func (s *Store) freeValue(tx *bolt.Tx, v []byte, freed *bool) error {
	e, external, err := parseExtent(v)
	if err != nil || !external {
		return err
	}
	*freed = true
	return s.values.dropped(tx, e)
}

// dropSliverBuckets drops every sliver value of a shard's bucket (before
// the bucket itself is deleted).
func (s *Store) dropSliverBuckets(tx *bolt.Tx, sb *bolt.Bucket, freed *bool) error {
	for _, name := range [][]byte{subPrimary, subSecondary} {
		b := sb.Bucket(name)
		if b == nil {
			continue
		}
		err := b.ForEach(func(_, v []byte) error { return s.freeValue(tx, v, freed) })
		if err != nil {
			return err
		}
	}
	return nil
}

// Sliver returns a stored sliver, copied out of the read transaction (so
// the caller may hold it across network calls without pinning the file).
// A sliver whose bytes fail their check is a *CorruptError.
func (s *Store) Sliver(shard uint32, id crypto.BlobID, axis crypto.Axis) (coding.Sliver, error) {
	sl, _, err := s.readSliver(shard, id, axis)
	return sl, err
}

// readSliver is Sliver, also returning the bbolt value it found: the sliver
// itself, or a pointer into the value log.
func (s *Store) readSliver(shard uint32, id crypto.BlobID, axis crypto.Axis) (coding.Sliver, []byte, error) {
	name := sliverBucket(axis)
	for {
		var raw []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			b, _ := shardBucket(tx, shard, name, false)
			if b != nil {
				raw = bytes.Clone(b.Get(id[:]))
			}
			return nil
		})
		if err != nil {
			return coding.Sliver{}, nil, err
		}
		if raw == nil {
			return coding.Sliver{}, nil, fmt.Errorf("%w: %s sliver of %s on shard %d", ErrNotFound, axis, id, shard)
		}
		corrupt := func(cause error) error {
			return &CorruptError{Shard: shard, Blob: id, Axis: axis, Cause: cause, value: raw}
		}
		e, external, err := parseExtent(raw)
		if err != nil {
			return coding.Sliver{}, nil, corrupt(err)
		}
		data := raw
		if external {
			// Read after the transaction closed: the pointer may be
			// dropped meanwhile, and then its bytes may be gone (a
			// punched hole reads as zeros, which fail the CRC).
			data, err = s.values.read(e)
			if (errors.Is(err, errValueGone) || errors.Is(err, errValueCorrupt) || errors.Is(err, errNoRecord)) && !s.pointsTo(shard, id, name, e) {
				continue // deleted or stored again: look again
			}
			if errors.Is(err, errValueCorrupt) || errors.Is(err, errNoRecord) {
				return coding.Sliver{}, nil, corrupt(err)
			}
			if err != nil {
				return coding.Sliver{}, nil, err
			}
		}
		var sl coding.Sliver
		if err := sl.UnmarshalBinary(data); err != nil {
			return coding.Sliver{}, nil, corrupt(err)
		}
		return sl, raw, nil
	}
}

func sliverBucket(axis crypto.Axis) []byte {
	if axis == crypto.Secondary {
		return subSecondary
	}
	return subPrimary
}

// DropCorrupt deletes the corrupt sliver c names — unless it was stored
// again since — and puts its blob back on the recovery list (with epoch as
// its certified epoch, so recovery rebuilds it on any owned shard), in one
// transaction. It reports whether it dropped anything.
func (s *Store) DropCorrupt(c *CorruptError, epoch uint64) (bool, error) {
	dropped := false
	err := s.update(func(tx *bolt.Tx, freed *bool) error {
		b, _ := shardBucket(tx, c.Shard, sliverBucket(c.Axis), false)
		if b == nil || !bytes.Equal(b.Get(c.Blob[:]), c.value) {
			return nil
		}
		dropped = true
		// A broken pointer frees nothing: neither one that does not parse
		// nor one that names no record (its extent is not counted live,
		// and punching it could hit other records).
		if _, _, err := parseExtent(c.value); err == nil && !errors.Is(c.Cause, errNoRecord) {
			if err := s.freeValue(tx, c.value, freed); err != nil {
				return err
			}
		}
		if err := b.Delete(c.Blob[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Put(c.Blob[:], binary.BigEndian.AppendUint64(nil, epoch))
	})
	return dropped, err
}

// pointsTo reports whether a sliver's entry still points at extent e.
func (s *Store) pointsTo(shard uint32, id crypto.BlobID, name []byte, e extent) bool {
	same := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		if b, _ := shardBucket(tx, shard, name, false); b != nil {
			now, external, err := parseExtent(b.Get(id[:]))
			same = err == nil && external && now == e
		}
		return nil
	})
	return same
}

// HasPair reports whether both slivers of a blob are stored for a shard.
func (s *Store) HasPair(shard uint32, id crypto.BlobID) (bool, error) {
	if s.drop != nil && s.drop(shard, id) {
		return true, nil // fault injection: a cheater claims what it dropped
	}
	has := false
	err := s.db.View(func(tx *bolt.Tx) error {
		p, _ := shardBucket(tx, shard, subPrimary, false)
		q, _ := shardBucket(tx, shard, subSecondary, false)
		has = p != nil && q != nil && p.Get(id[:]) != nil && q.Get(id[:]) != nil
		return nil
	})
	return has, err
}

// dropPairs deletes the stored pairs the DropPairs fault names (at start:
// a node restarted with the fault drops what it held) and returns how many.
func (s *Store) dropPairs() (int, error) {
	if s.drop == nil {
		return 0, nil
	}
	dropped := 0
	err := s.update(func(tx *bolt.Tx, freed *bool) error {
		dropped = 0
		shards := tx.Bucket(bucketShards)
		return shards.ForEachBucket(func(k []byte) error {
			shard := binary.BigEndian.Uint32(k)
			sb := shards.Bucket(k)
			for _, name := range [][]byte{subPrimary, subSecondary} {
				b := sb.Bucket(name)
				if b == nil {
					continue
				}
				var doomed [][]byte
				if err := b.ForEach(func(id, _ []byte) error {
					if len(id) == crypto.DigestSize && s.drop(shard, crypto.BlobID(id)) {
						doomed = append(doomed, bytes.Clone(id))
					}
					return nil
				}); err != nil {
					return err
				}
				for _, id := range doomed {
					if err := s.dropValue(tx, b, id, freed); err != nil {
						return err
					}
				}
				if bytes.Equal(name, subPrimary) {
					dropped += len(doomed)
				}
			}
			return nil
		})
	})
	return dropped, err
}

// Blobs lists up to limit blob IDs with a stored pair on a shard, after the
// given ID (the zero ID starts at the beginning): the pages of a shard sync.
func (s *Store) Blobs(shard uint32, after crypto.BlobID, limit int) ([]crypto.BlobID, error) {
	var out []crypto.BlobID
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := shardBucket(tx, shard, subPrimary, false)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, _ := c.Seek(after[:])
		if k != nil && bytes.Equal(k, after[:]) {
			k, _ = c.Next()
		}
		for ; k != nil && len(out) < limit; k, _ = c.Next() {
			out = append(out, crypto.BlobID(k))
		}
		return nil
	})
	return out, err
}

// SetShardState records what the node does with a shard.
func (s *Store) SetShardState(shard uint32, state ShardState) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStates).Put(shardKey(shard), []byte{byte(state)})
	})
}

// ShardStates returns every shard's recorded state.
func (s *Store) ShardStates() (map[uint32]ShardState, error) {
	out := map[uint32]ShardState{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStates).ForEach(func(k, v []byte) error {
			out[binary.BigEndian.Uint32(k)] = ShardState(v[0])
			return nil
		})
	})
	return out, err
}

// KeepsShard reports whether the store keeps anything of a shard: a
// sliver, or a reference to a blob's metadata.
func (s *Store) KeepsShard(shard uint32) (bool, error) {
	keeps := false
	err := s.db.View(func(tx *bolt.Tx) error {
		keeps = tx.Bucket(bucketShards).Bucket(shardKey(shard)) != nil
		return nil
	})
	return keeps, err
}

// DeleteShard removes everything of a shard. allowed is asked inside the
// deleting transaction — with the committed state as it is then — so a
// shard that moved back to this node in the meantime is never deleted
// (DESIGN §5: no timer decides a deletion).
func (s *Store) DeleteShard(shard uint32, allowed func() bool) error {
	return s.update(func(tx *bolt.Tx, freed *bool) error {
		if !allowed() {
			return fmt.Errorf("%w: shard %d", ErrDeleteRefused, shard)
		}
		shards := tx.Bucket(bucketShards)
		if sb := shards.Bucket(shardKey(shard)); sb != nil {
			if err := s.dropSliverBuckets(tx, sb, freed); err != nil {
				return err
			}
			if err := releaseShardMetadata(tx, sb); err != nil {
				return err
			}
			if err := shards.DeleteBucket(shardKey(shard)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketStates).Put(shardKey(shard), []byte{byte(ShardRetired)})
	})
}

// DeleteBlob removes a blob's slivers and its reference to the metadata
// from a shard, if allowed (asked inside the transaction, as for
// DeleteShard); the metadata goes with the last shard's reference.
func (s *Store) DeleteBlob(shard uint32, id crypto.BlobID, allowed func() bool) error {
	return s.update(func(tx *bolt.Tx, freed *bool) error {
		if !allowed() {
			return fmt.Errorf("%w: %s on shard %d", ErrDeleteRefused, id, shard)
		}
		sb := tx.Bucket(bucketShards).Bucket(shardKey(shard))
		if sb == nil {
			return nil
		}
		if err := s.dropSlivers(tx, sb, id, freed); err != nil {
			return err
		}
		return unrefMetadata(tx, sb, id)
	})
}

// dropSlivers deletes a blob's two slivers from a shard's bucket.
func (s *Store) dropSlivers(tx *bolt.Tx, sb *bolt.Bucket, id crypto.BlobID, freed *bool) error {
	for _, name := range [][]byte{subPrimary, subSecondary} {
		if b := sb.Bucket(name); b != nil {
			if err := s.dropValue(tx, b, id[:], freed); err != nil {
				return err
			}
		}
	}
	return nil
}

// AppliedEvent is the index of the last control-plane event the node
// applied; a restart resumes after it.
func (s *Store) AppliedEvent() (uint64, error) {
	var index uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketNode).Get(keyEvent); len(v) == 8 {
			index = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return index, err
}

// SetAppliedEvent records the last applied event index.
func (s *Store) SetAppliedEvent(index uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNode).Put(keyEvent, binary.BigEndian.AppendUint64(nil, index))
	})
}

var (
	bucketPending = []byte("pending") // blob ID → certified blobs to check for missing slivers
	bucketInvalid = []byte("invalid") // blob ID → marked invalid by the control plane
	// Tombstones of blobs that expired or lapsed (blob ID → u64 epoch,
	// and u64 epoch ‖ blob ID → present, to prune them in order).
	bucketEnded   = []byte("ended")
	bucketEndedBy = []byte("ended-by-epoch")
	present       = []byte{1} // the value of set-like buckets
)

// tombstoneEpochs is how many epochs a tombstone outlives its blob's end.
// A write checked against the registry before the end and committed after
// it is refused by the tombstone; no write spans epochs like that.
const tombstoneEpochs = 2

// checkLive refuses, inside a write transaction, a blob the node has seen
// end: the event that ended it deleted its data, so whatever is written
// now would never be deleted. A write that commits first is deleted by
// the event instead: bbolt orders the two.
func checkLive(tx *bolt.Tx, id crypto.BlobID) error {
	if tx.Bucket(bucketInvalid).Get(id[:]) != nil {
		return fmt.Errorf("%w: blob %s is invalid", ErrEnded, id)
	}
	if v := tx.Bucket(bucketEnded).Get(id[:]); len(v) == 8 {
		return fmt.Errorf("%w: blob %s expired (in epoch %d)", ErrEnded, id, binary.BigEndian.Uint64(v))
	}
	return nil
}

// bury records a tombstone for an ended blob.
func bury(tx *bolt.Tx, id crypto.BlobID, epoch uint64) error {
	if err := revive(tx, id); err != nil { // an older tombstone
		return err
	}
	if err := tx.Bucket(bucketEnded).Put(id[:], binary.BigEndian.AppendUint64(nil, epoch)); err != nil {
		return err
	}
	return tx.Bucket(bucketEndedBy).Put(append(binary.BigEndian.AppendUint64(nil, epoch), id[:]...), present)
}

// revive drops a blob's tombstone: it was registered again.
func revive(tx *bolt.Tx, id crypto.BlobID) error {
	v := tx.Bucket(bucketEnded).Get(id[:])
	if len(v) != 8 {
		return nil
	}
	if err := tx.Bucket(bucketEndedBy).Delete(append(append([]byte(nil), v...), id[:]...)); err != nil {
		return err
	}
	return tx.Bucket(bucketEnded).Delete(id[:])
}

// pruneTombstones drops the tombstones of blobs that ended before epoch
// upTo.
func pruneTombstones(tx *bolt.Tx, upTo uint64) error {
	var keys [][]byte
	c := tx.Bucket(bucketEndedBy).Cursor()
	for k, _ := c.First(); k != nil && len(k) == 8+crypto.DigestSize && binary.BigEndian.Uint64(k) < upTo; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := tx.Bucket(bucketEnded).Delete(k[8:]); err != nil {
			return err
		}
		if err := tx.Bucket(bucketEndedBy).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// PutMetadataShards stores a blob's metadata for several shards in one
// durable transaction, after checking it against the blob ID and the
// codec: the node keeps one copy, which each shard references until it
// drops the blob (DeleteBlob, DeleteShard, the blob's end).
func (s *Store) PutMetadataShards(shards []uint32, id crypto.BlobID, meta *crypto.Metadata) error {
	if err := meta.CheckBlobID(id); err != nil {
		return err
	}
	if _, err := coding.ParamsForMetadata(meta, s.codecs.Params().MaxBlobLength); err != nil {
		return err
	}
	if _, err := s.codecs.ForMetadata(meta); err != nil {
		return fmt.Errorf("storage: metadata for %d shards with %s: %w", meta.Shards, coding.Encoding(meta.Encoding), err)
	}
	raw, err := meta.MarshalBinary()
	if err != nil {
		return err
	}
	// New metadata needs room (references are a few bytes each).
	stored := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		stored = metadataRaw(tx, id) != nil
		return nil
	})
	if !stored {
		if err := s.CheckRoom(int64(len(raw))); err != nil {
			return err
		}
	}
	return s.noSpace(s.db.Update(func(tx *bolt.Tx) error {
		if err := checkLive(tx, id); err != nil {
			return err
		}
		if metadataRaw(tx, id) == nil {
			if err := tx.Bucket(bucketMetadata).Put(id[:], raw); err != nil {
				return err
			}
		}
		for _, shard := range shards {
			if err := refMetadata(tx, shard, id); err != nil {
				return err
			}
		}
		return nil
	}), int64(len(raw)))
}

// AnyMetadata returns a blob's metadata if any shard of the node
// references it.
func (s *Store) AnyMetadata(id crypto.BlobID) (*crypto.Metadata, error) {
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		raw = bytes.Clone(metadataRaw(tx, id))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: metadata of %s", ErrNotFound, id)
	}
	meta := new(crypto.Metadata)
	return meta, meta.UnmarshalBinary(raw)
}

// EventBatch is what a page of control-plane events changes on the node;
// ApplyEvents writes all of it together with the new applied index, so a
// crash either applied the page or did not.
type EventBatch struct {
	Index   uint64          // the last event of the page
	Epoch   uint64          // the latest epoch its events name
	Recover []PendingBlob   // certified: check for missing slivers
	Invalid []crypto.BlobID // marked invalid: drop, refuse from now on
	Ended   []crypto.BlobID // expired or lapsed: drop, refuse until registered again
	// Registered, perhaps again after they ended: writes are taken again.
	// An ID in both lists was registered after it ended.
	Registered []crypto.BlobID
}

// ApplyEvents applies a page of events.
func (s *Store) ApplyEvents(b EventBatch) error {
	return s.update(func(tx *bolt.Tx, freed *bool) error {
		if err := s.applyBatch(tx, b, freed); err != nil {
			return err
		}
		return tx.Bucket(bucketNode).Put(keyEvent, binary.BigEndian.AppendUint64(nil, b.Index))
	})
}

// applyBatch writes what a batch changes, but its index.
func (s *Store) applyBatch(tx *bolt.Tx, b EventBatch, freed *bool) error {
	for _, p := range b.Recover {
		if err := tx.Bucket(bucketPending).Put(p.ID[:], binary.BigEndian.AppendUint64(nil, p.Epoch)); err != nil {
			return err
		}
	}
	for _, id := range b.Invalid {
		if err := tx.Bucket(bucketInvalid).Put(id[:], present); err != nil {
			return err
		}
	}
	for _, id := range append(append([]crypto.BlobID(nil), b.Invalid...), b.Ended...) {
		if err := tx.Bucket(bucketPending).Delete(id[:]); err != nil {
			return err
		}
		if err := s.deleteBlobEverywhere(tx, id, freed); err != nil {
			return err
		}
	}
	for _, id := range b.Ended {
		if err := bury(tx, id, b.Epoch); err != nil {
			return err
		}
	}
	for _, id := range b.Registered {
		if err := revive(tx, id); err != nil {
			return err
		}
	}
	if b.Epoch >= tombstoneEpochs {
		if err := pruneTombstones(tx, b.Epoch-tombstoneEpochs+1); err != nil {
			return err
		}
	}
	return nil
}

// deleteBlobEverywhere removes a blob from every shard, and its metadata.
// Its callers delete only what a committed event (expiry, invalidity)
// ended for good, in the transaction that records the event as applied.
func (s *Store) deleteBlobEverywhere(tx *bolt.Tx, id crypto.BlobID, freed *bool) error {
	shards := tx.Bucket(bucketShards)
	err := shards.ForEachBucket(func(k []byte) error {
		sb := shards.Bucket(k)
		if err := s.dropSlivers(tx, sb, id, freed); err != nil {
			return err
		}
		if b := sb.Bucket(subMetaRefs); b != nil {
			return b.Delete(id[:])
		}
		return nil
	})
	if err != nil {
		return err
	}
	return forgetMetadata(tx, id)
}

// PendingBlob is a certified blob on the recovery list, with the epoch it
// was certified in.
type PendingBlob struct {
	ID    crypto.BlobID
	Epoch uint64
}

// Pending lists the certified blobs still to check for missing slivers.
func (s *Store) Pending() ([]PendingBlob, error) {
	var out []PendingBlob
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			p := PendingBlob{ID: crypto.BlobID(k)}
			if len(v) == 8 {
				p.Epoch = binary.BigEndian.Uint64(v)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// DonePending removes a blob from the recovery list.
func (s *Store) DonePending(id crypto.BlobID) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketPending); b != nil {
			return b.Delete(id[:])
		}
		return nil
	})
}

// IsInvalid reports whether the control plane marked the blob invalid.
func (s *Store) IsInvalid(id crypto.BlobID) (bool, error) {
	invalid := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketInvalid); b != nil {
			invalid = b.Get(id[:]) != nil
		}
		return nil
	})
	return invalid, err
}

// SetShardStates records several shards' states in one transaction.
func (s *Store) SetShardStates(states map[uint32]ShardState) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for shard, state := range states {
			if err := tx.Bucket(bucketStates).Put(shardKey(shard), []byte{byte(state)}); err != nil {
				return err
			}
		}
		return nil
	})
}

var bucketSync = []byte("sync") // u64 epoch ‖ u32 shard → last blob ID handed over

func syncKey(epoch uint64, shard uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, epoch), shard)
}

// SyncCursor is how far a shard's handover in an epoch got: the last blob
// ID (in ID order) whose pair is stored; zero: not started.
func (s *Store) SyncCursor(epoch uint64, shard uint32) (crypto.BlobID, error) {
	var cursor crypto.BlobID
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSync); b != nil {
			copy(cursor[:], b.Get(syncKey(epoch, shard)))
		}
		return nil
	})
	return cursor, err
}

// WriteSynced writes verified pairs of a shard's handover together with
// the new cursor, so a restart resumes after the last pair on disk.
func (s *Store) WriteSynced(epoch uint64, shard uint32, cursor crypto.BlobID, pairs ...VerifiedPair) error {
	return s.writePairs(pairs, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSync)
		if err != nil {
			return err
		}
		return b.Put(syncKey(epoch, shard), cursor[:])
	})
}
