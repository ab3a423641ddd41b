package storage

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// Every test of the package stores slivers through the value log (the
// inline path is what small blobs take in production, and is tested here
// on its own), with small segments so that they roll. Benchmarks keep the
// production settings.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		defaultInlineMax = 0
		defaultSegmentSize = 256 << 10
	}
	os.Exit(m.Run())
}

// openLogged opens a store that sends every sliver to the value log, in
// segments of segSize bytes.
func openLogged(t *testing.T, path string, c *coding.Codec, segSize int64) *Store {
	t.Helper()
	s, err := openWith(path, codecsFor(t, c), 0, segSize)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeAll puts every shard's metadata and pair of enc.
func storeAll(t *testing.T, s *Store, enc *coding.Encoded) {
	t.Helper()
	p := s.codecs.Params()
	for shard := range uint32(p.Shards) {
		if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPair(shard, enc.ID, enc.PairOnShard(p, int(shard))); err != nil {
			t.Fatalf("shard %d: %v", shard, err)
		}
	}
}

// checkAll reads every sliver of enc back and compares it.
func checkAll(t *testing.T, s *Store, enc *coding.Encoded) {
	t.Helper()
	p := s.codecs.Params()
	for shard := range uint32(p.Shards) {
		pair := enc.PairOnShard(p, int(shard))
		for _, want := range []coding.Sliver{pair.Primary, pair.Secondary} {
			got, err := s.Sliver(shard, enc.ID, want.Axis)
			if err != nil || got.SliverRef != want.SliverRef || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("shard %d %s: %v", shard, want.SliverRef, err)
			}
		}
	}
}

