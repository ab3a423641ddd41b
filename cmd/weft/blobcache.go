package main

import (
	"context"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"

	"github.com/weftstore/weft/crypto"
)

// blobCache holds the gateway's recently read blobs — bytes that passed
// the consistent-read check — so that a popular blob is not fetched,
// decoded and re-encoded for every GET. A blob ID names its bytes for
// good, so a cached copy never goes stale; whether the blob may still be
// served (not expired, not invalid) is asked of the control plane on
// every GET, as for a HEAD. Concurrent reads of one blob that is not
// cached are one read: the first caller's, which the others wait for.
type blobCache struct {
	reads singleflight.Group

	mu    sync.Mutex
	lru   *simplelru.LRU[crypto.BlobID, []byte] // nil: caching off
	bytes int64                                 // of the blobs held
	max   int64
}

// newBlobCache holds up to max bytes of blobs (0: none, reads are still
// shared). A blob over a quarter of max is not cached: it would evict
// most of the others.
func newBlobCache(max int64) *blobCache {
	c := &blobCache{max: max}
	if max > 0 {
		// Bounded by bytes below, not by count: a count no byte budget
		// reaches (blobs of 0 bytes cost nothing but an entry).
		c.lru, _ = simplelru.NewLRU[crypto.BlobID, []byte](1<<20, func(_ crypto.BlobID, b []byte) { c.bytes -= int64(len(b)) })
	}
	return c
}

// get returns a cached blob.
func (c *blobCache) get(id crypto.BlobID) ([]byte, bool) {
	if c.lru == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(id)
}

// load returns the blob from the cache, or reads it with read — once for
// all the callers that ask for it meanwhile — and caches it. cached says
// which.
func (c *blobCache) load(ctx context.Context, id crypto.BlobID, read func(context.Context) ([]byte, error)) (blob []byte, cached bool, err error) {
	if b, ok := c.get(id); ok {
		return b, true, nil
	}
	ch := c.reads.DoChan(string(id[:]), func() (any, error) {
		// Not the first caller's context: the others would fail with it
		// if that caller went away. The client's own timeouts bound it.
		b, err := read(context.WithoutCancel(ctx))
		if err == nil {
			c.put(id, b)
		}
		return b, err
	})
	select {
	case res := <-ch:
		b, _ := res.Val.([]byte)
		return b, false, res.Err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// put caches a blob, evicting the least recently read ones to make room.
func (c *blobCache) put(id crypto.BlobID, b []byte) {
	if c.lru == nil || int64(len(b)) > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lru.Contains(id) {
		return
	}
	c.lru.Add(id, b)
	c.bytes += int64(len(b))
	for c.bytes > c.max {
		c.lru.RemoveOldest()
	}
}

// size returns the bytes and blobs held.
func (c *blobCache) size() (bytes int64, blobs int) {
	if c.lru == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.lru.Len()
}
