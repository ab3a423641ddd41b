package client

import (
	"bytes"
	"testing"
	"time"
)

// Storing the same bytes again reuses the client's object of them — in a
// later epoch, moved to the new end epoch for the epochs added only — so
// nothing is paid twice; a store asking for another kind of object (here
// permanent) gets one of its own, charged.
func TestStoreReusesTheClientsObject(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)
	blob := randomBlob(77, 50_000)
	size, err := testCodec(t, c, 8).Params().EncodedSize(uint64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	used := func() uint64 {
		t.Helper()
		q, err := c.Quota(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return q.Used
	}
	store := func(opts StoreOptions) uint64 {
		t.Helper()
		var stats StoreStats
		opts.Stats = &stats
		if _, _, err := c.Store(ctx, bytes.NewReader(blob), opts); err != nil {
			t.Fatal(err)
		}
		return stats.Object
	}
	start := used()
	first := store(StoreOptions{Epochs: 2})
	if got := used() - start; got != 2*size {
		t.Fatalf("first store charged %d, want %d", got, 2*size)
	}
	if again := store(StoreOptions{Epochs: 2}); again != first || used()-start != 2*size {
		t.Fatalf("storing again: object %d (first %d), charged %d in all", again, first, used()-start)
	}
	perm := store(StoreOptions{Epochs: 2, Permanent: true})
	if perm == first || used()-start != 4*size {
		t.Fatalf("a permanent store: object %d, charged %d in all; want a new object, %d", perm, used()-start, 4*size)
	}
	if _, err := net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	if later := store(StoreOptions{Epochs: 2}); later != first || used()-start != 5*size {
		t.Fatalf("storing again an epoch later: object %d (first %d), charged %d in all; want %d", later, first, used()-start, 5*size)
	}
	obj, err := c.Object(ctx, first)
	if err != nil || obj.EndEpoch != 4 || !obj.Deletable || obj.Owner == "" {
		t.Fatalf("the reused object: %+v, %v", obj, err)
	}
}
