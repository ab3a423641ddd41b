package client

import (
	"bytes"
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
)

// A store gives its encode back to the codec's pool once gRPC has let go
// of every chunk it sent (also those of streams cut off at the quorum),
// and the next stores, encoded into that memory, read back byte for byte.
// Run with -race it also checks that no chunk is read while a later
// encode writes the memory.
func TestStoreReleasesItsEncode(t *testing.T) {
	net := startNet(t, 4, 12, nil)
	c := newClient(t, net, func(cfg *Config) {
		cfg.StragglerWait = -1 // cut the last nodes off at once
		cfg.EncodeBufferPool = 64 << 20
	})
	ctx := testContext(t, 90*time.Second)
	codec, err := c.storeCodec(12)
	if err != nil {
		t.Fatal(err)
	}
	var ids []crypto.BlobID
	var blobs [][]byte
	for i := range 4 {
		blob := randomBlob(uint64(7100+i), 2<<20+i*1000)
		id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{})
		if err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
		ids, blobs = append(ids, id), append(blobs, blob)
		for deadline := time.Now().Add(20 * time.Second); codec.PooledBytes() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("store %d: its encode never came back to the pool", i)
			}
		}
	}
	if held, bound := codec.PooledBytes(), c.cfg.EncodeBufferPool; held > bound {
		t.Errorf("the pool holds %d bytes, bound %d", held, bound)
	}
	for i, id := range ids {
		got, err := c.Read(ctx, id, ReadOptions{})
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d read back different", i)
		}
	}
}
