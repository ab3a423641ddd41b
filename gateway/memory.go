package gateway

import (
	"sync"

	"github.com/weftstore/weft/client"
)

// The soft memory limit (Config.SetMemoryLimit). Go's collector lets the
// heap grow to twice what is live before it runs (GOGC=100): a PUT of a
// file holds ≈ 650 MB live with 64 MiB chunks, so without a limit the
// gateway's resident set reached ≈ 1.3 GiB for it, and the heap one
// request left behind stayed resident into the next (issue #19's
// measurements, integration/bigfile_test.go). `weft store|read` set a
// soft limit of what they hold; the gateway cannot set one for good, as
// what it holds depends on the requests in flight, so it keeps the limit
// at what they are expected to hold: memoryBase + the cache + each
// request's share, raised when a request starts and lowered when it ends.
// A soft limit only makes the collector run sooner (and the runtime give
// freed memory back to the OS); it never fails an allocation, and Go
// bounds the collector's CPU when the live heap is over the limit.
const (
	// memoryBase is the gateway's own: the runtime, gRPC and HTTP
	// buffers, and the slack `weft store|read` allow themselves too.
	memoryBase int64 = 128 << 20
	// storeChunks is a PUT's share, in chunks (or in bytes of the body,
	// if smaller): the SDK's StoreParallel (2) chunks encoded, ≈ 4.5×
	// their size each, and the next chunk read — `weft store`'s figure.
	storeChunks int64 = 10
	// readChunks is a GET's share, in the file's largest chunk (or the
	// plain blob's length): the SDK's ReadAhead (2) chunks fetched and
	// decoded, one of them in its consistent-read check — `weft read`'s
	// figure, generous now that the check keeps no slivers
	// (coding.Codec.Metadata); a share too large only lets Go's own
	// doubling back in.
	readChunks int64 = 7
)

// memoryLimit keeps the soft memory limit at memoryBase + the cache +
// the shares of the requests in flight.
type memoryLimit struct {
	mu    sync.Mutex
	set   func(int64) // nil: the gateway does not set it
	fixed int64       // memoryBase + CacheSize
	held  int64       // the shares of the requests in flight
}

// newMemoryLimit sets the limit of an idle gateway (set may be nil).
func newMemoryLimit(set func(int64), cacheSize int64) *memoryLimit {
	m := &memoryLimit{set: set, fixed: memoryBase + max(cacheSize, 0)}
	if set != nil {
		set(m.fixed)
	}
	return m
}

// hold adds a request's share to the limit until release is called.
func (m *memoryLimit) hold(share int64) (release func()) {
	if m.set == nil || share <= 0 {
		return func() {}
	}
	m.add(share)
	var once sync.Once
	return func() { once.Do(func() { m.add(-share) }) }
}

func (m *memoryLimit) add(delta int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held += delta
	// Under the lock: limits are set in the order they are computed.
	m.set(m.fixed + m.held)
}

// chunkSize is the chunk size the gateway's PUTs use (Config.ChunkSize,
// else the SDK client's default).
func (g *Gateway) chunkSize() int64 {
	if g.cfg.ChunkSize > 0 {
		return g.cfg.ChunkSize
	}
	return min(client.DefaultChunkSize, g.cfg.MaxBlobSize)
}

// holdPut holds a PUT's share: storeChunks × its chunk size, or × its
// body's length if that is declared and shorter (a plain blob). When the
// last PUT in flight ends, the SDK client's encode buffers are drained
// (client.DrainEncodeBuffers): the chunks of one file's PUT, and of PUTs
// that overlap, still encode into each other's memory, but an idle
// gateway does not keep up to StoreParallel × 4 chunks of slivers for
// coding.PoolIdle — memory its GETs would otherwise sit on top of.
func (g *Gateway) holdPut(contentLength int64) (release func()) {
	unit := g.chunkSize()
	if contentLength >= 0 {
		unit = min(unit, contentLength)
	}
	g.puts.Add(1)
	releaseShare := g.mem.hold(storeChunks * unit)
	var once sync.Once
	return func() {
		once.Do(func() {
			releaseShare()
			if g.puts.Add(-1) == 0 {
				g.cl.DrainEncodeBuffers()
			}
		})
	}
}

// holdRead holds a GET's share of a blob of length bytes (a plain blob,
// held whole, or the largest chunk of a file).
func (g *Gateway) holdRead(length uint64) (release func()) {
	return g.mem.hold(readChunks * int64(min(length, uint64(min(g.cfg.MaxBlobSize, MaxWholeBlob)))))
}
