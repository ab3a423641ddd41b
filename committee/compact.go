package committee

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

// Compaction (DESIGN.md "Retention"): the state keeps what is live plus a
// retention horizon of history, not everything that ever happened. Every
// step runs inside Apply, tied to a command's index (never to a batch,
// whose boundaries differ between replicas), and does at most
// compactBudget deletions, so one apply never walks years of history;
// a backlog (an older state file, a burst of expiries) is caught up over
// the following commands.
//
//   - events older than the last RetainEpochs epochs: the horizon (the
//     first retained index, `event-horizon` in meta) moves at each epoch
//     change; Events below it is refused (ErrCompacted);
//   - blob records that expired or lapsed RetainEpochs epochs ago, found
//     through `ended-blobs` (end epoch ‖ index ‖ blob ID); invalid records
//     stay, since invalid is for good;
//   - challenge rounds older than the last retainRounds;
//   - command records older than commandRetention indices or below the
//     event horizon, whichever is later (an expired record is ignored
//     even before its deletion, so the answer to a retried ID does not
//     depend on how far deletion got).
var (
	bucketEpochStarts = []byte("epoch-starts") // u64 epoch → u64 Raft index of the change that started it
	bucketEnded       = []byte("ended-blobs")  // u64 end epoch ‖ u64 index ‖ blob ID → nothing: expired/lapsed records by age

	keyHorizon     = []byte("event-horizon")     // first retained event index (0: nothing compacted)
	keyCompacting  = []byte("compacting")        // present while compaction is behind its targets
	keyLegacySweep = []byte("legacy-blob-sweep") // last blob ID the sweep of older records looked at; sweepDone when finished

	sweepDone = []byte("done")

	// laterBuckets are created at open when missing: a state file written
	// before compaction existed has none of them and still opens (and an
	// uploaded snapshot of that version is still taken).
	laterBuckets = [][]byte{bucketEpochStarts, bucketEnded, bucketObjects, bucketObjectExpiry, bucketBlobObjects, bucketOwnerObjects}
)

const (
	// DefaultRetainEpochs is how many epochs of events and ended-blob
	// records the state keeps.
	DefaultRetainEpochs = 8
	// MinRetainEpochs: storage nodes keep tombstones of ended blobs for
	// two epochs (storage tombstoneEpochs) and a node behind the horizon
	// bootstraps from state; with fewer than this, a node restarting
	// across one epoch change would find its events gone.
	MinRetainEpochs = 4
	// retainRounds is how many challenge rounds are kept: eviction reads
	// a node's last K closed rounds (--auto-evict K ≤ retainRounds) and
	// node listings the last historyRounds.
	retainRounds = 64
	// MaxEvictAfter is the largest --auto-evict K eviction can honour.
	MaxEvictAfter = retainRounds
	// compactBudget bounds the deletions of one command's compaction step.
	compactBudget = 64
	// catchUpBudget bounds the deletions of a compact command's step: it
	// is proposed only to catch up, and 1,024 bbolt deletions still keep
	// its apply to milliseconds.
	catchUpBudget = 1024
)

// KindCompact is a command that only does a step of compaction, with
// catchUpBudget: the leader proposes it while compaction is behind
// (Scheduler), so that a quiet network — no commands of its own to carry
// the steps — still bounds its state after an epoch change or a burst of
// expiries.
const KindCompact Kind = "compact"

// Compact is KindCompact's body (nothing: the index is what it needs).
type Compact struct{}

// CompactionPending reports whether compaction is behind its targets.
func (f *FSM) CompactionPending() (pending bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		pending = tx.Bucket(bucketMeta).Get(keyCompacting) != nil
		return nil
	})
	return pending, err
}

// ErrCompacted is returned for a read of events the horizon has passed.
type ErrCompacted struct{ Horizon uint64 }

func (e *ErrCompacted) Error() string {
	return fmt.Sprintf("events compacted below index %d: bootstrap from state", e.Horizon)
}

func endedKey(epoch, index uint64, id crypto.BlobID) []byte {
	return append(indexKey(epoch, index), id[:]...)
}

