package storage

import (
	"container/list"
	"sync"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// lineCache keeps the extended lines of slivers this node recently served
// symbols from. A peer rebuilding several pairs of one blob (a handover,
// a node back from downtime) asks each source sliver for several targets
// in separate calls; without the cache every call re-encodes the whole
// line for one symbol. Bounded in bytes, least recently used out first,
// and entries expire: a deleted blob is not served from here for long.
type lineCache struct {
	maxBytes int64
	ttl      time.Duration

	mu    sync.Mutex
	bytes int64
	order *list.List // front: most recently used
	items map[lineKey]*list.Element
}

type lineKey struct {
	id    crypto.BlobID
	ref   coding.SliverRef
	shard uint32
}

type lineEntry struct {
	key   lineKey
	ext   *coding.ExtendedSliver
	bytes int64
	added time.Time
}

func newLineCache(maxBytes int64, ttl time.Duration) *lineCache {
	return &lineCache{maxBytes: maxBytes, ttl: ttl, order: list.New(), items: map[lineKey]*list.Element{}}
}

func (c *lineCache) get(k lineKey) *coding.ExtendedSliver {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	e := el.Value.(*lineEntry)
	if time.Since(e.added) > c.ttl {
		c.remove(el)
		return nil
	}
	c.order.MoveToFront(el)
	return e.ext
}

// put adds a line of the given size (its symbols plus room for its Merkle
// tree), evicting the least recently used lines to stay under the bound.
func (c *lineCache) put(k lineKey, ext *coding.ExtendedSliver, bytes int64) {
	if bytes > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.remove(el)
	}
	c.items[k] = c.order.PushFront(&lineEntry{key: k, ext: ext, bytes: bytes, added: time.Now()})
	c.bytes += bytes
	for c.bytes > c.maxBytes {
		c.remove(c.order.Back())
	}
}

func (c *lineCache) remove(el *list.Element) {
	e := el.Value.(*lineEntry)
	c.order.Remove(el)
	delete(c.items, e.key)
	c.bytes -= e.bytes
}
