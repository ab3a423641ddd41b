package storage

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// storeOnShards stores a blob's metadata for the given shards and the
// blob's pair on those of them in pairs.
func storeOnShards(t *testing.T, s *Store, enc *coding.Encoded, shards []uint32, pairs ...uint32) {
	t.Helper()
	if err := s.PutMetadataShards(shards, enc.ID, enc.Metadata); err != nil {
		t.Fatal(err)
	}
	for _, shard := range pairs {
		if err := s.PutPair(shard, enc.ID, enc.PairOnShard(s.codecs.Params(), int(shard))); err != nil {
			t.Fatalf("pair of %s on shard %d: %v", enc.ID, shard, err)
		}
	}
}

// wantFootprint checks how many full copies of metadata the file holds,
// their bytes, and the bookkeeping.
func wantFootprint(t *testing.T, s *Store, copies int, blobs ...*coding.Encoded) {
	t.Helper()
	size := 0
	for _, b := range blobs {
		raw, _ := b.Metadata.MarshalBinary()
		size += len(raw)
	}
	gotCopies, gotSize, err := s.MetadataFootprint()
	if err != nil || gotCopies != copies || gotSize != size {
		t.Fatalf("metadata in the file: %d copies, %d bytes (%v); want %d copies, %d bytes", gotCopies, gotSize, err, copies, size)
	}
	if err := s.CheckMetadataRefs(); err != nil {
		t.Fatal(err)
	}
}

// wantMetadata checks which shards serve a blob's metadata.
func wantMetadata(t *testing.T, s *Store, enc *coding.Encoded, has, lacks []uint32) {
	t.Helper()
	for _, shard := range has {
		got, err := s.Metadata(shard, enc.ID)
		if err != nil || got.PairsRoot() != enc.Metadata.PairsRoot() {
			t.Fatalf("metadata of %s on shard %d: %v", enc.ID, shard, err)
		}
	}
	for _, shard := range lacks {
		if _, err := s.Metadata(shard, enc.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("metadata of %s on shard %d, which dropped it: err = %v", enc.ID, shard, err)
		}
	}
	_, err := s.AnyMetadata(enc.ID)
	if len(has) > 0 && err != nil {
		t.Fatalf("AnyMetadata(%s): %v", enc.ID, err)
	}
	if len(has) == 0 && !errors.Is(err, ErrNotFound) {
		t.Fatalf("AnyMetadata(%s) with no shard referencing it: err = %v", enc.ID, err)
	}
}

func allShards(p coding.Params) []uint32 {
	var out []uint32
	for shard := range uint32(p.Shards) {
		out = append(out, shard)
	}
	return out
}

// A node owning every shard keeps one copy of a blob's metadata, however
// many shards store its pairs — also after a restart.
func TestMetadataKeptOncePerNode(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	path := filepath.Join(t.TempDir(), "node.db")
	s := openStore(t, path, c)
	a, b := testBlob(t, c, 1, 20_000), testBlob(t, c, 2, 5_000)
	all := allShards(p)
	storeOnShards(t, s, a, all, all...)
	storeOnShards(t, s, b, all[:3], all[:3]...)
	// Stored again (a write stream after an epoch change does): no copy.
	storeOnShards(t, s, a, all)
	wantFootprint(t, s, 2, a, b)
	s.Close()

	s = openStore(t, path, c)
	defer s.Close()
	wantFootprint(t, s, 2, a, b)
	wantMetadata(t, s, a, all, nil)
	wantMetadata(t, s, b, all[:3], all[3:])
	for _, shard := range all[:3] {
		if ok, err := s.HasPair(shard, b.ID); !ok || err != nil {
			t.Fatalf("pair of b on shard %d after restart: %v", shard, err)
		}
	}
}

// The metadata stays while any shard stores the blob's pair or was given
// the metadata for one, and goes with the last of them — through a
// restart in between, whichever way the shards drop it.
func TestMetadataGoesWithTheLastShard(t *testing.T) {
	c, _ := coding.New(10)
	path := filepath.Join(t.TempDir(), "node.db")
	s := openStore(t, path, c)
	defer func() { s.Close() }()
	a, b := testBlob(t, c, 1, 20_000), testBlob(t, c, 2, 5_000)
	storeOnShards(t, s, a, []uint32{0, 1, 2}, 0, 1) // shard 2: metadata, pair still to come
	storeOnShards(t, s, b, []uint32{1, 3}, 1, 3)
	yes := func() bool { return true }

	if err := s.DeleteShard(0, yes); err != nil {
		t.Fatal(err)
	}
	wantMetadata(t, s, a, []uint32{1, 2}, []uint32{0})
	wantFootprint(t, s, 2, a, b)

	s.Close()
	s = openStore(t, path, c)
	if err := s.DeleteShard(1, yes); err != nil {
		t.Fatal(err)
	}
	wantMetadata(t, s, a, []uint32{2}, []uint32{0, 1}) // shard 2 may still receive its pair
	wantMetadata(t, s, b, []uint32{3}, []uint32{1})
	wantFootprint(t, s, 2, a, b)
	if keeps, err := s.KeepsShard(2); !keeps || err != nil {
		t.Fatalf("shard 2 references a's metadata without a pair: KeepsShard = %v, %v", keeps, err)
	}

	if err := s.DeleteBlob(3, b.ID, yes); err != nil {
		t.Fatal(err)
	}
	wantMetadata(t, s, b, nil, []uint32{1, 3})
	if err := s.DeleteShard(2, yes); err != nil {
		t.Fatal(err)
	}
	wantMetadata(t, s, a, nil, []uint32{0, 1, 2})
	wantFootprint(t, s, 0)
	if keeps, err := s.KeepsShard(2); keeps || err != nil {
		t.Fatalf("deleted shard 2: KeepsShard = %v, %v", keeps, err)
	}
	// A deleted blob's metadata can be stored again, and counts afresh.
	storeOnShards(t, s, b, []uint32{4}, 4)
	wantMetadata(t, s, b, []uint32{4}, []uint32{1, 3})
	wantFootprint(t, s, 1, b)
}

