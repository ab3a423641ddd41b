package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// fuzzSeg is the segment number FuzzValueRecord writes its records to (the
// store's own segments are numbered from 1).
const fuzzSeg = 100

// rawSliverValue returns the bbolt value of a stored sliver: the sliver
// itself or a pointer into the value log.
func rawSliverValue(tb testing.TB, s *Store, shard uint32, id crypto.BlobID, axis crypto.Axis) []byte {
	tb.Helper()
	var raw []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b, _ := shardBucket(tx, shard, sliverBucket(axis), false); b != nil {
			raw = bytes.Clone(b.Get(id[:]))
		}
		return nil
	}); err != nil || raw == nil {
		tb.Fatalf("no %s sliver of %s on shard %d: %v", axis, id, shard, err)
	}
	return raw
}

func putSliverValue(tb testing.TB, s *Store, shard uint32, id crypto.BlobID, axis crypto.Axis, v []byte) {
	tb.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := shardBucket(tx, shard, sliverBucket(axis), true)
		if err != nil {
			return err
		}
		return b.Put(id[:], v)
	}); err != nil {
		tb.Fatal(err)
	}
}

// FuzzValueRecord reads a sliver back through the store's read path —
// bbolt value, value-log pointer, record, sliver decoding — from arbitrary
// bytes: the value bbolt holds (ptr) and the bytes of a segment file
// (rec). fixCRC lets the fuzzer past the record's CRC: a pointer into that
// segment gets the CRC of the bytes it covers. Whatever the bytes, the
// read returns the sliver they encode (which re-encodes to them) or a
// *CorruptError naming the sliver — never a panic, another error, or an
// allocation out of proportion to the input.
func FuzzValueRecord(f *testing.F) {
	c, _ := coding.New(10)
	s, err := openWith(filepath.Join(f.TempDir(), "node.db"), codecsFor(f, c), 0, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// Through the page cache and without syncs: an O_DIRECT read of the
	// file just rewritten waits for the disk, and the fuzzer needs
	// thousands of runs a second (to minimize what it finds, too).
	s.db.NoSync = true
	s.values.direct = false
	blob := make([]byte, 10) // records of a few bytes: the fuzzer minimizes what it finds
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	enc, err := c.Encode(blob)
	if err != nil {
		f.Fatal(err)
	}
	p := c.Params()
	for shard := range uint32(p.Shards) {
		if err := s.PutMetadata(shard, enc.ID, enc.Metadata); err != nil {
			f.Fatal(err)
		}
		if err := s.PutPair(shard, enc.ID, enc.PairOnShard(p, int(shard))); err != nil {
			f.Fatal(err)
		}
	}
	const shard, axis = 0, crypto.Primary
	real, external, err := parseExtent(rawSliverValue(f, s, shard, enc.ID, axis))
	if err != nil || !external {
		f.Fatalf("the sliver is not in the value log: %v", err)
	}
	record, err := s.values.read(real)
	if err != nil {
		f.Fatal(err)
	}
	record = bytes.Clone(record)
	ptr := func(seg uint32, off int64, length, crc uint32) []byte {
		return extent{seg: seg, off: off, length: length, crc: crc}.marshal()
	}
	inline, _ := enc.PairOnShard(p, shard).Primary.MarshalBinary()
	f.Add(ptr(fuzzSeg, 0, real.length, real.crc), record, false)
	f.Add(inline, []byte(nil), false)
	f.Add(ptr(fuzzSeg, 0, real.length-1, 0), record, true)
	f.Add(ptr(fuzzSeg, 0, 1<<32-1, 0), record, true)
	f.Add(ptr(fuzzSeg, 1<<62, real.length, real.crc), record, false)
	f.Add(ptr(4242, 0, real.length, real.crc), record, false)
	f.Add(ptr(real.seg, real.off, real.length+valueAlign, real.crc), []byte(nil), false)
	f.Add(ptr(fuzzSeg, 0, real.length, real.crc)[:extentLen-1], record, false)
	f.Add([]byte{}, []byte(nil), false)

	segPath := s.values.path(fuzzSeg)
	f.Fuzz(func(t *testing.T, ptr, rec []byte, fixCRC bool) {
		if err := os.WriteFile(segPath, rec, 0o600); err != nil {
			t.Fatal(err)
		}
		e, external, perr := parseExtent(ptr)
		if perr == nil && external && fixCRC && e.seg == fuzzSeg && e.off <= int64(len(rec)) && int64(e.length) <= int64(len(rec))-e.off {
			ptr = bytes.Clone(ptr)
			binary.BigEndian.PutUint32(ptr[17:21], crc32.Checksum(rec[e.off:e.off+int64(e.length)], castagnoli))
		}
		putSliverValue(t, s, shard, enc.ID, axis, ptr)

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		sl, err := s.Sliver(shard, enc.ID, axis)
		runtime.ReadMemStats(&after)
		if grew, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20+8*(len(ptr)+len(rec))); grew > limit {
			t.Fatalf("reading %d + %d bytes allocated %d bytes", len(ptr), len(rec), grew)
		}
		if err != nil {
			var corrupt *CorruptError
			if !errors.As(err, &corrupt) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v (%T), want a *CorruptError", err, err)
			}
			if corrupt.Shard != shard || corrupt.Blob != enc.ID || corrupt.Axis != axis || !bytes.Equal(corrupt.value, ptr) {
				t.Fatalf("the error names %+v", corrupt)
			}
			return
		}
		src := ptr
		if external {
			seg, err := os.ReadFile(s.values.path(e.seg))
			if err != nil {
				t.Fatal(err)
			}
			src = seg[e.off : e.off+int64(e.length)]
		}
		again, err := sl.MarshalBinary()
		if err != nil || !bytes.Equal(again, src) {
			t.Fatalf("the sliver read does not re-encode to the bytes it was read from: %v", err)
		}
	})
}

