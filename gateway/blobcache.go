package gateway

import (
	"context"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/weftstore/weft/crypto"
)

// blobCache holds the gateway's recently read blobs — bytes that passed
// the consistent-read check — so that a popular blob is not fetched,
// decoded and re-encoded for every GET. A blob ID names its bytes for
// good, so a cached copy never goes stale; whether the blob may still be
// served (not expired, not invalid) is asked of the control plane on
// every GET, as for a HEAD. Concurrent reads of one blob that is not
// cached are one read, which the callers wait for together; it is
// cancelled once every one of them has gone away.
type blobCache struct {
	mu      sync.Mutex
	flights map[crypto.BlobID]*flight             // reads in progress
	lru     *simplelru.LRU[crypto.BlobID, []byte] // nil: caching off
	bytes   int64                                 // of the blobs held
	max     int64
}

// flight is one read of a blob shared by the callers waiting for it.
type flight struct {
	done    chan struct{} // closed when blob and err are set
	blob    []byte
	err     error
	waiters int // callers still waiting (under blobCache.mu)
	cancel  context.CancelFunc
}

// newBlobCache holds up to max bytes of blobs (0: none, reads are still
// shared). A blob over a quarter of max is not cached: it would evict
// most of the others.
func newBlobCache(max int64) *blobCache {
	c := &blobCache{max: max, flights: make(map[crypto.BlobID]*flight)}
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
// which. A caller whose ctx ends stops waiting; the read goes on for the
// others, and is cancelled when the last one leaves.
func (c *blobCache) load(ctx context.Context, id crypto.BlobID, read func(context.Context) ([]byte, error)) (blob []byte, cached bool, err error) {
	if b, ok := c.get(id); ok {
		return b, true, nil
	}
	f := c.join(ctx, id, read)
	select {
	case <-f.done:
		return f.blob, false, f.err
	case <-ctx.Done():
		c.leave(id, f)
		return nil, false, ctx.Err()
	}
}

// join waits on the read of id in progress, or starts one.
func (c *blobCache) join(ctx context.Context, id crypto.BlobID, read func(context.Context) ([]byte, error)) *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[id]; ok {
		f.waiters++
		return f
	}
	// Not the first caller's context, which would fail the others if that
	// caller went away: its own, cancelled when nobody waits any more.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight{done: make(chan struct{}), waiters: 1, cancel: cancel}
	c.flights[id] = f
	go c.run(rctx, id, f, read)
	return f
}

func (c *blobCache) run(ctx context.Context, id crypto.BlobID, f *flight, read func(context.Context) ([]byte, error)) {
	defer f.cancel()
	b, err := read(ctx)
	if err == nil {
		c.put(id, b) // before the flight ends, so a later caller finds it
	}
	c.mu.Lock()
	if c.flights[id] == f {
		delete(c.flights, id)
	}
	c.mu.Unlock()
	f.blob, f.err = b, err
	close(f.done)
}

// leave stops waiting on f, cancelling the read when nobody else waits.
func (c *blobCache) leave(id crypto.BlobID, f *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.waiters--; f.waiters > 0 {
		return
	}
	f.cancel()
	// A caller that comes later starts a read of its own instead of
	// joining the cancelled one.
	if c.flights[id] == f {
		delete(c.flights, id)
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
