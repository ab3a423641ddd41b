package coding

import (
	"sync"
	"time"
)

// WithBufferPool makes the codec keep the sliver memory of encodes given
// back with (*Encoded).Release, up to maxBytes of it, and take later
// encodes' slivers from there. An encode writes its output slivers (≈ 3.5×
// the blob at n = 1000) into fresh memory otherwise, and the kernel faults
// every fresh page in on first touch: for a client encoding one large blob
// after another that is a fifth of the encode's CPU time (DESIGN.md).
//
// maxBytes bounds the memory held while no encode uses it, whatever the
// blobs' sizes: an arena that would take the pool over it evicts the
// oldest ones, and one larger than maxBytes is left to the garbage
// collector. A pool no encode took from for PoolIdle lets go of all it
// holds: a process that stored a large blob once does not keep its
// memory for good. Memory in use by live Encodeds is theirs, as without a pool.
// 0 (the default) keeps no pool: Release then does nothing, and each
// sliver is its own allocation. The bound is per codec: Codecs made with
// this option give each encoding's codec a pool of its own.
func WithBufferPool(maxBytes int64) Option { return func(o *options) { o.bufferPool = maxBytes } }

// PoolIdle is how long a buffer pool keeps released memory that no encode
// takes (WithBufferPool).
const PoolIdle = 30 * time.Second

// arenaPool holds released arenas: each the one allocation an encode
// carved all its own slivers from.
type arenaPool struct {
	max  int64
	idle time.Duration

	mu      sync.Mutex
	held    int64
	free    [][]byte    // oldest first
	lastGet time.Time   // when an encode last took an arena
	trim    *time.Timer // armed while arenas are held
	drained bool        // DrainBufferPool since the last get: put keeps nothing
	// reused and made count the arenas get handed out from the pool and
	// freshly allocated (tests).
	reused, made int
}

func newArenaPool(max int64) *arenaPool {
	if max <= 0 {
		return nil
	}
	return &arenaPool{max: max, idle: PoolIdle}
}

// trimIdle drops every held arena once none was taken for p.idle, or
// checks again when that will be.
func (p *arenaPool) trimIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if wait := p.idle - time.Since(p.lastGet); wait > 0 && len(p.free) > 0 {
		p.trim.Reset(wait)
		return
	}
	p.dropAll()
}

// dropAll lets go of every held arena (p.mu held); the trim timer, if
// armed, is the caller's to stop.
func (p *arenaPool) dropAll() {
	clear(p.free)
	p.free, p.held, p.trim = nil, 0, nil
}

// get returns n bytes with undefined contents: the smallest held arena
// that fits and is at most twice n (a small blob does not take a large
// blob's arena), else a new one.
func (p *arenaPool) get(n int) []byte {
	p.mu.Lock()
	p.lastGet = time.Now()
	p.drained = false
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && cap(b) <= 2*n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		p.free = append(p.free[:best], p.free[best+1:]...)
		p.held -= int64(cap(b))
		p.reused++
		p.mu.Unlock()
		return b[:n]
	}
	p.made++
	p.mu.Unlock()
	return uncleared(n)
}

// put takes back an arena from get; nothing may use it any more.
func (p *arenaPool) put(b []byte) {
	size := int64(cap(b))
	if size == 0 || size > p.max {
		return
	}
	if poisonUncleared {
		b = b[:cap(b)]
		for i := range b {
			b[i] = 0xa5
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drained {
		return
	}
	for p.held+size > p.max {
		p.held -= int64(cap(p.free[0]))
		p.free[0] = nil
		p.free = p.free[1:]
	}
	p.free = append(p.free, b[:cap(b)])
	p.held += size
	if p.trim == nil {
		p.trim = time.AfterFunc(p.idle, p.trimIdle)
	}
}

// drain lets go of every held arena, and of those put back before the
// next get (DrainBufferPool).
func (p *arenaPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trim != nil {
		p.trim.Stop()
	}
	p.dropAll()
	p.drained = true
}

// DrainBufferPool lets go of all the released memory the codec's buffer
// pool holds (WithBufferPool), as the pool itself does after PoolIdle,
// and of encodes released after it until the next Encode: for a process
// that knows no encode is coming soon — a server whose last upload just
// ended, whose last slivers gRPC may still be sending — and would rather
// its memory went back than waited out PoolIdle. The next Encode fills
// the pool again. Safe to call at any time, with or without a pool.
func (c *Codec) DrainBufferPool() {
	if c.pool != nil {
		c.pool.drain()
	}
}

// stats returns the bytes held and how many arenas were reused and made.
func (p *arenaPool) stats() (held int64, reused, made int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held, p.reused, p.made
}

// Release gives the encode's sliver memory back to its codec's buffer
// pool (WithBufferPool), for a later Encode to write into. Call it once
// nothing reads the slivers any more — no goroutine, no pending network
// send: after Release the Encoded's Pairs are gone, and any Sliver or Data
// slice taken from it before may be overwritten by another encode at any
// time. The primary slivers that share the blob's memory stay the blob's
// (Encode). Release does nothing for an encode of a codec without a pool,
// or when called again; a caller that never calls it keeps every sliver
// for as long as it likes, as before.
func (e *Encoded) Release() {
	a := e.arena
	if a == nil {
		return
	}
	e.arena = nil
	e.Pairs = nil
	a.pool.put(a.buf)
}

// arena is an encode's slivers' memory, from its codec's pool.
type arena struct {
	pool *arenaPool
	buf  []byte
}

// PooledBytes is the memory of released encodes the codec holds for later
// ones (WithBufferPool): at most the pool's bound, 0 without a pool.
func (c *Codec) PooledBytes() int64 {
	if c.pool == nil {
		return 0
	}
	held, _, _ := c.pool.stats()
	return held
}
