package storage

import (
	"testing"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// The line cache stays under its bound (least recently used out first)
// and forgets lines past their time.
func TestLineCache(t *testing.T) {
	c := newLineCache(300, time.Hour)
	key := func(i uint32) lineKey { return lineKey{ref: coding.SliverRef{Axis: crypto.Primary, Index: i}} }
	ext := &coding.ExtendedSliver{}
	for i := range uint32(3) {
		c.put(key(i), ext, 100)
	}
	if c.get(key(0)) == nil { // 0 is now the most recent
		t.Fatal("line 0 missing")
	}
	c.put(key(3), ext, 100) // evicts 1, the least recently used
	if c.get(key(1)) != nil || c.get(key(0)) == nil || c.get(key(2)) == nil || c.get(key(3)) == nil {
		t.Fatal("eviction did not take the least recently used line")
	}
	if c.bytes != 300 || len(c.items) != 3 {
		t.Fatalf("%d bytes in %d lines", c.bytes, len(c.items))
	}
	c.put(key(9), ext, 301) // larger than the bound: not kept
	if c.get(key(9)) != nil {
		t.Fatal("a line over the bound was kept")
	}
	old := newLineCache(300, time.Millisecond)
	old.put(key(0), ext, 10)
	time.Sleep(5 * time.Millisecond)
	if old.get(key(0)) != nil || old.bytes != 0 {
		t.Fatal("an expired line was served")
	}
}

// A shard's sync cursor never moves past a blob that is not on disk yet,
// whatever order the blobs arrive in.
func TestSyncProgressCursorStopsAtGaps(t *testing.T) {
	id := func(b byte) crypto.BlobID { return crypto.BlobID{b} }
	p := newSyncProgress(id(0), []crypto.BlobID{id(1), id(2), id(3), id(4)})
	if got := p.mark(id(2)); got != id(0) {
		t.Fatalf("cursor %v after 2 with 1 missing", got[0])
	}
	if got := p.mark(id(4)); got != id(0) {
		t.Fatalf("cursor %v after 4 with 1 and 3 missing", got[0])
	}
	if got := p.mark(id(1)); got != id(2) {
		t.Fatalf("cursor %v once 1 and 2 are in", got[0])
	}
	if got := p.mark(id(3)); got != id(4) {
		t.Fatalf("cursor %v with all in", got[0])
	}
}
