package storage_test

import (
	"context"
	"crypto/rand"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// hugeBlob registers a blob of the largest size a node accepts (4 GiB)
// without encoding it — its pair hashes are random, which no pair will
// match, and stores its metadata on node i: enough for the node to take
// chunks of its pairs.
func (w *writer) hugeBlob(i int) (crypto.BlobID, coding.Params) {
	w.t.Helper()
	p := w.codec.Params()
	meta := &crypto.Metadata{Encoding: uint8(coding.DefaultEncoding(p.Shards)), Shards: uint32(p.Shards), Length: coding.DefaultMaxBlobLength,
		Pairs: make([]crypto.PairHashes, p.Shards)}
	for j := range meta.Pairs {
		rand.Read(meta.Pairs[j].Primary[:])
		rand.Read(meta.Pairs[j].Secondary[:])
	}
	resp, err := weftv1.NewClientClient(w.conn).RegisterBlob(w.clientCtx(), &weftv1.RegisterBlobRequest{
		Encoding: uint32(meta.Encoding), Shards: meta.Shards, Length: meta.Length, Root: pairsRoot(meta), EndEpoch: 10,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	id := crypto.BlobID(resp.BlobId)
	raw, _ := meta.MarshalBinary()
	st := weftv1.NewStorageClient(dial(w.t, w.net.NodeAddr(i)))
	if _, err := st.StoreMetadata(context.Background(), &weftv1.StoreMetadataRequest{BlobId: id[:], Metadata: raw}); err != nil {
		w.t.Fatal(err)
	}
	return id, p
}

// partialChunk is the first size bytes of one sliver of the blob's pair
// on a shard.
func partialChunk(id crypto.BlobID, p coding.Params, shard uint32, axis crypto.Axis, size int) *weftv1.SliverChunk {
	symbol, _ := p.SymbolSize(coding.DefaultMaxBlobLength)
	pair := p.PairForShard(int(shard), id)
	return &weftv1.SliverChunk{BlobId: id[:], Axis: uint32(axis), Index: uint32(p.PairSliver(pair, axis)),
		SymbolSize: uint32(symbol), Data: make([]byte, size)}
}

// inFlight is what the node reports holding for writers' streams.
func inFlight(t *testing.T, n *storage.Node, kind string) float64 {
	t.Helper()
	families, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "weft_storage_peer_bytes_in_flight" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == kind {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// awaitInFlight waits until the node holds want bytes for writers.
func awaitInFlight(t *testing.T, n *storage.Node, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for inFlight(t, n, "write") != want {
		if time.Now().After(deadline) {
			t.Fatalf("the node holds %v bytes for writers, want %v", inFlight(t, n, "write"), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // pooled buffers survive one collection
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Eight one-byte chunks, each of a different pair of a registered 4 GiB
// blob, over real gRPC: the node keeps what arrived, not the slivers'
// declared sizes (which reserved 768 MiB at n = 100 before).
func TestPartialPairsHoldOnlyWhatArrived(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 100})
	id, p := w.hugeBlob(0)
	node := w.net.Node(0)
	owned := w.net.Owned(0)
	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	before := heapInUse()
	// Two streams: one may leave at most 4 pairs half-sent.
	for s := range 2 {
		stream, err := st.StorePairs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 4 {
			axis := crypto.Axis(j % 2)
			if err := stream.Send(partialChunk(id, p, owned[4*s+j], axis, 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	awaitInFlight(t, node, 8)
	after := heapInUse()
	grown := int64(after) - int64(before)
	t.Logf("heap before %d MiB, after %d MiB: grew %d KiB for 8 bytes of 8 pairs", before>>20, after>>20, grown>>10)
	if grown >= 16<<20 {
		t.Fatalf("8 one-byte chunks grew the heap by %d MiB", grown>>20)
	}
	cancel()
	awaitInFlight(t, node, 0) // the streams' bytes are given back when they end
}

// dialFrom connects to addr from another loopback address: another peer.
func dialFrom(t *testing.T, local, addr string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// requireExhausted checks a refusal: ResourceExhausted, naming the peer
// and the cap.
func requireExhausted(t *testing.T, err error, peer, cap string) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), peer) || !strings.Contains(err.Error(), cap) {
		t.Fatalf("got %v, want ResourceExhausted naming peer %s and %s", err, peer, cap)
	}
	t.Logf("refused: %v", status.Convert(err).Message())
}

// sendPair sends a pair's slivers (or only its primary) on a stream.
func sendPair(t *testing.T, stream weftv1.Storage_StorePairsClient, enc *coding.Encoded, p coding.Params, shard uint32, primaryOnly bool) {
	t.Helper()
	pair := enc.PairOnShard(p, int(shard))
	slivers := []coding.Sliver{pair.Primary, pair.Secondary}
	if primaryOnly {
		slivers = slivers[:1]
	}
	for _, sl := range slivers {
		if err := sendSliver(stream, enc.ID, sl); err != nil {
			t.Fatal(err)
		}
	}
}

// A peer (an IP address) past its stream cap is refused with
// ResourceExhausted while its open streams go on and another peer's
// streams work; past its in-flight bytes cap, a second stream's chunk is
// refused while its only stream is never refused for bytes.
func TestPeerCaps(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12, Limits: storage.PeerLimits{MaxStreams: 2, MaxInflightBytes: 1 << 20}})
	node := w.net.Node(0)
	owned := w.net.Owned(0)
	p := w.codec.Params()
	enc := w.register(make([]byte, 96<<10))
	raw, _ := enc.Metadata.MarshalBinary()
	a := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))                  // from 127.0.0.1
	b := weftv1.NewStorageClient(dialFrom(t, "127.0.0.2", w.net.NodeAddr(0))) // another peer
	ctx := context.Background()
	if _, err := a.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: raw}); err != nil {
		t.Fatal(err)
	}

	// Streams: two open, each with a half-sent pair; a third is refused.
	s1, _ := a.StorePairs(ctx)
	s2, _ := a.StorePairs(ctx)
	sendPair(t, s1, enc, p, owned[0], true)
	sendPair(t, s2, enc, p, owned[1], true)
	half := float64(len(enc.PairOnShard(p, int(owned[0])).Primary.Data) + len(enc.PairOnShard(p, int(owned[1])).Primary.Data))
	awaitInFlight(t, node, half)
	s3, _ := a.StorePairs(ctx)
	_ = s3.Send(&weftv1.SliverChunk{BlobId: enc.ID[:]})
	_, err := s3.CloseAndRecv()
	requireExhausted(t, err, "127.0.0.1", "--max-streams-per-peer")

	// Another peer stores meanwhile; the first peer's streams go on.
	sb, _ := b.StorePairs(ctx)
	sendPair(t, sb, enc, p, owned[2], false)
	if resp, err := sb.CloseAndRecv(); err != nil || len(resp.Pairs) != 1 {
		t.Fatalf("another peer's stream: %v, %v", resp, err)
	}
	for i, s := range []weftv1.Storage_StorePairsClient{s1, s2} {
		pair := enc.PairOnShard(p, int(owned[i]))
		if err := sendSliver(s, enc.ID, pair.Secondary); err != nil {
			t.Fatal(err)
		}
		if resp, err := s.CloseAndRecv(); err != nil || len(resp.Pairs) != 1 {
			t.Fatalf("stream %d within the cap: %v, %v", i+1, resp, err)
		}
	}
	awaitInFlight(t, node, 0)

	// Bytes: 768 KiB held by one stream; 512 KiB more from a second stream
	// would pass 1 MiB: refused. The first stream may go on alone.
	id, hp := w.hugeBlob(0)
	c1, _ := a.StorePairs(ctx)
	if err := c1.Send(partialChunk(id, hp, owned[0], crypto.Primary, 768<<10)); err != nil {
		t.Fatal(err)
	}
	awaitInFlight(t, node, 768<<10)
	c2, _ := a.StorePairs(ctx)
	_ = c2.Send(partialChunk(id, hp, owned[1], crypto.Primary, 512<<10))
	_, err = c2.CloseAndRecv()
	requireExhausted(t, err, "127.0.0.1", "--max-inflight-bytes-per-peer")
	next := partialChunk(id, hp, owned[0], crypto.Primary, 512<<10)
	next.Offset = 768 << 10
	if err := c1.Send(next); err != nil {
		t.Fatal(err)
	}
	awaitInFlight(t, node, 1280<<10) // its only stream: never refused for bytes
	cb, _ := b.StorePairs(ctx)
	if err := cb.Send(partialChunk(id, hp, owned[1], crypto.Primary, 512<<10)); err != nil {
		t.Fatal(err)
	}
	awaitInFlight(t, node, 1792<<10) // another peer has a cap of its own
	c1.CloseSend()
	cb.CloseSend()
	if _, err := c1.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a stream ended with a half-sent pair: %v", err)
	}
	cb.CloseAndRecv()
	awaitInFlight(t, node, 0)
}
