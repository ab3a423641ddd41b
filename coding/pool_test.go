package coding

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// sameEncoding fails unless got and want are the same encoding, byte for
// byte.
func sameEncoding(t *testing.T, got, want *Encoded) {
	t.Helper()
	if got.ID != want.ID || got.SymbolSize != want.SymbolSize || !reflect.DeepEqual(got.Metadata, want.Metadata) {
		t.Fatalf("blob %s (%d-byte symbols), want %s (%d)", got.ID, got.SymbolSize, want.ID, want.SymbolSize)
	}
	if !reflect.DeepEqual(got.Pairs, want.Pairs) {
		for p := range want.Pairs {
			if !reflect.DeepEqual(got.Pairs[p], want.Pairs[p]) {
				t.Fatalf("pair %d differs from a fresh encode's", p)
			}
		}
		t.Fatal("pairs differ from a fresh encode's")
	}
}

// An encode into a released encode's memory (poisoned on release in
// tests, so a byte the encode fails to write shows) equals a fresh one:
// blobs of other sizes, with partial and missing source rows, after each
// other in one pool.
func TestReleaseThenEncodeMatchesFresh(t *testing.T) {
	for _, tc := range []struct {
		n    int
		opts []Option
	}{{4, nil}, {10, nil}, {100, nil}, {301, nil}, {301, []Option{WithEncoding(Leopard16)}}, {1000, nil}} {
		t.Run(fmt.Sprintf("n=%d/%s", tc.n, mustCodec(t, tc.n, tc.opts...).Params().Encoding), func(t *testing.T) {
			if testing.Short() && tc.n > 300 {
				t.Skip("large n in -short mode")
			}
			t.Parallel()
			fresh := mustCodec(t, tc.n, tc.opts...)
			pooled := mustCodec(t, tc.n, append(tc.opts, WithBufferPool(1<<30))...)
			p := fresh.Params()
			row := p.NS * p.Encoding.symbolAlignment()
			sizes := []int{3<<20 + 12345, 3 << 20, 3<<20 - row + 1, 2<<20 + 7, 1, 0, row + 1, 5 * row, 3<<20 + 12345}
			for i, size := range sizes {
				blob := randomBlob(int64(tc.n*100+i), size)
				enc := mustEncode(t, pooled, blob)
				sameEncoding(t, enc, mustEncode(t, fresh, blob))
				enc.Release()
				if enc.Pairs != nil {
					t.Fatal("Release left the pairs in place")
				}
				enc.Release() // a second Release does nothing
			}
			if _, reused, _ := pooled.pool.stats(); reused == 0 {
				t.Fatal("no encode reused a released arena")
			}
		})
	}
}

// A released encode's memory is what the next encode of the same size
// writes: it allocates a small fraction of what the first did.
func TestReleasedArenaIsReused(t *testing.T) {
	c := mustCodec(t, 100, WithBufferPool(1<<30))
	blob := randomBlob(1, 4<<20)
	var enc *Encoded
	cold := allocatedBy(func() { enc = mustEncode(t, c, blob) })
	arena := &enc.arena.buf[0]
	enc.Release()
	warm := allocatedBy(func() { enc = mustEncode(t, c, blob) })
	if &enc.arena.buf[0] != arena {
		t.Error("the second encode did not get the released arena")
	}
	if held, reused, made := c.pool.stats(); held != 0 || reused != 1 || made != 1 {
		t.Errorf("pool holds %d bytes after %d arenas reused and %d made, want 0, 1, 1", held, reused, made)
	}
	// What a warm encode still allocates is scratch and bookkeeping, far
	// less than the arena it did not allocate. (Not a fraction of the cold
	// encode's bytes: under -race sync.Pool drops a share of Puts on
	// purpose, so the scratch buffers come back fresh now and then.)
	arenaBytes := uint64(len(enc.arena.buf))
	t.Logf("bytes allocated by an encode: %d cold, %d after a release; the arena is %d", cold, warm, arenaBytes)
	if warm*2 > arenaBytes {
		t.Errorf("an encode after a release allocated %d bytes, the arena it reused is %d: want under half of it", warm, arenaBytes)
	}
	if cold < arenaBytes {
		t.Errorf("the first encode allocated %d bytes, less than its %d-byte arena", cold, arenaBytes)
	}
	// Without a pool, Release does nothing and the slivers stay.
	plain := mustCodec(t, 100)
	enc = mustEncode(t, plain, blob)
	enc.Release()
	if enc.Pairs == nil {
		t.Error("Release without a pool dropped the pairs")
	}
}

