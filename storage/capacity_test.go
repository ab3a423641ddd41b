package storage

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// storeBlob puts every shard's metadata and pair of enc and returns the
// first error, with the shards stored before it.
func storeBlob(s *Store, enc *coding.Encoded) (stored []uint32, err error) {
	p := s.codecs.Params()
	for shard := range uint32(p.Shards) {
		if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
			return stored, err
		}
		if err := s.PutPair(shard, enc.ID, enc.PairOnShard(p, int(shard))); err != nil {
			return stored, err
		}
		stored = append(stored, shard)
	}
	return stored, nil
}

// checkStored reads back the pairs of enc on the given shards, and checks
// that every other shard of the node answers "not found" for it — never a
// half-written sliver.
func checkStored(t *testing.T, s *Store, enc *coding.Encoded, shards []uint32) {
	t.Helper()
	p := s.codecs.Params()
	has := map[uint32]bool{}
	for _, shard := range shards {
		has[shard] = true
	}
	for shard := range uint32(p.Shards) {
		pair := enc.PairOnShard(p, int(shard))
		for _, want := range []coding.Sliver{pair.Primary, pair.Secondary} {
			got, err := s.Sliver(shard, enc.ID, want.Axis)
			switch {
			case has[shard] && (err != nil || string(got.Data) != string(want.Data)):
				t.Fatalf("shard %d %s: stored, read back: %v", shard, want.SliverRef, err)
			case !has[shard] && !errors.Is(err, ErrNotFound):
				t.Fatalf("shard %d %s: refused, yet reads as %v (want not found)", shard, want.SliverRef, err)
			}
		}
	}
}

// A store with a declared capacity refuses the write that would pass it
// — before writing a byte, with the figures —, keeps serving what it
// holds, leaks nothing, and takes writes again once a deletion freed
// space, or once the capacity is raised.
func TestCapacityRefusesWritesKeepsReads(t *testing.T) {
	c, _ := coding.New(10)
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	s := openLogged(t, path, c, 1<<20)
	a, b, d := testBlob(t, c, 1, 200_000), testBlob(t, c, 2, 200_000), testBlob(t, c, 3, 200_000)
	before := s.Usage()
	if before.Capacity != 0 || before.Used <= 0 || before.Free <= 0 {
		t.Fatalf("usage of a new store without a capacity: %+v", before)
	}
	storeAll(t, s, a)
	after := s.Usage()
	blob := after.Used - before.Used
	if blob < 2*200_000 {
		t.Fatalf("a blob of 200 kB (twice that encoded) counts %d bytes", blob)
	}
	// Room for half of one more blob.
	if err := s.SetCapacity("node-x", after.Used+blob/2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCapacity("node-x", -1); err == nil {
		t.Fatal("a negative capacity was taken")
	}
	stored, err := storeBlob(s, b)
	var nse *NoSpaceError
	if !errors.As(err, &nse) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("writing past the capacity: %v", err)
	}
	if nse.Node != "node-x" || nse.Capacity != after.Used+blob/2 || nse.Asked <= nse.Free || nse.Cause != nil ||
		!strings.Contains(err.Error(), "node-x") || !strings.Contains(err.Error(), "--capacity") {
		t.Fatalf("refusal: %+v: %v", nse, err)
	}
	if len(stored) == 0 || len(stored) == c.Params().Shards {
		t.Fatalf("%d of %d shards stored before the refusal", len(stored), c.Params().Shards)
	}
	full := s.Usage()
	if full.Used > full.Capacity || full.Free < 0 || full.Free >= nse.Asked {
		t.Fatalf("usage past the capacity: %+v (refused %d)", full, nse.Asked)
	}
	if n, at := s.SpaceRefusals(); n != 1 || at.IsZero() {
		t.Fatalf("refusals: %d at %v", n, at)
	}
	// A batch of several pairs is refused whole.
	var batch []VerifiedPair
	for shard := range uint32(c.Params().Shards) {
		if err := s.PutMetadata(shard, d.ID, d.Metadata); err != nil && !errors.Is(err, ErrNoSpace) {
			t.Fatal(err)
		}
		if v, err := s.VerifyPair(shard, d.ID, d.PairOnShard(c.Params(), int(shard))); err == nil {
			batch = append(batch, v)
		}
	}
	if err := s.WritePairs(batch...); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a batch past the capacity: %v", err)
	}
	if u := s.Usage(); u.Used != full.Used {
		t.Fatalf("refused writes changed the usage: %d → %d", full.Used, u.Used)
	}
	checkAll(t, s, a)
	checkStored(t, s, b, stored)
	checkStored(t, s, d, nil)

	// Reopened: the same, and the log holds nothing a refusal left.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openLogged(t, path, c, 1<<20)
	defer s.Close()
	checkAll(t, s, a)
	checkStored(t, s, b, stored)
	checkStored(t, s, d, nil)
	if err := s.SetCapacity("node-x", full.Capacity); err != nil {
		t.Fatal(err)
	}
	if _, err := storeBlob(s, b); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("after a reopen with the same capacity: %v", err)
	}

	// Space comes back with a deletion (a's end), and b goes in whole.
	if err := s.ApplyEvents(EventBatch{Index: 1, Ended: []crypto.BlobID{a.ID}}); err != nil {
		t.Fatal(err)
	}
	if u := s.Usage(); u.Free < full.Free+blob/2 {
		t.Fatalf("after deleting a blob of %d bytes: %+v", blob, u)
	}
	storeAll(t, s, b)
	checkAll(t, s, b)
	if _, err := storeBlob(s, d); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("full again: %v", err)
	}
	// Or with a larger capacity (here: none).
	if err := s.SetCapacity("node-x", 0); err != nil {
		t.Fatal(err)
	}
	storeAll(t, s, d)
	checkAll(t, s, b)
	checkAll(t, s, d)
}