// noteEpochStart runs at the change to epoch e (at index): it records
// where e starts and moves the event horizon to the start of the oldest
// retained epoch, then flags compaction as due.
func (f *FSM) noteEpochStart(tx *bolt.Tx, index, e uint64) error {
	starts, meta := tx.Bucket(bucketEpochStarts), tx.Bucket(bucketMeta)
	if err := starts.Put(u64Key(e), u64Key(index)); err != nil {
		return err
	}
	if e > f.cfg.RetainEpochs {
		oldest := e - f.cfg.RetainEpochs + 1
		// An epoch that started before this version recorded starts has
		// none: the horizon waits until the retained epochs all have one.
		if raw := starts.Get(u64Key(oldest)); len(raw) == 8 {
			if h := binary.BigEndian.Uint64(raw); h > readU64(meta, keyHorizon) {
				if err := meta.Put(keyHorizon, u64Key(h)); err != nil {
					return err
				}
			}
		}
		if err := starts.Delete(u64Key(oldest - 1)); err != nil {
			return err
		}
	}
	return meta.Put(keyCompacting, present)
}

var present = []byte{1}

// compactStep is one command's share of compaction, at index: at most
// budget deletions.
func (f *FSM) compactStep(tx *bolt.Tx, index uint64, budget int) error {
	budget, err := f.pruneCommands(tx, index, budget)
	if err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyCompacting) == nil {
		return nil
	}
	done := true
	for _, step := range []func(*bolt.Tx, uint64, int) (int, bool, error){f.compactEvents, f.compactBlobs, f.compactRounds, f.sweepLegacyBlobs} {
		if budget <= 0 {
			return nil
		}
		left, finished, err := step(tx, index, budget)
		if err != nil {
			return err
		}
		budget, done = left, done && finished
	}
	if done {
		return meta.Delete(keyCompacting)
	}
	return nil
}

// pruneCommands deletes up to budget command records that expired at
// index (commandExpiry), and returns the budget left.
func (f *FSM) pruneCommands(tx *bolt.Tx, index uint64, budget int) (int, error) {
	limit := f.commandExpiry(tx, index)
	if limit == 0 {
		return budget, nil
	}
	byIndex, commands := tx.Bucket(bucketCommandIndex), tx.Bucket(bucketCommands)
	c := byIndex.Cursor()
	for k, _ := c.First(); k != nil && budget > 0 && len(k) >= 8 && binary.BigEndian.Uint64(k[:8]) < limit; k, _ = c.First() {
		// The ID may have been used again since (its record expired):
		// only the record this entry made goes.
		if raw := commands.Get(k[8:]); raw != nil {
			if res, err := decodeResult(raw); err != nil || res.Index == binary.BigEndian.Uint64(k[:8]) {
				if err := commands.Delete(k[8:]); err != nil {
					return budget, err
				}
			}
		}
		if err := c.Delete(); err != nil {
			return budget, err
		}
		budget--
	}
	return budget, nil
}

// commandExpiry is the first index whose command record is still kept at
// index: commandRetention indices back, or the event horizon if that is
// later. A record older than the retained history answers no retry —
// without the horizon bound, a burst of commands (100,000 registrations)
// would keep its records for 2^20 indices after the blobs and their
// events are gone, and snapshots would not shrink back to the live state.
func (f *FSM) commandExpiry(tx *bolt.Tx, index uint64) uint64 {
	var limit uint64
	if index > f.commandRetention {
		limit = index - f.commandRetention
	}
	return max(limit, eventHorizon(tx))
}

// commandExpired reports whether a command record is past its retention
// at index: it is then ignored, deleted or not yet.
func (f *FSM) commandExpired(tx *bolt.Tx, res *Result, index uint64) bool {
	return res.Index < f.commandExpiry(tx, index)
}

// compactEvents deletes events below the horizon.
func (f *FSM) compactEvents(tx *bolt.Tx, _ uint64, budget int) (int, bool, error) {
	horizon := u64Key(readU64(tx.Bucket(bucketMeta), keyHorizon))
	return deleteBelow(tx.Bucket(bucketEvents), horizon, budget)
}

// deleteBelow deletes b's keys below bound, from the first, up to budget
// of them; done reports that none is left below it.
func deleteBelow(b *bolt.Bucket, bound []byte, budget int) (left int, done bool, err error) {
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, bound) < 0; k, _ = c.First() {
		if budget == 0 {
			return 0, false, nil
		}
		if err := c.Delete(); err != nil {
			return budget, false, err
		}
		budget--
	}
	return budget, true, nil
}

