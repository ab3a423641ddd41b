package storage

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

func testBlob(t *testing.T, c *coding.Codec, seed uint64, size int) *coding.Encoded {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(r.Uint32())
	}
	enc, err := c.Encode(blob)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func openStore(t *testing.T, path string, c *coding.Codec) *Store {
	t.Helper()
	s, err := Open(path, codecsFor(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A shard's pair of a blob goes in after its metadata, is verified, and is
// there — byte for byte — after the store is reopened.
func TestStorePutGetDurable(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	path := filepath.Join(t.TempDir(), "node.db")
	s := openStore(t, path, c)
	enc := testBlob(t, c, 1, 20_000)
	for shard := range uint32(p.Shards) {
		pair := enc.PairOnShard(p, int(shard))
		if err := s.PutPair(shard, enc.ID, pair); !errors.Is(err, ErrNoMetadata) {
			t.Fatalf("pair before metadata: err = %v", err)
		}
		if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPair(shard, enc.ID, pair); err != nil {
			t.Fatalf("shard %d: %v", shard, err)
		}
	}
	s.Close()

	s = openStore(t, path, c)
	defer s.Close()
	for shard := range uint32(p.Shards) {
		pair := enc.PairOnShard(p, int(shard))
		for _, want := range []coding.Sliver{pair.Primary, pair.Secondary} {
			got, err := s.Sliver(shard, enc.ID, want.Axis)
			if err != nil || got.SliverRef != want.SliverRef || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("shard %d %s after reopen: %v", shard, want.SliverRef, err)
			}
			// Copied out: changing it does not change the store.
			got.Data[0] ^= 1
			again, _ := s.Sliver(shard, enc.ID, want.Axis)
			if !bytes.Equal(again.Data, want.Data) {
				t.Fatal("a returned sliver aliases the store")
			}
		}
		if ok, _ := s.HasPair(shard, enc.ID); !ok {
			t.Fatalf("shard %d: pair missing", shard)
		}
	}
}

// Bad input is refused and changes nothing: metadata for another ID, a
// corrupted sliver, a pair sent to the wrong shard.
func TestStoreRefusesBadInput(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	s := openStore(t, filepath.Join(t.TempDir(), "node.db"), c)
	defer s.Close()
	enc := testBlob(t, c, 2, 5000)
	other := testBlob(t, c, 3, 5000)
	if err := s.PutMetadata(0, other.ID, enc.Metadata); !errors.Is(err, crypto.ErrBlobIDMismatch) {
		t.Fatalf("metadata under another ID: err = %v", err)
	}
	if _, err := s.Metadata(0, other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("refused metadata was stored")
	}
	c7, _ := coding.New(7)
	seven := testBlob(t, c7, 4, 100)
	if err := s.PutMetadata(0, seven.ID, seven.Metadata); err == nil {
		t.Fatal("metadata of a 7-shard blob accepted by a 10-shard node")
	}

	shard := uint32(3)
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
		t.Fatal(err)
	}
	pair := enc.PairOnShard(p, int(shard))
	bad := pair
	bad.Secondary.Data = bytes.Clone(pair.Secondary.Data)
	bad.Secondary.Data[5] ^= 0x80
	if err := s.PutPair(shard, enc.ID, bad); !errors.Is(err, crypto.ErrSliverMismatch) {
		t.Fatalf("corrupted secondary: err = %v", err)
	}
	if ok, _ := s.HasPair(shard, enc.ID); ok {
		t.Fatal("a pair with a corrupted sliver was stored")
	}
	if _, err := s.Sliver(shard, enc.ID, crypto.Primary); !errors.Is(err, ErrNotFound) {
		t.Fatal("the good half of a refused pair was stored")
	}
	if err := s.PutPair(shard, enc.ID, enc.PairOnShard(p, int(shard+1))); !errors.Is(err, ErrWrongShard) {
		t.Fatalf("another shard's pair: err = %v", err)
	}
}

// Deletion asks the committed state inside the deleting transaction.
func TestStoreDeletionRechecks(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	s := openStore(t, filepath.Join(t.TempDir(), "node.db"), c)
	defer s.Close()
	enc := testBlob(t, c, 5, 3000)
	const shard = 4
	s.PutMetadata(shard, enc.ID, enc.Metadata)
	s.PutPair(shard, enc.ID, enc.PairOnShard(p, shard))
	if err := s.DeleteBlob(shard, enc.ID, func() bool { return false }); !errors.Is(err, ErrDeleteRefused) {
		t.Fatalf("refused blob deletion: err = %v", err)
	}
	if err := s.SetShardState(shard, ShardHeld); err != nil {
		t.Fatal(err)
	}
	if states, _ := s.ShardStates(); states[shard] != ShardHeld {
		t.Fatalf("shard state %v, want held", states[shard])
	}
	if err := s.DeleteShard(shard, func() bool { return false }); !errors.Is(err, ErrDeleteRefused) {
		t.Fatalf("refused deletion: err = %v", err)
	}
	if ok, _ := s.HasPair(shard, enc.ID); !ok {
		t.Fatal("a refused deletion deleted")
	}
	if err := s.DeleteShard(shard, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasPair(shard, enc.ID); ok {
		t.Fatal("shard still there")
	}
	// A blob deleted on its own leaves the rest of the shard.
	other := testBlob(t, c, 6, 3000)
	s.PutMetadata(shard, other.ID, other.Metadata)
	if err := s.PutPair(shard, other.ID, other.PairOnShard(p, shard)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBlob(shard, other.ID, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasPair(shard, other.ID); ok {
		t.Fatal("deleted blob still there")
	}
	if _, err := s.Metadata(shard, other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted blob's metadata still there")
	}
	states, _ := s.ShardStates()
	if states[shard] != ShardRetired {
		t.Fatalf("state after deletion: %v", states[shard])
	}
}

func TestStorePagesAndEvents(t *testing.T) {
	c, _ := coding.New(4)
	p := c.Params()
	s := openStore(t, filepath.Join(t.TempDir(), "node.db"), c)
	defer s.Close()
	var ids []crypto.BlobID
	for seed := range uint64(7) {
		enc := testBlob(t, c, 10+seed, 100)
		shard := uint32(0)
		s.PutMetadata(shard, enc.ID, enc.Metadata)
		if err := s.PutPair(shard, enc.ID, enc.PairOnShard(p, 0)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, enc.ID)
	}
	var seen []crypto.BlobID
	var after crypto.BlobID
	for {
		page, err := s.Blobs(0, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		seen = append(seen, page...)
		after = page[len(page)-1]
	}
	if len(seen) != len(ids) {
		t.Fatalf("paged %d of %d blobs", len(seen), len(ids))
	}
	for i := 1; i < len(seen); i++ {
		if bytes.Compare(seen[i-1][:], seen[i][:]) >= 0 {
			t.Fatal("pages out of order or repeating")
		}
	}
	if err := s.SetAppliedEvent(42); err != nil {
		t.Fatal(err)
	}
	if idx, _ := s.AppliedEvent(); idx != 42 {
		t.Fatalf("applied event %d", idx)
	}
}

// A blob's end (expiry or lapse) leaves a tombstone: whatever of it was
// checked and staged before the event and is committed after it is
// refused, and so is its metadata, so no write outlives the event that
// deleted the blob's data. The tombstone survives a restart, is lifted by
// a later registration of the same content (the last event of a page
// wins), and is pruned once no write can still be in flight.
func TestStoreRefusesWritesOfEndedBlobs(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	path := filepath.Join(t.TempDir(), "node.db")
	s := openStore(t, path, c)
	enc := testBlob(t, c, 7, 50_000)
	const shard = 3
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
		t.Fatal(err)
	}
	v, err := s.VerifyPair(shard, enc.ID, enc.PairOnShard(p, shard))
	if err != nil {
		t.Fatal(err)
	}
	staged, err := s.Stage(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEvents(EventBatch{Index: 1, Epoch: 4, Ended: []crypto.BlobID{enc.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitStaged(nil, staged); !errors.Is(err, ErrEnded) {
		t.Fatalf("commit of a pair staged before its blob ended: %v", err)
	}
	if has, _ := s.HasPair(shard, enc.ID); has {
		t.Fatal("the ended blob's pair was stored")
	}
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); !errors.Is(err, ErrEnded) {
		t.Fatalf("metadata of an ended blob: %v", err)
	}
	s.Close()

	s = openStore(t, path, c)
	defer s.Close()
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); !errors.Is(err, ErrEnded) {
		t.Fatalf("metadata of an ended blob after a restart: %v", err)
	}
	// Ended a second time: still ended. Ended, then registered again
	// (events.go lists a blob in both only in that order): live.
	if err := s.ApplyEvents(EventBatch{Index: 2, Epoch: 4, Ended: []crypto.BlobID{enc.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); !errors.Is(err, ErrEnded) {
		t.Fatalf("metadata after registered-then-ended: %v", err)
	}
	if err := s.ApplyEvents(EventBatch{Index: 3, Epoch: 4, Ended: []crypto.BlobID{enc.ID}, Registered: []crypto.BlobID{enc.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
		t.Fatalf("metadata of a blob registered again: %v", err)
	}
	if err := s.PutPair(shard, enc.ID, enc.PairOnShard(p, shard)); err != nil {
		t.Fatalf("pair of a blob registered again: %v", err)
	}

	// Pruned: a tombstone of epoch 4 lasts through epoch 5.
	other := testBlob(t, c, 8, 1000)
	if err := s.ApplyEvents(EventBatch{Index: 4, Epoch: 4, Ended: []crypto.BlobID{other.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEvents(EventBatch{Index: 5, Epoch: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMetadata(shard, other.ID, other.Metadata); !errors.Is(err, ErrEnded) {
		t.Fatalf("metadata in the epoch after the end: %v", err)
	}
	if err := s.ApplyEvents(EventBatch{Index: 6, Epoch: 6}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMetadata(shard, other.ID, other.Metadata); err != nil {
		t.Fatalf("metadata two epochs after the end (tombstone pruned): %v", err)
	}
}

// codecsFor are the codecs of c's network, with c's encoding the default.
func codecsFor(t testing.TB, c *coding.Codec) *coding.Codecs {
	t.Helper()
	p := c.Params()
	cs, err := coding.NewCodecs(p.Shards, coding.WithEncoding(p.Encoding), coding.WithMaxBlobLength(p.MaxBlobLength))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
