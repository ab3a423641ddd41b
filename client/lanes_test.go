package client

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// A network of more than 256 shards stores a blob in lanes16 (its
// default) and in leopard16 (the default before) when a client asks for it
// (Config.Encoding); any client reads both, since nodes code each blob in
// the encoding its metadata names. A node that was down during the stores
// rebuilds its pairs from its peers when it is back, and the blobs still
// read with two of five nodes stopped.
func TestLanes16OnALargeNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("a devnet of 300 shards")
	}
	net := startNet(t, 5, 300, nil)
	lanes := newClient(t, net, func(c *Config) { c.Encoding = coding.Lanes16 })
	leopard := newClient(t, net, func(c *Config) { c.Encoding = coding.Leopard16 })
	plain := newClient(t, net)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if err := net.StopNode(4); err != nil {
		t.Fatal(err)
	}
	stored := map[crypto.BlobID][]byte{}
	for i, size := range []int{1, 1000, 100_000} {
		blob := randomBlob(uint64(3000+i), size)
		id, _, err := lanes.Store(ctx, bytes.NewReader(blob), StoreOptions{})
		if err != nil {
			t.Fatalf("lanes16 store of %d bytes: %v", size, err)
		}
		if st, err := plain.Status(ctx, id); err != nil || st.Encoding != coding.Lanes16 {
			t.Fatalf("%d bytes: status %+v, %v; want lanes16", size, st, err)
		}
		stored[id] = blob
	}
	old := randomBlob(3100, 1000)
	oldID, _, err := leopard.Store(ctx, bytes.NewReader(old), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := lanes.Status(ctx, oldID); err != nil || st.Encoding != coding.Leopard16 {
		t.Fatalf("a leopard16 store: status %+v, %v; want leopard16", st, err)
	}
	stored[oldID] = old
	def := randomBlob(3200, 1000)
	defID, _, err := plain.Store(ctx, bytes.NewReader(def), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := leopard.Status(ctx, defID); err != nil || st.Encoding != coding.Lanes16 {
		t.Fatalf("a default store: status %+v, %v; want lanes16", st, err)
	}
	stored[defID] = def
	// A lanes16 blob costs what its 2-byte symbols take, far below
	// leopard16's 64-byte minimum.
	lp, _ := coding.NewParams(300, coding.WithEncoding(coding.Lanes16))
	op, _ := coding.NewParams(300, coding.WithEncoding(coding.Leopard16))
	if l, o := must(lp.EncodedSize(1000)), must(op.EncodedSize(1000)); l*32 != o {
		t.Fatalf("1000 bytes stored as %d bytes in lanes16, %d in leopard16", l, o)
	}

	if err := net.StartNode(ctx, 4); err != nil {
		t.Fatal(err)
	}
	store := net.Node(4).Store()
	for id := range stored {
		for _, shard := range net.Owned(4) {
			deadline := time.Now().Add(time.Minute)
			for has, _ := store.HasPair(shard, id); !has; has, _ = store.HasPair(shard, id) {
				if time.Now().After(deadline) {
					t.Fatalf("node 4 never rebuilt its pair of %s on shard %d", id, shard)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	for _, i := range []int{0, 1} {
		if err := net.StopNode(i); err != nil {
			t.Fatal(err)
		}
	}
	reader := newClient(t, net)
	for id, want := range stored {
		got, err := reader.Read(ctx, id, ReadOptions{})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reading %s with nodes 0 and 1 down: %d bytes, %v", id, len(got), err)
		}
	}
}

// A client asked for an encoding its network does not store refuses
// before it registers anything.
func TestStoreRefusesAnEncodingTheNetworkLacks(t *testing.T) {
	net := startNet(t, 4, 10, nil)
	c := newClient(t, net, func(c *Config) { c.Encoding = coding.Lanes16 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := c.Store(ctx, bytes.NewReader([]byte("x")), StoreOptions{})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lanes16 on a network of 10 shards: %v", err)
	}
	if q, qerr := c.Quota(ctx); qerr == nil && q.Used != 0 {
		t.Fatalf("the refused store charged %d", q.Used)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