// compactBlobs deletes the records of blobs that ended RetainEpochs
// epochs ago (unless registered again since).
func (f *FSM) compactBlobs(tx *bolt.Tx, _ uint64, budget int) (int, bool, error) {
	state, err := f.currentEpoch(tx)
	if err != nil {
		return budget, false, err
	}
	if state.Epoch() <= f.cfg.RetainEpochs {
		return budget, true, nil
	}
	cutoff := state.Epoch() - f.cfg.RetainEpochs
	blobs := tx.Bucket(bucketBlobs)
	c := tx.Bucket(bucketEnded).Cursor()
	for k, _ := c.First(); k != nil && len(k) == 16+crypto.DigestSize && binary.BigEndian.Uint64(k) <= cutoff; k, _ = c.First() {
		if budget == 0 {
			return 0, false, nil
		}
		id := crypto.BlobID(k[16:])
		var rec BlobRecord
		found, err := getBlob(blobs, id[:], &rec)
		if err != nil {
			return budget, false, fmt.Errorf("blob %s: %w", id, err)
		}
		if found && rec.Expired && !rec.Invalid && rec.EndedIndex == binary.BigEndian.Uint64(k[8:16]) {
			if err := deleteBlob(tx, rec); err != nil {
				return budget, false, err
			}
		}
		if err := c.Delete(); err != nil {
			return budget, false, err
		}
		budget--
	}
	return budget, true, nil
}

// compactRounds deletes challenge rounds older than the last retainRounds
// (all closed: only the latest round can be open).
func (f *FSM) compactRounds(tx *bolt.Tx, _ uint64, budget int) (int, bool, error) {
	latest := readU64(tx.Bucket(bucketMeta), keyRound)
	if latest <= retainRounds {
		return budget, true, nil
	}
	return deleteBelow(tx.Bucket(bucketChallenges), u64Key(latest-retainRounds+1), budget)
}

// sweepLegacyBlobs indexes, once and in budget-sized steps, the ended
// records a state file of an earlier version holds without an
// `ended-blobs` entry, so that compactBlobs deletes them too.
func (f *FSM) sweepLegacyBlobs(tx *bolt.Tx, index uint64, budget int) (int, bool, error) {
	meta := tx.Bucket(bucketMeta)
	from := meta.Get(keyLegacySweep)
	if bytes.Equal(from, sweepDone) {
		return budget, true, nil
	}
	var stale []BlobRecord
	var last []byte
	c := tx.Bucket(bucketBlobs).Cursor()
	k, v := c.First()
	if from != nil {
		if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
			k, v = c.Next()
		}
	}
	for ; k != nil && budget > 0; k, v = c.Next() {
		var rec BlobRecord
		if err := decodeBlobRecord(v, &rec); err != nil {
			return budget, false, fmt.Errorf("blob %x: %w", k, err)
		}
		if rec.Expired && !rec.Invalid && rec.EndedIndex == 0 {
			stale = append(stale, rec)
		}
		last = append(last[:0], k...)
		budget--
	}
	finished := k == nil
	for _, rec := range stale {
		rec.EndedIndex = index
		if err := putBlob(tx, rec); err != nil {
			return budget, false, err
		}
		if err := tx.Bucket(bucketEnded).Put(endedKey(f.endEpoch(rec), index, rec.ID), nil); err != nil {
			return budget, false, err
		}
	}
	if finished {
		return budget, true, meta.Put(keyLegacySweep, sweepDone)
	}
	return budget, false, meta.Put(keyLegacySweep, last)
}

// endEpoch is the epoch at whose start an ended blob ended: its end
// epoch, or for a registration never certified, its lapse if earlier.
func (f *FSM) endEpoch(rec BlobRecord) uint64 {
	if rec.CertifiedEpoch == 0 {
		return min(rec.EndEpoch, rec.RegisteredEpoch+f.cfg.LapseEpochs)
	}
	return rec.EndEpoch
}

// eventHorizon is the first retained event index (0: none compacted).
func eventHorizon(tx *bolt.Tx) uint64 { return readU64(tx.Bucket(bucketMeta), keyHorizon) }

// errCursorGone: a ListCertified cursor names a blob the state no longer
// has a place in the certification order for.
var errCursorGone = errors.New("committee: the cursor blob is no longer in the certified list")