// The pool never holds more than its bound: older arenas are evicted, and
// one larger than the bound is not kept.
func TestBufferPoolBound(t *testing.T) {
	c := mustCodec(t, 10, WithBufferPool(1<<30))
	size := len(mustEncode(t, c, randomBlob(1, 1<<20)).arena.buf)
	bound := int64(2*size + size/2) // two arenas of a 1 MiB blob, not three
	c = mustCodec(t, 10, WithBufferPool(bound))
	var encs []*Encoded
	for i := range 4 {
		encs = append(encs, mustEncode(t, c, randomBlob(int64(i), 1<<20)))
	}
	for _, enc := range encs {
		enc.Release()
		if held, _, _ := c.pool.stats(); held > bound {
			t.Fatalf("pool holds %d bytes, bound %d", held, bound)
		}
	}
	if held, _, _ := c.pool.stats(); held != int64(2*size) {
		t.Errorf("pool holds %d bytes after four releases, want two arenas (%d)", held, 2*size)
	}
	big := mustEncode(t, c, randomBlob(9, 4<<20)) // its arena exceeds the bound
	big.Release()
	if held, _, _ := c.pool.stats(); held > bound {
		t.Errorf("pool holds %d bytes after an arena over the bound was released, bound %d", held, bound)
	}
	// A small blob does not take a large blob's arena.
	c = mustCodec(t, 10, WithBufferPool(1<<30))
	mustEncode(t, c, randomBlob(1, 4<<20)).Release()
	mustEncode(t, c, randomBlob(2, 1<<10)).Release()
	if _, reused, made := c.pool.stats(); reused != 0 || made != 2 {
		t.Errorf("a 1 KiB blob reused a 4 MiB blob's arena (%d reused, %d made)", reused, made)
	}
}

// A pool no encode takes from lets go of what it holds after its idle
// time; one in use keeps it.
func TestBufferPoolLetsGoWhenIdle(t *testing.T) {
	c := mustCodec(t, 10, WithBufferPool(1<<30))
	c.pool.idle = 200 * time.Millisecond
	blob := randomBlob(1, 1<<20)
	mustEncode(t, c, blob).Release()
	// Busy: an encode every 50 ms, longer than the idle time in all.
	for range 8 {
		time.Sleep(50 * time.Millisecond)
		mustEncode(t, c, blob).Release()
	}
	if c.PooledBytes() == 0 {
		t.Fatal("a pool in use let go of its memory")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.PooledBytes() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pool still holds %d bytes 5 s after the last encode (idle time 200 ms)", c.PooledBytes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And it pools again afterwards.
	mustEncode(t, c, blob).Release()
	if c.PooledBytes() == 0 {
		t.Error("no memory pooled after the pool had let go")
	}
}

// DrainBufferPool lets go of what the pool holds at once and of an encode
// released after it (a store's last slivers may come back after the
// upload ended); the next encode fills the pool again.
func TestDrainBufferPool(t *testing.T) {
	c := mustCodec(t, 10, WithBufferPool(1<<30))
	blob := randomBlob(2, 1<<20)
	mustEncode(t, c, blob).Release()
	late := mustEncode(t, c, randomBlob(3, 1<<20))
	mustEncode(t, c, blob).Release()
	if c.PooledBytes() == 0 {
		t.Fatal("nothing pooled before the drain")
	}
	c.DrainBufferPool()
	if got := c.PooledBytes(); got != 0 {
		t.Fatalf("%d bytes pooled after the drain", got)
	}
	late.Release()
	if got := c.PooledBytes(); got != 0 {
		t.Fatalf("an encode released after the drain was pooled (%d bytes)", got)
	}
	mustEncode(t, c, blob).Release()
	if c.PooledBytes() == 0 {
		t.Fatal("no memory pooled after an encode that followed the drain")
	}
	mustCodec(t, 10).DrainBufferPool() // no pool: nothing to do
}

// Encodes and releases on many goroutines at once share the pool safely
// (run with -race) and each still encodes its own blob.
func TestConcurrentEncodeRelease(t *testing.T) {
	c := mustCodec(t, 10, WithBufferPool(8<<20))
	fresh := mustCodec(t, 10)
	blobs := make([][]byte, 4)
	want := make([]*Encoded, len(blobs))
	for i := range blobs {
		blobs[i] = randomBlob(int64(i), 256<<10+i*1000)
		want[i] = mustEncode(t, fresh, blobs[i])
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for k := range 8 {
				i := (g + k) % len(blobs)
				enc, err := c.Encode(blobs[i])
				if err != nil {
					t.Error(err)
					return
				}
				if !reflect.DeepEqual(enc.Pairs, want[i].Pairs) || enc.ID != want[i].ID {
					t.Errorf("goroutine %d: blob %d encoded differently", g, i)
				}
				enc.Release()
			}
		})
	}
	wg.Wait()
	if held, _, _ := c.pool.stats(); held > 8<<20 {
		t.Errorf("pool holds %d bytes, bound %d", held, 8<<20)
	}
}
