package coding

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/reedsolomon"

	"github.com/weftstore/weft/crypto"
)

// Codec encodes, decodes and recovers blobs for one set of parameters. It is
// immutable and safe for concurrent use.
type Codec struct {
	params  Params
	workers int
	// col is the primary code: nP source symbols of a column → n. It
	// extends secondary slivers and decodes from primary slivers.
	col lineCoder
	// row is the secondary code: nS source symbols of a row → n. It extends
	// primary slivers and decodes from secondary slivers.
	row lineCoder
	// pool holds released encodes' sliver memory (WithBufferPool); nil
	// without one.
	pool *arenaPool
}

// New returns a codec for n shards.
func New(n int, opts ...Option) (*Codec, error) {
	o := options{encoding: DefaultEncoding(n), maxBlobLength: DefaultMaxBlobLength, workers: runtime.GOMAXPROCS(0)}
	for _, opt := range opts {
		opt(&o)
	}
	p, err := newParams(n, o.encoding, o.maxBlobLength)
	if err != nil {
		return nil, err
	}
	if o.workers < 1 {
		return nil, fmt.Errorf("%w: %d workers", ErrInvalidParams, o.workers)
	}
	col, err := cachedEncoder(p.Encoding, p.NP, n)
	if err != nil {
		return nil, err
	}
	row, err := cachedEncoder(p.Encoding, p.NS, n)
	if err != nil {
		return nil, err
	}
	return &Codec{params: p, workers: o.workers, col: col, row: row, pool: newArenaPool(o.bufferPool)}, nil
}

// Params returns the codec's parameters.
func (c *Codec) Params() Params { return c.params }

// lineCode returns the code whose codewords are the extended lines of the
// axis's slivers: rows (primary) use the row code, columns the column code.
func (c *Codec) lineCode(axis crypto.Axis) lineCoder {
	if axis == crypto.Primary {
		return c.row
	}
	return c.col
}

type encoderKey struct {
	enc  Encoding
	k, n int
}

// encoders caches one klauspost encoder per (encoding, k, n): building one
// computes tables (and for RS8 a matrix), and every blob of a network uses
// the same two.
var encoders sync.Map // encoderKey → lineCoder

func cachedEncoder(enc Encoding, k, n int) (lineCoder, error) {
	key := encoderKey{enc, k, n}
	if e, ok := encoders.Load(key); ok {
		return e.(lineCoder), nil
	}
	// We split work over goroutines ourselves (Leopard encodes on one).
	// Still the library gets two: with one, v1.14.2 takes its AVX2 path
	// for codes of more than 10 inputs even where the CPU has GFNI, and the
	// GFNI path (reached only through its goroutine split) is about three
	// times faster per core — BenchmarkLineCodePath. The inversion cache
	// is off because it grows with every distinct erasure pattern a
	// long-lived node sees.
	opts := []reedsolomon.Option{reedsolomon.WithMaxGoroutines(2), reedsolomon.WithInversionCache(false)}
	if enc == Leopard16 || enc == Lanes16 { // no GFNI path there: the goroutines only cost
		opts = append(opts, reedsolomon.WithLeopardGF16(true), reedsolomon.WithMaxGoroutines(1))
	}
	rs, err := reedsolomon.New(k, n-k, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s code %d→%d: %v", ErrInvalidParams, enc, k, n, err)
	}
	var e lineCoder = plainCode{rs}
	if enc == Lanes16 {
		e = laneCode{inner: rs, k: k}
	}
	actual, _ := encoders.LoadOrStore(key, e)
	return actual.(lineCoder), nil
}

// forEach runs do(state, task) for every task in [0, tasks) on up to
// workers goroutines, each with its own state from newState, and returns the
// first error. Tasks are handed out one at a time, so uneven tasks balance.
func forEach[S any](workers, tasks int, newState func() S, do func(state S, task int) error) error {
	workers = min(workers, tasks)
	if workers <= 1 {
		if tasks == 0 {
			return nil
		}
		st := newState()
		for t := 0; t < tasks; t++ {
			if err := do(st, t); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
		failed   atomic.Bool
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := newState()
			for !failed.Load() {
				t := int(next.Add(1) - 1)
				if t >= tasks {
					return
				}
				if err := do(st, t); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// chunkTarget is about how many bytes of one codeword's shards a single
// codec call touches: small enough to stay in a core's L2 cache (2 MiB on
// the machines measured) together with the codec's work buffers.
const chunkTarget = 2 << 20

// chunkBytes is about how many bytes of each shard one codec call
// handles: chunkTarget over the n shards of a codeword.
func (c *Codec) chunkBytes() int { return max(chunkTarget/c.params.Shards, 1) }

// nextCut returns the first position ≥ p at which the shards of a line of
// back-to-back s-byte symbols may be cut between codec calls: a symbol's
// start, or a multiple of the encoding's cut alignment into a symbol.
func (c *Codec) nextCut(p, s int) int {
	align := c.params.Encoding.cutAlignment()
	q, o := p/s, p%s
	if o = (o + align - 1) / align * align; o >= s {
		return (q + 1) * s
	}
	return q*s + o
}
