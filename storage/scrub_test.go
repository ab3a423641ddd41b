package storage

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// An inline sliver, which bbolt keeps without a checksum, is checked
// against the blob's metadata: one whose bytes changed is a
// *CorruptError, the others pass.
func TestCheckSliverInline(t *testing.T) {
	c, _ := coding.New(10)
	s, err := openWith(filepath.Join(t.TempDir(), "node.db"), codecsFor(t, c), 1<<20, 1<<20) // everything inline
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	enc := testBlob(t, c, 3, 20_000)
	storeAll(t, s, enc)
	const shard = 4
	pair := enc.PairOnShard(c.Params(), shard)
	rotten := pair.Secondary
	rotten.Data = append([]byte(nil), rotten.Data...)
	rotten.Data[len(rotten.Data)/2] ^= 0x40
	raw, err := rotten.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, _ := shardBucket(tx, shard, subSecondary, false)
		return b.Put(enc.ID[:], raw)
	}); err != nil {
		t.Fatal(err)
	}
	for sh := range uint32(c.Params().Shards) {
		for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
			n, err := s.CheckSliver(sh, enc.ID, axis)
			var corrupt *CorruptError
			if sh == shard && axis == crypto.Secondary {
				if !errors.As(err, &corrupt) || corrupt.Shard != shard || corrupt.Axis != axis || !errors.Is(err, crypto.ErrSliverMismatch) {
					t.Fatalf("the altered sliver: %v", err)
				}
				continue
			}
			if err != nil || n == 0 {
				t.Fatalf("shard %d %s: %d bytes, %v", sh, axis, n, err)
			}
		}
	}
}

// The scrub's cursor and last pass survive a reopen, so a restarted node
// resumes its pass.
func TestScrubStateSurvivesReopen(t *testing.T) {
	c, _ := coding.New(10)
	path := filepath.Join(t.TempDir(), "node.db")
	s := openLogged(t, path, c, 1<<20)
	want := ScrubState{Active: true, Shard: 7, After: crypto.BlobID{1, 2, 3}, LastDone: time.Unix(1700000000, 5)}
	if err := s.SetScrubState(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openLogged(t, path, c, 1<<20)
	defer s.Close()
	got, err := s.ScrubState()
	if err != nil || got.Active != want.Active || got.Shard != want.Shard || got.After != want.After || !got.LastDone.Equal(want.LastDone) {
		t.Fatalf("after reopen: %+v, %v; want %+v", got, err, want)
	}
	if err := s.SetScrubState(ScrubState{LastDone: want.LastDone.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ScrubState(); got.Active || !got.LastDone.Equal(want.LastDone.Add(time.Hour)) {
		t.Fatalf("after the pass ended: %+v", got)
	}
}
