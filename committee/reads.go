package committee

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/epoch"
	"github.com/weftstore/weft/shardmap"
)

// Reads of the local state. On a follower they may lag the leader; the
// service layer adds linearizable reads (leader check plus read index).

// Config returns the genesis configuration.
func (f *FSM) Config() Config { return f.cfg }

// AppliedIndex is the Raft index the state file reflects.
func (f *FSM) AppliedIndex() (index uint64, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		index = readApplied(tx)
		return nil
	})
	return index, err
}

// EpochState returns the epoch, and every shard's owner and holder.
func (f *FSM) EpochState() (s epoch.State, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		s, err = readEpoch(tx)
		return err
	})
	return s, err
}

// Node returns a registered node.
func (f *FSM) Node(id shardmap.NodeID) (rec NodeRecord, found bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		found, err = getJSON(tx.Bucket(bucketNodes), []byte(id), &rec)
		return err
	})
	return rec, found, err
}

// Nodes lists the registered nodes by ID.
func (f *FSM) Nodes() (out []NodeRecord, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(_, v []byte) error {
			var rec NodeRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// Committee returns an epoch's committee.
func (f *FSM) Committee(e uint64) (rec CommitteeRecord, found bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		found, err = getJSON(tx.Bucket(bucketCommittees), u64Key(e), &rec)
		return err
	})
	return rec, found, err
}

// Blob returns a registered blob.
func (f *FSM) Blob(id crypto.BlobID) (rec BlobRecord, found bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		found, err = getBlob(tx.Bucket(bucketBlobs), id[:], &rec)
		return err
	})
	return rec, found, err
}

// CertifiedBefore pages, in blob ID order after the given one, the live
// blobs certified in an epoch before the given one: every shard holds a
// pair of each, so this is any incoming owner's to-do list, and ID order is
// the order of the holder's SyncShard stream it is merged with (a cursor
// that ended since still seeks). It walks the registry in ID order (cost:
// the blobs it skips — uncertified ones and ended ones not compacted yet —,
// not the whole registry per page); more reports whether it stopped at the
// limit.
func (f *FSM) CertifiedBefore(epoch uint64, after crypto.BlobID, limit int) (out []BlobRecord, more bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlobs).Cursor()
		k, v := c.Seek(after[:])
		if k != nil && bytes.Equal(k, after[:]) {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			var rec BlobRecord
			if err := decodeBlobRecord(v, &rec); err != nil {
				return err
			}
			if !rec.Live() || rec.CertifiedEpoch == 0 || rec.CertifiedEpoch >= epoch {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, more, err
}

// CertifiedInOrder pages the same blobs as CertifiedBefore in
// certification order (so, by epoch), after the given blob (zero: from the
// first): a bootstrapping node's listing. It walks the `certified` sequence from the
// cursor blob's place and stops at the first blob certified in the given
// epoch or later — certification order is epoch order — so a page costs
// the page, not the registry. A cursor blob that ended since keeps its
// place; one whose record was compacted away is errCursorGone.
func (f *FSM) CertifiedInOrder(epoch uint64, after crypto.BlobID, limit int) (out []BlobRecord, more bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		blobs := tx.Bucket(bucketBlobs)
		var start uint64
		if after != (crypto.BlobID{}) {
			var cursor BlobRecord
			found, err := getBlob(blobs, after[:], &cursor)
			if err != nil {
				return err
			}
			if !found || cursor.CertSeq == 0 {
				return fmt.Errorf("%w: %s", errCursorGone, after)
			}
			start = cursor.CertSeq // the sequence number after the cursor's
		}
		c := tx.Bucket(bucketCertified).Cursor()
		for k, v := c.Seek(u64Key(start)); k != nil; k, v = c.Next() {
			var rec BlobRecord
			if found, err := getBlob(blobs, v, &rec); err != nil || !found {
				return fmt.Errorf("committee: certified sequence %x names blob %x without a record (%v)", k, v, err)
			}
			if rec.CertifiedEpoch >= epoch {
				return nil
			}
			if !rec.Live() {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, more, err
}

// Events returns the events made by indices after the given one, in
// order, up to limit — but never part of one index's events: readers
// resume after the last index they got, so a page cut inside an index
// would lose the rest of it (an epoch change makes an event for every
// blob and object it ends, easily more than a page). A page ends before
// an index whose events do not all fit; an index whose events alone
// exceed limit is returned whole. Below the horizon (compacted) it is
// *ErrCompacted.
func (f *FSM) Events(after uint64, limit int) (out []Event, err error) {
	limit = max(limit, 1)
	err = f.view(func(tx *bolt.Tx) error {
		if h := eventHorizon(tx); after+1 < h {
			return &ErrCompacted{Horizon: h}
		}
		c := tx.Bucket(bucketEvents).Cursor()
		start := binary.BigEndian.AppendUint64(nil, after+1)
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			if bytes.Compare(k, start) < 0 {
				continue
			}
			if len(out) >= limit {
				index := binary.BigEndian.Uint64(k[:8])
				if last := out[len(out)-1].Index; index != last {
					break // the page ends with a whole index
				}
				if first := out[0].Index; first != index {
					// limit falls inside the last index: leave all of
					// it to the next page.
					out = out[:slices.IndexFunc(out, func(e Event) bool { return e.Index == index })]
					break
				}
				// One index fills the page: it goes whole.
			}
			e, err := decodeEvent(v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// EventHorizon is the first retained event index (0: nothing compacted).
func (f *FSM) EventHorizon() (h uint64, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		h = eventHorizon(tx)
		return nil
	})
	return h, err
}

// Client returns a client credential's record.
func (f *FSM) Client(id string) (rec ClientRecord, found bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		found, err = getJSON(tx.Bucket(bucketClients), []byte(id), &rec)
		return err
	})
	return rec, found, err
}

// ClientByToken finds the client a bearer token's hash was issued to,
// in the FSM's in-memory table of the tokens bucket (tokens.go): no read
// transaction. The read lock orders it with a restore swapping the file
// and the table.
func (f *FSM) ClientByToken(hash crypto.Digest) (id string, found bool, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, found = f.tokens.lookup(hash)
	return id, found, nil
}

// PeerAddress returns where a control-plane voter serves gRPC.
func (f *FSM) PeerAddress(id string) (addr string, found bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketPeers).Get([]byte(id)); v != nil {
			addr, found = string(v), true
		}
		return nil
	})
	return addr, found, err
}

// Clients lists the client credentials (without token hashes).
func (f *FSM) Clients() (out []ClientRecord, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClients).ForEach(func(_, v []byte) error {
			var rec ClientRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			rec.TokenHash = crypto.Digest{}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// WriteSnapshot streams a consistent copy of the state file to w and
// returns the state index it reflects.
func (f *FSM) WriteSnapshot(w io.Writer) (index uint64, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		index = readApplied(tx)
		return writeSnapshot(f.db, tx, filepath.Dir(f.path), w)
	})
	return index, err
}