// mountTmpfs mounts a tmpfs of the given size (mount(8)'s syntax) for the
// test, or skips it where that is not possible.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root: the real-ENOSPC test is skipped (TestCapacityRefusesWritesKeepsReads covers the capacity)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s): the real-ENOSPC test is skipped", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the file system is full, and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	// And the last few bytes a partial page could take.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return name
}

// On a real file system that fills up (a 16 MiB tmpfs): the store refuses
// writes while the disk's free space, less the headroom, cannot take them;
// when something else fills the disk behind its back, the write that hits
// ENOSPC fails with ErrNoSpace and leaves nothing that reads as a sliver;
// the store keeps serving, survives a reopen intact, and takes writes
// again once the disk has room.
func TestDiskFullOnTmpfs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inlineMax int
		blobSize  int
	}{{"value log", 0, 200_000}, {"inline in bbolt", 32 << 10, 50_000}} {
		t.Run(tc.name, func(t *testing.T) { testDiskFull(t, tc.inlineMax, tc.blobSize) })
	}
}

func testDiskFull(t *testing.T, inlineMax, blobSize int) {
	mnt := mountTmpfs(t, "16m")
	c, _ := coding.New(10)
	path := filepath.Join(mnt, "node.db")
	open := func() *Store {
		s, err := openWith(path, codecsFor(t, c), inlineMax, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	defer func() { s.Close() }()
	headroom := diskHeadroom
	diskHeadroom = 2 << 20
	defer func() { diskHeadroom = headroom }()

	// Fill it through the store: refused before ENOSPC, from statfs.
	var blobs []*coding.Encoded
	var partial *coding.Encoded
	var partialShards []uint32
	for i := range 1000 {
		enc := testBlob(t, c, uint64(10+i), blobSize)
		stored, err := storeBlob(s, enc)
		if err == nil {
			blobs = append(blobs, enc)
			continue
		}
		var nse *NoSpaceError
		if !errors.As(err, &nse) || nse.Cause != nil || nse.Capacity != 0 {
			t.Fatalf("blob %d on a filling disk: %v", i, err)
		}
		partial, partialShards = enc, stored
		break
	}
	if partial == nil || len(blobs) < 3 {
		t.Fatalf("%d blobs stored on a 16 MiB tmpfs, none refused", len(blobs))
	}
	if u := s.Usage(); u.DiskFree < diskHeadroom-(1<<20) || u.Free > 1<<20 {
		t.Fatalf("usage when refusing: %+v", u)
	}
	t.Logf("%d blobs stored, blob %d refused on shard %d", len(blobs), len(blobs), len(partialShards))

	// Now the disk fills behind the store's back, and its check is off:
	// the writes hit ENOSPC for real.
	s.space.diskCheck.Store(false)
	filler := fill(t, mnt)
	// bbolt may still have free pages for a pair or two: write until the
	// file system says no.
	var hit error
	var late *coding.Encoded
	var lateShards []uint32
	for i := 0; hit == nil; i++ {
		enc := partial
		if i > 0 {
			enc = testBlob(t, c, uint64(9000+i), blobSize)
		}
		if i > 20 {
			t.Fatal("20 blobs went onto a full disk")
		}
		stored, err := storeBlob(s, enc)
		switch {
		case err == nil && enc == partial:
			blobs, partial = append(blobs, partial), nil
		case err == nil:
			blobs = append(blobs, enc)
		case !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC):
			t.Fatalf("a write on a full disk: %v", err)
		case enc == partial:
			hit, partialShards = err, append(partialShards, stored...)
		default:
			hit, late, lateShards = err, enc, stored
		}
	}
	t.Logf("on a full disk: %v", hit)
	for _, enc := range blobs {
		checkAll(t, s, enc)
	}
	if partial != nil {
		checkStored(t, s, partial, partialShards)
	}
	if late != nil {
		checkStored(t, s, late, lateShards)
	}

	// Room again: the write goes through.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.space.diskCheck.Store(true)
	if err := s.ApplyEvents(EventBatch{Index: 1, Ended: []crypto.BlobID{blobs[0].ID, blobs[1].ID}}); err != nil {
		t.Fatal(err)
	}
	for _, enc := range []*coding.Encoded{partial, late} {
		if enc != nil {
			storeAll(t, s, enc)
			blobs = append(blobs, enc)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	for _, enc := range blobs[2:] {
		checkAll(t, s, enc)
	}
	checkStored(t, s, blobs[0], nil)
}
