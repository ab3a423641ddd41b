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
