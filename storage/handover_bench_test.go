package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/devnet"
)

// BenchmarkHandover replaces one node of ten (n = 100) holding 200 × 1 MiB
// blobs and reports every byte the other nodes received for the handover
// over the bytes the replaced node held: copied from it while it lives
// (received-x-held, target ≤ 1.05), rebuilt by recovery when it is dead
// (target ≤ 1.2).
//
//	go test -run '^$' -bench Handover -benchtime 1x ./storage
func BenchmarkHandover(b *testing.B) {
	for _, dead := range []bool{false, true} {
		name := "outgoing-alive"
		if dead {
			name = "outgoing-dead"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				net, held := handoverNetwork(b)
				b.StartTimer()
				start := time.Now()
				received := replaceNode(b, net, dead)
				b.ReportMetric(float64(received)/float64(held), "received-x-held")
				b.ReportMetric(time.Since(start).Seconds(), "handover-s")
				b.ReportMetric(float64(held)/1e6, "held-MB")
				net.Close()
			}
		})
	}
}

// handoverNetwork starts ten nodes at n = 100 and stores 200 × 1 MiB;
// it returns the bytes node 0 holds.
func handoverNetwork(b *testing.B) (*devnet.Network, int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	net, err := devnet.Start(ctx, devnet.Config{Dir: b.TempDir(), Nodes: 10, Shards: 100, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(client.Config{Control: []string{net.ControlAddr}, Token: net.ClientToken, NodeTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	blob := make([]byte, 1<<20)
	for i := range 200 {
		binary.BigEndian.PutUint64(blob, uint64(i)+uint64(time.Now().UnixNano()))
		if _, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 10}); err != nil {
			b.Fatal(err)
		}
	}
	// Stragglers cut off by the writer recover in the background: wait
	// until node 0 holds every pair of its shards.
	held := func() int64 { return net.Node(0).Stats().BytesStored + net.Node(0).Stats().RecoveryBytesFetched }
	for prev := int64(-1); prev != held(); time.Sleep(500 * time.Millisecond) {
		prev = held()
	}
	return net, net.Node(0).Stats().BytesStored
}

// replaceNode swaps node 0 for a new node and returns the bytes the other
// nodes received for the handover.
func replaceNode(b *testing.B, net *devnet.Network, dead bool) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Received for any reason from here on: copies, and recovery symbols
	// for handover rebuilds and background recovery alike (the recovery
	// counter includes the handover's rebuilds).
	received := func() (total int64) {
		for i := 1; i < net.Nodes(); i++ {
			st := net.Node(i).Stats()
			total += st.HandoverCopied + st.RecoveryBytesFetched
		}
		return total
	}
	before := received()
	joined, err := net.AddNode(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := net.SetStake(ctx, joined, 100); err != nil {
		b.Fatal(err)
	}
	if err := net.SetStake(ctx, 0, 0); err != nil {
		b.Fatal(err)
	}
	if dead {
		if err := net.StopNode(0); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := net.AdvanceEpoch(ctx, false); err != nil {
		b.Fatal(err)
	}
	for {
		if _, phase, err := net.Phase(ctx); err == nil && phase == "stable" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return received() - before
}
