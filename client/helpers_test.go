package client

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// startNet starts a real in-process network: a one-voter Raft control
// plane and storage nodes with their own bbolt files and gRPC servers on
// loopback.
func startNet(t testing.TB, nodes, shards int, faults map[int]storage.Faults) *devnet.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: nodes, Shards: shards, Faults: faults})
	if err != nil {
		t.Fatalf("devnet: %v", err)
	}
	t.Cleanup(func() {
		if err := net.Close(); err != nil {
			t.Logf("devnet close: %v", err)
		}
	})
	return net
}

// newClient returns a client of net with test-sized timeouts.
func newClient(t testing.TB, net *devnet.Network, tweak ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Control: []string{net.ControlAddr}, Token: net.ClientToken,
		NodeTimeout: 10 * time.Second, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		StragglerWait: 200 * time.Millisecond,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// randomBlob makes reproducible random bytes (seeded by the test, so each
// test stores distinct content: the same content is stored once).
func randomBlob(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x77656674))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