// A blob's end deletes its metadata with its slivers on every shard.
func TestMetadataGoesWithTheBlobsEnd(t *testing.T) {
	c, _ := coding.New(10)
	s := openStore(t, filepath.Join(t.TempDir(), "node.db"), c)
	defer s.Close()
	a, b, keep := testBlob(t, c, 1, 20_000), testBlob(t, c, 2, 5_000), testBlob(t, c, 3, 3_000)
	for _, enc := range []*coding.Encoded{a, b, keep} {
		storeOnShards(t, s, enc, []uint32{0, 5, 7}, 0, 5)
	}
	if err := s.ApplyEvents(EventBatch{Index: 1, Epoch: 1, Ended: []crypto.BlobID{a.ID}, Invalid: []crypto.BlobID{b.ID}}); err != nil {
		t.Fatal(err)
	}
	wantMetadata(t, s, a, nil, []uint32{0, 5, 7})
	wantMetadata(t, s, b, nil, []uint32{0, 5, 7})
	wantMetadata(t, s, keep, []uint32{0, 5, 7}, nil)
	wantFootprint(t, s, 1, keep)
}

// A pair checked against metadata the node dropped before the write
// commits (its shard was retired in between) is refused, and nothing of it
// is kept: a stored pair always has its metadata.
func TestPairRefusedWhenItsMetadataWentMeanwhile(t *testing.T) {
	c, _ := coding.New(10)
	s := openStore(t, filepath.Join(t.TempDir(), "node.db"), c)
	defer s.Close()
	enc := testBlob(t, c, 1, 20_000)
	storeOnShards(t, s, enc, []uint32{2})
	v, err := s.VerifyPair(2, enc.ID, enc.PairOnShard(c.Params(), 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteShard(2, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if err := s.WritePairs(v); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("a pair whose metadata is gone: err = %v, want ErrNoMetadata", err)
	}
	if ok, _ := s.HasPair(2, enc.ID); ok {
		t.Fatal("the refused pair was stored")
	}
	wantFootprint(t, s, 0)
}

// A store written with a full copy of the metadata per shard (the layout
// before this one) opens in the node-wide layout: one copy per blob, each
// shard referencing what it had, every pair readable and verifiable; a
// second open finds nothing to move; deletions then count right.
func TestLegacyMetadataLayoutMigratesAtOpen(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	path := filepath.Join(t.TempDir(), "node.db")
	s := openStore(t, path, c)
	a, b := testBlob(t, c, 1, 20_000), testBlob(t, c, 2, 5_000)
	all := allShards(p)
	storeOnShards(t, s, a, all, all...)
	storeOnShards(t, s, b, []uint32{3, 4}, 3) // shard 4: metadata only
	if err := s.RewriteAsLegacyLayout(); err != nil {
		t.Fatal(err)
	}
	if copies, _, _ := s.MetadataFootprint(); copies != p.Shards+2 {
		t.Fatalf("the legacy layout holds %d copies, want %d", copies, p.Shards+2)
	}
	s.Close()

	for open := range 2 {
		s = openStore(t, path, c)
		wantFootprint(t, s, 2, a, b)
		wantMetadata(t, s, a, all, nil)
		wantMetadata(t, s, b, []uint32{3, 4}, []uint32{0, 5})
		for _, shard := range all {
			pair := a.PairOnShard(p, int(shard))
			got, err := s.Sliver(shard, a.ID, crypto.Secondary)
			if err != nil || !bytes.Equal(got.Data, pair.Secondary.Data) {
				t.Fatalf("open %d: a's secondary sliver on shard %d: %v", open, shard, err)
			}
			if _, err := s.VerifyPair(shard, a.ID, pair); err != nil {
				t.Fatalf("open %d: a's pair on shard %d no longer verifies: %v", open, shard, err)
			}
		}
		if open == 0 {
			s.Close()
		}
	}
	defer s.Close()
	yes := func() bool { return true }
	// b's pair arrives on shard 4, whose metadata was migrated.
	if err := s.PutPair(4, b.ID, b.PairOnShard(p, 4)); err != nil {
		t.Fatal(err)
	}
	for _, shard := range all[:len(all)-1] {
		if err := s.DeleteShard(shard, yes); err != nil {
			t.Fatal(err)
		}
	}
	wantMetadata(t, s, a, all[len(all)-1:], all[:len(all)-1])
	wantMetadata(t, s, b, nil, []uint32{3, 4})
	wantFootprint(t, s, 1, a)
	if err := s.DeleteShard(all[len(all)-1], yes); err != nil {
		t.Fatal(err)
	}
	wantFootprint(t, s, 0)
}