func segments(t *testing.T, s *Store) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(s.values.dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// diskBytes is the space a segment takes on disk (holes excluded).
func diskBytes(t *testing.T, name string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// Slivers round-trip through both places a store keeps them — inline in
// bbolt and in the value log — and survive a reopen.
func TestValuesInlineAndLogged(t *testing.T) {
	c, _ := coding.New(10)
	for _, tc := range []struct {
		name      string
		inlineMax int
		logged    bool
	}{{"inline", 1 << 20, false}, {"logged", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.db")
			s, err := openWith(path, codecsFor(t, c), tc.inlineMax, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			encs := []*coding.Encoded{testBlob(t, c, 1, 30_000), testBlob(t, c, 2, 1)}
			for _, enc := range encs {
				storeAll(t, s, enc)
			}
			if got := len(segments(t, s)) > 0; got != tc.logged {
				t.Fatalf("segments written: %v, want %v", got, tc.logged)
			}
			if tc.logged && len(segments(t, s)) < 2 {
				t.Fatalf("%d segments of 64 KiB for ~60 KiB of slivers padded to 4 KiB: no roll", len(segments(t, s)))
			}
			s.Close()
			if s, err = openWith(path, codecsFor(t, c), tc.inlineMax, 64<<10); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, enc := range encs {
				checkAll(t, s, enc)
			}
		})
	}
}

// Deleting gives the space back: punched holes while a segment still holds
// live values, the whole file once it holds none — whichever way the
// values go (a blob, a shard, an expiry event, a pair stored again).
func TestValuesSpaceComesBack(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	s := openLogged(t, filepath.Join(t.TempDir(), "node.db"), c, 1<<20)
	defer s.Close()
	a, b, d := testBlob(t, c, 1, 200_000), testBlob(t, c, 2, 200_000), testBlob(t, c, 3, 200_000)
	for _, enc := range []*coding.Encoded{a, b, d} {
		storeAll(t, s, enc)
	}
	// Stored again: the second copy replaces the first, which is freed.
	storeAll(t, s, a)
	before := len(segments(t, s))
	if before < 2 {
		t.Fatalf("%d segments", before)
	}
	yes := func() bool { return true }
	for shard := range uint32(p.Shards) {
		if err := s.DeleteBlob(shard, b.ID, yes); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteShard(3, yes); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEvents(EventBatch{Index: 1, Ended: []crypto.BlobID{a.ID, d.ID}}); err != nil {
		t.Fatal(err)
	}
	// Only the active segment may remain, and it holds nothing on disk.
	left := segments(t, s)
	if len(left) > 1 {
		t.Fatalf("%d segments left of %d after deleting everything", len(left), before)
	}
	for _, name := range left {
		if n := diskBytes(t, name); n > 0 {
			t.Fatalf("the active segment still takes %d bytes", n)
		}
	}
	assertNoLive(t, s)
}

func assertNoLive(t *testing.T, s *Store) {
	t.Helper()
	_ = s.db.View(func(tx *bolt.Tx) error {
		vb := tx.Bucket(bucketValues)
		if k, v := vb.Bucket(subLive).Cursor().First(); k != nil {
			t.Fatalf("segment %x still counts %x live bytes", k, v)
		}
		if k, _ := vb.Bucket(subFreed).Cursor().First(); k != nil {
			t.Fatalf("freed list not emptied: %x", k)
		}
		return nil
	})
}

// A crash between a deletion's commit and the punching of its holes, or
// between a write and the commit that would point at it, leaves nothing
// behind after the next open.
func TestValuesCrashLeftovers(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	path := filepath.Join(t.TempDir(), "node.db")
	s := openLogged(t, path, c, 1<<20)
	enc := testBlob(t, c, 1, 100_000)
	storeAll(t, s, enc)
	// The deletion commits; the "crash" comes before reclaim runs.
	err := s.db.Update(func(tx *bolt.Tx) error {
		var freed bool
		for shard := range uint32(p.Shards) {
			for _, name := range [][]byte{subPrimary, subSecondary} {
				b, _ := shardBucket(tx, shard, name, false)
				if err := s.dropValue(tx, b, enc.ID[:], &freed); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A write whose commit never happens.
	if _, _, err := s.values.append([]valueRecord{{head: []byte("orphan"), body: make([]byte, 10_000)}}); err != nil {
		t.Fatal(err)
	}
	if len(segments(t, s)) == 0 {
		t.Fatal("no segment written")
	}
	s.Close()

	s = openLogged(t, path, c, 1<<20)
	defer s.Close()
	if left := segments(t, s); len(left) > 0 {
		t.Fatalf("segments left after reopening with nothing live: %v", left)
	}
	assertNoLive(t, s)
	if _, err := s.Sliver(0, enc.ID, crypto.Primary); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted sliver: err = %v", err)
	}
	// New segments never reuse a number, so a stale freed entry could not
	// punch a hole in them.
	other := testBlob(t, c, 2, 100_000)
	storeAll(t, s, other)
	checkAll(t, s, other)
}

// Bytes that changed on disk are an error, never a sliver.
func TestValuesCorruptionIsAnError(t *testing.T) {
	c, _ := coding.New(10)
	path := filepath.Join(t.TempDir(), "node.db")
	s := openLogged(t, path, c, 1<<20)
	defer s.Close()
	enc := testBlob(t, c, 1, 20_000)
	storeAll(t, s, enc)
	rotFirstRecord(t, s)
	var corrupt *CorruptError
	p := c.Params()
	for shard := range uint32(p.Shards) {
		pair := enc.PairOnShard(p, int(shard))
		for _, want := range []coding.Sliver{pair.Primary, pair.Secondary} {
			got, err := s.Sliver(shard, enc.ID, want.Axis)
			if err != nil {
				if corrupt != nil || !errors.As(err, &corrupt) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("shard %d %s: err = %v, want the one *CorruptError", shard, want.Axis, err)
				}
				if corrupt.Shard != shard || corrupt.Blob != enc.ID || corrupt.Axis != want.Axis || !errors.Is(err, errValueCorrupt) {
					t.Fatalf("shard %d %s: the error names %+v", shard, want.Axis, corrupt)
				}
				continue
			}
			if !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("shard %d: other bytes returned", shard)
			}
		}
	}
	if corrupt == nil {
		t.Fatal("the corrupted record read back without an error")
	}

	// Dropping it deletes that sliver only and queues the blob for
	// recovery; the pair no longer counts as held.
	if dropped, err := s.DropCorrupt(corrupt, 7); err != nil || !dropped {
		t.Fatalf("DropCorrupt = %v, %v", dropped, err)
	}
	if _, err := s.Sliver(corrupt.Shard, enc.ID, corrupt.Axis); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the drop: %v, want ErrNotFound", err)
	}
	if has, _ := s.HasPair(corrupt.Shard, enc.ID); has {
		t.Fatal("the pair still counts as held")
	}
	other := crypto.Primary
	if corrupt.Axis == crypto.Primary {
		other = crypto.Secondary
	}
	if _, err := s.Sliver(corrupt.Shard, enc.ID, other); err != nil {
		t.Fatalf("the other sliver of the pair: %v", err)
	}
	pending, err := s.Pending()
	if err != nil || len(pending) != 1 || pending[0] != (PendingBlob{ID: enc.ID, Epoch: 7}) {
		t.Fatalf("recovery list %v, %v", pending, err)
	}
}

// A sliver stored again after it was found corrupt is not dropped by the
// stale report.
func TestValuesDropCorruptSparesARewrite(t *testing.T) {
	c, _ := coding.New(10)
	s := openLogged(t, filepath.Join(t.TempDir(), "node.db"), c, 1<<20)
	defer s.Close()
	enc := testBlob(t, c, 1, 20_000)
	storeAll(t, s, enc)
	rotFirstRecord(t, s)
	var corrupt *CorruptError
	for shard := range uint32(c.Params().Shards) {
		for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
			if _, err := s.Sliver(shard, enc.ID, axis); errors.As(err, &corrupt) {
				break
			}
		}
	}
	if corrupt == nil {
		t.Fatal("no corrupt sliver found")
	}
	storeAll(t, s, enc) // rebuilt meanwhile
	if dropped, err := s.DropCorrupt(corrupt, 1); err != nil || dropped {
		t.Fatalf("DropCorrupt of a rewritten sliver = %v, %v", dropped, err)
	}
	checkAll(t, s, enc)
	if pending, _ := s.Pending(); len(pending) != 0 {
		t.Fatalf("recovery list %v", pending)
	}
}

// Reads racing deletions and rewrites get the sliver or ErrNotFound,
// never other bytes (run with -race).
func TestValuesReadsRaceDeletes(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	s := openLogged(t, filepath.Join(t.TempDir(), "node.db"), c, 128<<10)
	defer s.Close()
	enc := testBlob(t, c, 1, 50_000)
	const shard = 2
	pair := enc.PairOnShard(p, shard)
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.Sliver(shard, enc.ID, crypto.Primary)
				if err == nil && !bytes.Equal(got.Data, pair.Primary.Data) {
					t.Error("a read returned other bytes")
					return
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("read: %v", err)
					return
				}
			}
		})
	}
	yes := func() bool { return true }
	for range 50 {
		if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPair(shard, enc.ID, pair); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPair(shard, enc.ID, pair); err != nil { // stored again
			t.Fatal(err)
		}
		if err := s.DeleteBlob(shard, enc.ID, yes); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	assertNoLive(t, s)
}