// A pointer that names no record — a length past its segment's end (a
// rotten length once asked for a 4 GiB buffer), a segment that does not
// exist — reads as a *CorruptError (it was a plain error), and dropping it
// frees nothing: the segment's live bytes and its other records are
// untouched (DropCorrupt used to fail on it, or count a wrong extent as
// freed and punch it).
func TestValuesPointerToNoRecord(t *testing.T) {
	c, _ := coding.New(10)
	path := filepath.Join(t.TempDir(), "node.db")
	s := openLogged(t, path, c, 1<<20)
	enc := testBlob(t, c, 1, 20_000)
	storeAll(t, s, enc)
	p := c.Params()
	real, _, err := parseExtent(rawSliverValue(t, s, 0, enc.ID, crypto.Primary))
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(s.values.path(real.seg))
	if err != nil {
		t.Fatal(err)
	}
	broken := []extent{
		{seg: real.seg, off: real.off, length: 1<<32 - 1, crc: real.crc},
		{seg: real.seg, off: info.Size() - valueAlign, length: 2 * valueAlign, crc: real.crc},
		{seg: real.seg + 1000, off: real.off, length: real.length, crc: real.crc},
	}
	for i, e := range broken {
		shard := uint32(i)
		putSliverValue(t, s, shard, enc.ID, crypto.Primary, e.marshal())
		_, err := s.Sliver(shard, enc.ID, crypto.Primary)
		var corrupt *CorruptError
		if !errors.As(err, &corrupt) || !errors.Is(err, errNoRecord) {
			t.Fatalf("pointer %+v: err = %v, want a *CorruptError for no record", e, err)
		}
		if dropped, err := s.DropCorrupt(corrupt, 1); err != nil || !dropped {
			t.Fatalf("pointer %+v: DropCorrupt = %v, %v", e, dropped, err)
		}
	}
	// Every other sliver reads back, after a reopen too (the segment was
	// not taken for dead).
	check := func() {
		for shard := range uint32(p.Shards) {
			pair := enc.PairOnShard(p, int(shard))
			for _, want := range []coding.Sliver{pair.Primary, pair.Secondary} {
				got, err := s.Sliver(shard, enc.ID, want.Axis)
				if int(shard) < len(broken) && want.Axis == crypto.Primary {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("shard %d: the dropped sliver: %v", shard, err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got.Data, want.Data) {
					t.Fatalf("shard %d %s: %v", shard, want.Axis, err)
				}
			}
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openLogged(t, path, c, 1<<20)
	defer s.Close()
	check()
}
