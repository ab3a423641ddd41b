package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
)

// Concurrent loads of a blob that is not cached are one read; later loads
// are served from the cache; a failed read is not cached; a caller that
// goes away stops waiting without failing the others.
func TestBlobCacheSharesReads(t *testing.T) {
	c := newBlobCache(1 << 20)
	id := crypto.BlobID{7}
	var reads atomic.Int32
	release := make(chan struct{})
	read := func(context.Context) ([]byte, error) {
		reads.Add(1)
		<-release
		return []byte("blob bytes"), nil
	}
	gone, leave := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, _, err := c.load(gone, id, read)
		left <- err
	}()
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			// One slow to start finds the blob cached: the read is
			// still one.
			b, _, err := c.load(context.Background(), id, read)
			if err != nil {
				t.Errorf("load %d: %v", i, err)
			}
			got[i] = b
		})
	}
	time.Sleep(50 * time.Millisecond) // every caller waits on the one read
	leave()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that went away: %v", err)
	}
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads for 9 concurrent loads", n)
	}
	for i, b := range got {
		if string(b) != "blob bytes" {
			t.Fatalf("load %d got %q", i, b)
		}
	}
	if b, cached, err := c.load(context.Background(), id, read); err != nil || !cached || string(b) != "blob bytes" || reads.Load() != 1 {
		t.Fatalf("a later load: %q, cached %v, %v, %d reads", b, cached, err, reads.Load())
	}

	failing := crypto.BlobID{8}
	boom := errors.New("too few slivers")
	for range 2 {
		if _, _, err := c.load(context.Background(), failing, func(context.Context) ([]byte, error) { reads.Add(1); return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("a failed read: %v", err)
		}
	}
	if reads.Load() != 3 {
		t.Fatalf("a failed read was cached (%d reads)", reads.Load())
	}
}

// The cache holds at most its size in bytes, evicting the least recently
// read blobs, and keeps no blob over a quarter of its size; at size 0 it
// keeps nothing.
func TestBlobCacheBounds(t *testing.T) {
	c := newBlobCache(1000)
	blob := func(n int) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return make([]byte, n), nil }
	}
	for i := range 4 {
		if _, _, err := c.load(context.Background(), crypto.BlobID{byte(i)}, blob(250)); err != nil {
			t.Fatal(err)
		}
	}
	if bytes, blobs := c.size(); bytes != 1000 || blobs != 4 {
		t.Fatalf("%d bytes in %d blobs, want 1000 in 4", bytes, blobs)
	}
	c.get(crypto.BlobID{0}) // read again: blob 1 is now the least recent
	if _, _, err := c.load(context.Background(), crypto.BlobID{9}, blob(100)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.get(crypto.BlobID{1}); ok {
		t.Fatal("the least recently read blob was kept")
	}
	if _, ok := c.get(crypto.BlobID{0}); !ok {
		t.Fatal("a recently read blob was evicted")
	}
	if bytes, _ := c.size(); bytes != 850 {
		t.Fatalf("%d bytes held, want 850", bytes)
	}
	if _, _, err := c.load(context.Background(), crypto.BlobID{10}, blob(251)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.get(crypto.BlobID{10}); ok {
		t.Fatal("a blob over a quarter of the cache was kept")
	}

	off := newBlobCache(0)
	if _, cached, err := off.load(context.Background(), crypto.BlobID{1}, blob(10)); err != nil || cached {
		t.Fatal(cached, err)
	}
	if _, ok := off.get(crypto.BlobID{1}); ok {
		t.Fatal("a cache of size 0 kept a blob")
	}
}

// A shared read goes on while anyone waits for it and is cancelled when
// the last waiter leaves; a later load starts a read of its own rather
// than joining the cancelled one.
func TestBlobCacheCancelsAbandonedReads(t *testing.T) {
	c := newBlobCache(1 << 20)
	id := crypto.BlobID{9}
	started, cancelled := make(chan struct{}, 2), make(chan struct{}, 2)
	read := func(ctx context.Context) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		return nil, ctx.Err()
	}
	var leaves []context.CancelFunc
	errs := make(chan error, 2)
	for range 2 {
		ctx, leave := context.WithCancel(context.Background())
		leaves = append(leaves, leave)
		go func() { _, _, err := c.load(ctx, id, read); errs <- err }()
	}
	<-started
	time.Sleep(50 * time.Millisecond) // both callers wait on the one read
	leaves[0]()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left: %v", err)
	}
	select {
	case <-cancelled:
		t.Fatal("the read was cancelled while a caller still waited for it")
	case <-time.After(100 * time.Millisecond):
	}
	leaves[1]()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the last caller: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the read went on after every caller left")
	}
	b, _, err := c.load(context.Background(), id, func(context.Context) ([]byte, error) { return []byte("fresh"), nil })
	if err != nil || string(b) != "fresh" {
		t.Fatalf("a load after the cancelled read: %q, %v", b, err)
	}
	if len(started) != 0 {
		t.Fatal("the cancelled read was started twice")
	}
}