// Staged pairs are written but neither visible nor counted until
// committed; staged twice and committed together, the second copy wins and
// the first is freed.
func TestValuesStagedPairs(t *testing.T) {
	c, _ := coding.New(10)
	p := c.Params()
	path := filepath.Join(t.TempDir(), "node.db")
	s := openLogged(t, path, c, 1<<20)
	enc := testBlob(t, c, 1, 100_000)
	const shard = 5
	if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
		t.Fatal(err)
	}
	v, err := s.VerifyPair(shard, enc.ID, enc.PairOnShard(p, shard))
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Stage(v)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasPair(shard, enc.ID); ok {
		t.Fatal("a staged pair is visible before its commit")
	}
	b, err := s.Stage(v) // the same pair again: the second copy wins, the first is freed
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitStaged(nil, a, b); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.HasPair(shard, enc.ID); !ok {
		t.Fatal("committed pair missing")
	}
	s.Close()
	s = openLogged(t, path, c, 1<<20)
	defer s.Close()
	for _, want := range []coding.Sliver{v.pair.Primary, v.pair.Secondary} {
		got, err := s.Sliver(shard, enc.ID, want.Axis)
		if err != nil || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("%s after reopen: %v", want.SliverRef, err)
		}
	}
	if err := s.DeleteBlob(shard, enc.ID, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	assertNoLive(t, s)
}

// rotFirstRecord overwrites two bytes inside the first record of the
// first segment, as a disk returning other bytes would.
func rotFirstRecord(t *testing.T, s *Store) {
	t.Helper()
	f, err := os.OpenFile(segments(t, s)[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xFF, 0xFE}, 100); err != nil {
		t.Fatal(err)
	}
}

// crash stops a store the way a crash would: nothing is marked clean.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.values.mu.Lock()
	for seg := range s.values.files {
		_ = s.values.closeLocked(seg)
	}
	s.values.mu.Unlock()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// A crash between an append and the commit that would point at it leaves
// bytes nothing points at, in a segment that holds live slivers too: the
// next open punches them out and keeps the slivers. A clean close marks
// the log so that the next open skips that search.
func TestValuesOrphansTrimmedAfterCrash(t *testing.T) {
	c, _ := coding.New(10)
	path := filepath.Join(t.TempDir(), "node.db")
	s := openLogged(t, path, c, 64<<20)
	enc := testBlob(t, c, 1, 100_000)
	storeAll(t, s, enc)
	if _, _, err := s.values.append([]valueRecord{{head: []byte("orphan"), body: make([]byte, 1<<20)}}); err != nil {
		t.Fatal(err)
	}
	if n := len(segments(t, s)); n != 1 {
		t.Fatalf("%d segments", n)
	}
	seg := segments(t, s)[0]
	withOrphan := diskBytes(t, seg)
	crash(t, s)

	s = openLogged(t, path, c, 64<<20)
	freed := withOrphan - diskBytes(t, seg)
	t.Logf("reopening freed %d of the segment's %d bytes on disk", freed, withOrphan)
	if freed < 1<<20 {
		t.Fatalf("reopening freed %d bytes, want the 1 MiB orphan", freed)
	}
	checkAll(t, s, enc)

	// Again, in the segment this run started (the first is sealed now).
	other := testBlob(t, c, 2, 100_000)
	storeAll(t, s, other)
	if _, _, err := s.values.append([]valueRecord{{head: []byte("orphan"), body: make([]byte, 1<<20)}}); err != nil {
		t.Fatal(err)
	}
	names := segments(t, s)
	if len(names) != 2 {
		t.Fatalf("%d segments, want the sealed one and this run's", len(names))
	}
	withOrphan = diskBytes(t, names[1])
	crash(t, s)
	s = openLogged(t, path, c, 64<<20)
	if freed := withOrphan - diskBytes(t, names[1]); freed < 1<<20 {
		t.Fatalf("the second reopen freed %d bytes of the new segment, want the 1 MiB orphan", freed)
	}
	checkAll(t, s, enc)
	checkAll(t, s, other)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketValues).Get(keyClean) == nil {
			t.Fatal("a clean close did not mark the log clean")
		}
		return nil
	})
}
