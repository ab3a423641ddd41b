package storage

import (
	"container/list"
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSyncMemory is the default of Config.SyncMemory (weft node
// --sync-memory): the sliver bytes a node's handover holds at once.
const DefaultSyncMemory = 256 << 20

// syncBudget bounds the sliver bytes a node's handover holds in memory at
// once, over every shard it syncs: each pair being copied (from its first
// chunk to its write) and each pair being rebuilt (its symbols and the
// pair, until written) holds its bytes, taken before the first of them is
// fetched — a pair's size is known from its blob's metadata.
//
// It is a fair (first come, first served) weighted semaphore: a large
// pair waiting at the head is not starved by small ones behind it. A pair
// larger than the whole budget takes all of it, so it goes alone, once
// nothing else is held — it never waits for ever. Whoever holds bytes
// only waits on the network and the disk, never on the budget again, so
// the holders always give back what they took.
type syncBudget struct {
	size  int64
	gauge prometheus.Gauge // bytes held; nil in tests of the budget alone

	mu     sync.Mutex
	held   int64 // taken, each take at most size
	actual int64 // the takes' real sizes (above held only while one oversized pair goes alone)
	total  int64 // every take's real size, ever
	peak   int64 // highest actual since the last resetPeaks
	// shared is the highest actual while no pair larger than the budget
	// was held, since the last resetPeaks: at most size.
	shared    int64
	oversized int        // pairs larger than the budget held now (at most one but for empty takes)
	largest   int64      // largest single take since the last resetPeaks
	waiters   *list.List // of *budgetWaiter, first come first
	shards    map[uint32]int
	// shardsPeak is the most shards that were syncing at once (listing,
	// copying or rebuilding) since the last resetPeaks.
	shardsPeak int
}

type budgetWaiter struct {
	take, bytes int64
	ready       chan struct{}
}

func newSyncBudget(size int64, gauge prometheus.Gauge) *syncBudget {
	if size <= 0 {
		size = DefaultSyncMemory
	}
	return &syncBudget{size: size, gauge: gauge, waiters: list.New(), shards: map[uint32]int{}}
}

// acquire waits until bytes can be held (fairly: after those who asked
// first) and returns the function that gives them back. It fails only
// when ctx ends first.
func (b *syncBudget) acquire(ctx context.Context, bytes int64) (release func(), err error) {
	bytes = max(bytes, 0)
	take := min(bytes, b.size)
	b.mu.Lock()
	if b.waiters.Len() == 0 && b.held+take <= b.size {
		b.grantLocked(take, bytes)
		b.mu.Unlock()
		return b.releaser(take, bytes), nil
	}
	w := &budgetWaiter{take: take, bytes: bytes, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return b.releaser(take, bytes), nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready:
			// Granted meanwhile: give it back.
			b.releaseLocked(take, bytes)
		default:
			b.waiters.Remove(elem)
			// Those behind it may fit now.
			b.wakeLocked()
		}
		return nil, ctx.Err()
	}
}

// grantLocked records a take of take bytes of the budget for a pair of
// bytes (more than take only for a pair larger than the budget).
func (b *syncBudget) grantLocked(take, bytes int64) {
	b.held += take
	b.actual += bytes
	b.total += bytes
	if bytes > take {
		b.oversized++
	}
	b.peak = max(b.peak, b.actual)
	if b.oversized == 0 {
		b.shared = max(b.shared, b.actual)
	}
	b.largest = max(b.largest, bytes)
	b.setGaugeLocked()
}

func (b *syncBudget) releaseLocked(take, bytes int64) {
	b.held -= take
	b.actual -= bytes
	if bytes > take {
		b.oversized--
	}
	b.setGaugeLocked()
	b.wakeLocked()
}

func (b *syncBudget) releaser(take, bytes int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.releaseLocked(take, bytes)
		})
	}
}

// wakeLocked grants the waiters at the head that fit, in order.
func (b *syncBudget) wakeLocked() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if b.held+w.take > b.size {
			return
		}
		b.grantLocked(w.take, w.bytes)
		b.waiters.Remove(e)
		close(w.ready)
	}
}

func (b *syncBudget) setGaugeLocked() {
	if b.gauge != nil {
		b.gauge.Set(float64(b.actual))
	}
}

// shardStarted and shardStopped count the shards syncing at once (for
// the peak tests read); a shard may be counted by several callers.
func (b *syncBudget) shardStarted(shard uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.shards[shard]++
	b.shardsPeak = max(b.shardsPeak, len(b.shards))
}

func (b *syncBudget) shardStopped(shard uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shards[shard]--; b.shards[shard] <= 0 {
		delete(b.shards, shard)
	}
}

// syncPeaks are what a node's handover held at once, for tests.
type syncPeaks struct {
	Bytes   int64 // the most bytes held at once
	Shared  int64 // the most bytes held at once while no pair larger than the budget was
	Largest int64 // the largest single take
	Shards  int   // the most shards syncing at once
	Total   int64 // the bytes ever taken
	Budget  int64
}

// peaks returns the peaks since the last resetPeaks.
func (b *syncBudget) peaks() syncPeaks {
	b.mu.Lock()
	defer b.mu.Unlock()
	return syncPeaks{Bytes: b.peak, Shared: b.shared, Largest: b.largest, Shards: b.shardsPeak, Total: b.total, Budget: b.size}
}

func (b *syncBudget) resetPeaks() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peak, b.largest, b.shardsPeak = b.actual, 0, len(b.shards)
	b.shared = 0
	if b.oversized == 0 {
		b.shared = b.actual
	}
}

// syncLimits bound what a node's handover does at once, over all the
// shards it syncs.
type syncLimits struct {
	budget *syncBudget
	// streams bounds the shards listing their to-do list and copying from
	// their holder at once (one SyncShard stream each): n = 1000 must not
	// open a thousand streams. A shard rebuilding, or waiting to ask an
	// unreachable holder again, does not hold one.
	streams chan struct{}
	// rebuilds bounds the pairs rebuilt at once over all shards (each a
	// round of symbol requests to every peer).
	rebuilds chan struct{}
}

// The handover's counts: at most maxSyncStreams shards copy at once (and
// at most a quarter of the node's --max-reads-per-peer, which its holders
// are taken to share: a holder refuses a sync past its cap), and
// rebuildsPerNode pairs are rebuilt at once (what two shards of
// rebuildParallel each did before the byte budget).
const (
	maxSyncStreams  = 16
	rebuildsPerNode = 16
)

func newSyncLimits(memory int64, maxReads int, gauge prometheus.Gauge) *syncLimits {
	streams := min(maxSyncStreams, max(1, maxReads/4))
	return &syncLimits{budget: newSyncBudget(memory, gauge), streams: make(chan struct{}, streams), rebuilds: make(chan struct{}, rebuildsPerNode)}
}

// take waits for a slot of a channel semaphore.
func take(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// slot is one caller's slot of a channel semaphore, given back and taken
// again as it waits.
type slot struct {
	ch   chan struct{}
	held bool
}

func (s *slot) take(ctx context.Context) error {
	if s.held {
		return nil
	}
	if err := take(ctx, s.ch); err != nil {
		return err
	}
	s.held = true
	return nil
}

func (s *slot) give() {
	if s.held {
		<-s.ch
		s.held = false
	}
}
