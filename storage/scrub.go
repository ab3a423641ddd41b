package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

// Scrubbing: a background pass over every stored sliver, paced to a byte
// rate, that reads each one back and checks it — large slivers against
// their value-log CRC, small (inline) ones against the blob's metadata. A
// sliver that fails is handled as one found corrupt by a read: dropped and
// rebuilt from peers (Node.sliver). Reads find rot only in what is read;
// the scrub finds it in cold data too, while the peers that can rebuild it
// are still there. Passes start ScrubInterval after the previous one ended
// (after the node's first start, for the first); the cursor is kept in
// bbolt, so a restart resumes the pass where it stopped.

var (
	keyScrubCursor = []byte("scrub-cursor") // u32 shard ‖ blob ID: the last sliver pair checked
	keyScrubLast   = []byte("scrub-last")   // u64 Unix ns: when the last pass ended
)

// ScrubState is where the scrub stands.
type ScrubState struct {
	Active   bool          // a pass is under way, at the cursor
	Shard    uint32        // the cursor: shard…
	After    crypto.BlobID // …and the last blob done in it (zero: none yet)
	LastDone time.Time     // when the last pass ended (zero: never recorded)
}

// ScrubState reads the scrub's state.
func (s *Store) ScrubState() (ScrubState, error) {
	var st ScrubState
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNode)
		if v := b.Get(keyScrubCursor); len(v) == 4+crypto.DigestSize {
			st.Active = true
			st.Shard = binary.BigEndian.Uint32(v)
			st.After = crypto.BlobID(v[4:])
		}
		if v := b.Get(keyScrubLast); len(v) == 8 {
			st.LastDone = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	return st, err
}

// SetScrubState records the scrub's state.
func (s *Store) SetScrubState(st ScrubState) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNode)
		if !st.LastDone.IsZero() {
			if err := b.Put(keyScrubLast, binary.BigEndian.AppendUint64(nil, uint64(st.LastDone.UnixNano()))); err != nil {
				return err
			}
		}
		if !st.Active {
			return b.Delete(keyScrubCursor)
		}
		return b.Put(keyScrubCursor, append(binary.BigEndian.AppendUint32(nil, st.Shard), st.After[:]...))
	})
}

// Shards lists the shards the store holds anything of, in order.
func (s *Store) Shards() ([]uint32, error) {
	var out []uint32
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketShards).ForEachBucket(func(k []byte) error {
			out = append(out, binary.BigEndian.Uint32(k))
			return nil
		})
	})
	return out, err
}

// CheckSliver reads a stored sliver back and checks it: a value-log record
// against its CRC (Sliver does), an inline sliver — which bbolt keeps
// without a checksum — against the blob's metadata. It returns the bytes
// read; a sliver that fails is a *CorruptError.
func (s *Store) CheckSliver(shard uint32, id crypto.BlobID, axis crypto.Axis) (int, error) {
	sl, raw, err := s.readSliver(shard, id, axis)
	if err != nil {
		return 0, err
	}
	if _, external, _ := parseExtent(raw); external {
		return len(sl.Data), nil
	}
	meta, err := s.Metadata(shard, id)
	if err != nil {
		return len(sl.Data), err
	}
	codec, err := s.codecs.ForMetadata(meta)
	if err != nil {
		return len(sl.Data), err
	}
	if err := codec.VerifySliver(meta, sl); errors.Is(err, crypto.ErrSliverMismatch) {
		return len(sl.Data), &CorruptError{Shard: shard, Blob: id, Axis: axis, Cause: err, value: raw}
	} else if err != nil {
		return len(sl.Data), err
	}
	return len(sl.Data), nil
}

// scrub runs scrub passes, one every ScrubInterval, until ctx ends.
func (n *Node) scrub(ctx context.Context) {
	if n.cfg.ScrubInterval <= 0 {
		return
	}
	for ctx.Err() == nil {
		st, err := n.store.ScrubState()
		if err == nil && !st.Active && st.LastDone.IsZero() {
			st.LastDone = n.cfg.Clock() // a new node: its first pass waits one interval
			err = n.store.SetScrubState(st)
		}
		if err != nil {
			n.log.Error("storage: scrub state", "err", err)
			sleep(ctx, time.Minute)
			continue
		}
		if !st.Active {
			// At most an interval: a clock stepped back since the last
			// pass must not put the next one off by the step.
			if wait := min(st.LastDone.Add(n.cfg.ScrubInterval).Sub(n.cfg.Clock()), n.cfg.ScrubInterval); wait > 0 {
				sleep(ctx, wait)
				continue
			}
			st = ScrubState{Active: true}
		}
		if err := n.scrubPass(ctx, st); err != nil {
			if ctx.Err() == nil {
				n.log.Error("storage: scrub pass stopped; it resumes at its cursor", "err", err)
				sleep(ctx, time.Minute)
			}
		}
	}
}

// scrubPass checks every sliver from the cursor on, paced to ScrubRate
// bytes a second, saving the cursor after each page of blobs.
func (n *Node) scrubPass(ctx context.Context, st ScrubState) error {
	p := &scrubPacer{n: n, start: time.Now()}
	shards, err := n.store.Shards()
	if err != nil {
		return err
	}
	for _, shard := range shards {
		if shard < st.Shard {
			continue
		}
		if shard > st.Shard {
			st.Shard, st.After = shard, crypto.BlobID{}
		}
		if err := n.scrubShard(ctx, &st, p); err != nil {
			return err
		}
	}
	if err := n.store.SetScrubState(ScrubState{LastDone: n.cfg.Clock()}); err != nil {
		return err
	}
	n.metrics.scrubPasses.Inc()
	n.log.Info("storage: scrub pass done", "bytes", p.bytes, "corrupt", p.corrupt, "took", time.Since(p.start).Round(time.Millisecond))
	return nil
}

// scrubShard checks the cursor's shard from its last blob on, a page of
// blobs at a time, moving the cursor (and saving it) after each page.
func (n *Node) scrubShard(ctx context.Context, st *ScrubState, p *scrubPacer) error {
	const page = 64
	for {
		ids, err := n.store.Blobs(st.Shard, st.After, page)
		if err != nil {
			return err
		}
		for _, id := range ids {
			for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
				read, err := n.store.CheckSliver(st.Shard, id, axis)
				n.quarantine(err)
				switch {
				case errors.Is(err, ErrCorrupt):
					p.corrupt++
				case err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoMetadata):
					return err
				}
				p.pace(ctx, read)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			st.After = id
		}
		if err := n.store.SetScrubState(*st); err != nil {
			return err
		}
		if len(ids) < page {
			return nil
		}
	}
}

// scrubPacer keeps a pass at ScrubRate: after each sliver it sleeps until
// the bytes read so far are due.
type scrubPacer struct {
	n       *Node
	start   time.Time
	bytes   int64
	corrupt int
}

func (p *scrubPacer) pace(ctx context.Context, read int) {
	p.bytes += int64(read)
	p.n.metrics.scrubbed.Add(float64(read))
	due := p.start.Add(time.Duration(float64(p.bytes) / float64(p.n.cfg.ScrubRate) * float64(time.Second)))
	sleep(ctx, time.Until(due))
}
