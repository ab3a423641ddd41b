package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

func (w *writer) owners(t *testing.T) []string {
	st, err := weftv1.NewWatchClient(w.conn).WatchState(context.Background(), &weftv1.WatchStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.Owners
}

// storeCertified stores blobs on every node and certifies them.
func (w *writer) storeCertified(t *testing.T, count, size int) []*coding.Encoded {
	var out []*coding.Encoded
	for range count {
		enc := w.register(randomBlob(t, size))
		for i := range w.net.Nodes() {
			if err := w.storeOn(i, enc); err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
		}
		if _, err := w.certify(enc.ID, allNodes(w.net.Nodes())); err != nil {
			t.Fatal(err)
		}
		out = append(out, enc)
	}
	return out
}

// A node joins: only the shards that move are copied — by the incoming
// node, from their holders, about their stored size — nobody else
// transfers anything, the epoch becomes Stable once every moved shard is
// synced, and the previous owners then delete their copies.
func TestHandoverMovesOnlyChangedShards(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	blobs := w.storeCertified(t, 5, 200_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := w.owners(t)
	joined, err := w.net.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.net.SetStake(ctx, joined, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	after := w.owners(t)
	var moved []int
	for s := range after {
		if after[s] != before[s] {
			if after[s] != string(w.net.NodeID(joined)) {
				t.Fatalf("shard %d moved from %s to %s, not to the joining node", s, before[s], after[s])
			}
			moved = append(moved, s)
		}
	}
	if len(moved) == 0 {
		t.Fatal("no shard moved to the joining node")
	}
	w.awaitStable(t, 30*time.Second, "the handover to finish (Stable)")
	node := w.net.Node(joined)
	var want int64
	for _, enc := range blobs {
		for _, s := range moved {
			pair := enc.PairOnShard(w.codec.Params(), s)
			want += int64(len(pair.Primary.Data) + len(pair.Secondary.Data))
			got, err := node.Store().Sliver(uint32(s), enc.ID, pair.Primary.Axis)
			if err != nil || string(got.Data) != string(pair.Primary.Data) {
				t.Fatalf("shard %d of %s not handed over: %v", s, enc.ID, err)
			}
		}
	}
	st := node.Stats()
	t.Logf("moved shards %v: copied %d bytes for %d bytes of slivers (%.3fx), rebuilt %d", moved, st.HandoverCopied, want, float64(st.HandoverCopied)/float64(want), st.HandoverRebuilt)
	if st.HandoverCopied != want || st.HandoverRebuilt != 0 {
		t.Fatalf("copied %d bytes (want %d), rebuilt %d", st.HandoverCopied, want, st.HandoverRebuilt)
	}
	for i := range 4 {
		if s := w.net.Node(i).Stats(); s.HandoverCopied != 0 || s.HandoverRebuilt != 0 || s.RecoveryBytesFetched != 0 {
			t.Fatalf("node %d, whose shards did not move in, transferred %+v", i, s)
		}
	}
	// The previous owners delete the shards they gave up, and only those.
	for _, s := range moved {
		for i := range 4 {
			if before[s] != string(w.net.NodeID(i)) {
				continue
			}
			store := w.net.Node(i).Store()
			eventually(t, 10*time.Second, "the previous owner deleting its copy", func() bool {
				keeps, _ := store.KeepsShard(uint32(s))
				return !keeps
			})
			// Its other shards still hold the blobs: their metadata stays.
			for _, enc := range blobs {
				if _, err := store.AnyMetadata(enc.ID); err != nil {
					t.Fatalf("node %d dropped the metadata of %s with shard %d, keeping others: %v", i, enc.ID, s, err)
				}
			}
		}
	}
}

// A node leaves the committee (stake 0). Alive, it serves its shards'
// handover though it is no longer a member: the new owners copy their
// slivers. Dead before the change, its shards' new owners rebuild every
// blob by recovery, fetching about the size of what they rebuild (a 1-D
// code would need about nP× more).
//
// Down for a few seconds at the change and back (a restart), it is waited
// for: its shards are copied, not rebuilt (issue #23: one failed copy
// attempt made every shard rebuild in full).
func TestHandoverFromALeavingNode(t *testing.T) {
	t.Run("alive", func(t *testing.T) { testHandoverFromLeavingNode(t, false, 0) })
	t.Run("dead", func(t *testing.T) { testHandoverFromLeavingNode(t, true, 0) })
	t.Run("back after 6s", func(t *testing.T) { testHandoverFromLeavingNode(t, false, 6*time.Second) })
}

func testHandoverFromLeavingNode(t *testing.T, dead bool, away time.Duration) {
	cfg := devnet.Config{Nodes: 4, Shards: 12}
	if dead {
		cfg.CopyRetryWindow = 2 * time.Second // gone for good: rebuild soon
	}
	w := startNet(t, cfg)
	blobs := w.storeCertified(t, 4, 300_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := w.owners(t)
	if err := w.net.SetStake(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if dead || away > 0 {
		if err := w.net.StopNode(0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	if away > 0 {
		time.Sleep(away)
		if err := w.net.StartNode(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	w.awaitStable(t, 45*time.Second, "the handover to finish (Stable)")
	after := w.owners(t)
	var rebuilt, fetched, copied int64
	for i := 1; i < 4; i++ {
		node := w.net.Node(i)
		for s := range after {
			if before[s] != string(w.net.NodeID(0)) || after[s] != string(w.net.NodeID(i)) {
				continue
			}
			for _, enc := range blobs {
				pair := enc.PairOnShard(w.codec.Params(), s)
				rebuilt += int64(len(pair.Primary.Data) + len(pair.Secondary.Data))
				got, err := node.Store().Sliver(uint32(s), enc.ID, pair.Secondary.Axis)
				if err != nil || string(got.Data) != string(pair.Secondary.Data) {
					t.Fatalf("shard %d of %s not rebuilt on node %d: %v", s, enc.ID, i, err)
				}
			}
		}
		st := node.Stats()
		copied += st.HandoverCopied
		fetched += st.HandoverRebuilt
	}
	if !dead {
		t.Logf("handed over %d bytes of slivers: copied %d, rebuilt %d", rebuilt, copied, fetched)
		if copied != rebuilt || fetched != 0 {
			t.Fatalf("copied %d of %d bytes from the leaving node, fetched %d for rebuilding", copied, rebuilt, fetched)
		}
		// Having handed every shard over, the node keeps nothing of them,
		// metadata included.
		gone := w.net.Node(0).Store()
		eventually(t, 10*time.Second, "the node that left deleting its shards and their metadata", func() bool {
			for _, enc := range blobs {
				if _, err := gone.AnyMetadata(enc.ID); !errors.Is(err, storage.ErrNotFound) {
					return false
				}
			}
			shards, err := gone.Shards()
			return err == nil && len(shards) == 0
		})
		return
	}
	ratio := float64(fetched) / float64(rebuilt)
	t.Logf("rebuilt %d bytes of slivers, fetched %d (%.3fx)", rebuilt, fetched, ratio)
	if rebuilt == 0 || copied != 0 || ratio > 1.2 {
		t.Fatalf("fetched %.2fx what was rebuilt (copied %d from a dead holder)", ratio, copied)
	}
}

// Shard sync is served only to the shard's owner, on a request it signed
// for the current epoch, once: everything else is PermissionDenied and
// nothing is sent.
func TestSyncShardAuthorization(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 8})
	w.storeCertified(t, 2, 10_000)
	ctx := context.Background()
	owned := w.net.Owned(0)
	shard := owned[0]
	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))
	epoch := w.net.Node(0).Assignment().Epoch
	request := func(node int, key int, e uint64, nonce uint64) *weftv1.SyncShardRequest {
		msg, err := crypto.EncodeMessage(e, crypto.ShardSyncRequest{Shard: shard, Limit: 10, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		return &weftv1.SyncShardRequest{Node: string(w.net.NodeID(node)), Message: msg, Signature: w.net.Key(key).Sign(msg).Bytes()}
	}
	items := func(req *weftv1.SyncShardRequest) (int, error) {
		stream, err := st.SyncShard(ctx, req)
		if err != nil {
			return 0, err
		}
		count := 0
		for {
			item, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return count, nil
			}
			if err != nil {
				return count, err
			}
			if len(item.BlobId) != 0 {
				count++
			}
		}
	}
	for name, req := range map[string]*weftv1.SyncShardRequest{
		"a node that does not own the shard": request(1, 1, epoch, 1),
		"the owner's name, another key":      request(0, 1, epoch, 2),
		"another epoch":                      request(0, 0, epoch+1, 3),
		"a message that is no sync request":  {Node: string(w.net.NodeID(0)), Message: []byte("junk"), Signature: []byte("x")},
	} {
		n, err := items(req)
		if code := status.Code(err); n != 0 || (code != codes.PermissionDenied && code != codes.InvalidArgument) {
			t.Fatalf("%s: %d blobs served, err %v", name, n, err)
		}
	}
	good := request(0, 0, epoch, 10)
	if n, err := items(good); err != nil || n != 2 {
		t.Fatalf("the owner's request: %d blobs, %v", n, err)
	}
	if n, err := items(good); status.Code(err) != codes.PermissionDenied || n != 0 {
		t.Fatalf("the same request replayed: %d blobs, %v", n, err)
	}
}

// A blob one owner never received before the epoch change (a writer needs
// only a quorum) is still handed over: the registry, not the holder's
// store, is the to-do list, so the new owner rebuilds it — and reports the
// shard synced only once it has it.
func TestHandoverRebuildsWhatTheHolderNeverHad(t *testing.T) {
	// No background recovery: node 0 keeps its gap.
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12, RecoveryDelay: time.Hour})
	w.storeCertified(t, 2, 100_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Node 0 leaves at the change; this blob never reached it.
	enc := w.register(randomBlob(t, 150_000))
	for i := 1; i < 4; i++ {
		if err := w.storeOn(i, enc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.certify(enc.ID, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	before := w.owners(t)
	if err := w.net.SetStake(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	w.awaitStable(t, 45*time.Second, "the handover to finish (Stable)")
	after := w.owners(t)
	for s := range after {
		if before[s] != string(w.net.NodeID(0)) {
			continue
		}
		var owner int
		for i := range 4 {
			if string(w.net.NodeID(i)) == after[s] {
				owner = i
			}
		}
		pair := enc.PairOnShard(w.codec.Params(), s)
		got, err := w.net.Node(owner).Store().Sliver(uint32(s), enc.ID, pair.Primary.Axis)
		if err != nil || string(got.Data) != string(pair.Primary.Data) {
			t.Fatalf("shard %d synced without the blob its holder never had: %v", s, err)
		}
		if st := w.net.Node(owner).Stats(); st.HandoverCopied == 0 || st.HandoverRebuilt == 0 {
			t.Fatalf("node %d: copied %d, rebuilt %d: want both (the others copied, the gap rebuilt)", owner, st.HandoverCopied, st.HandoverRebuilt)
		}
	}
}

// An incoming owner that never comes up keeps the epoch in Handover while
// reads and writes go on; the operator zeroes its stake and forces the
// next epoch, and its shards go to nodes that sync them from the holders.
func TestForcedAdvancePastADeadIncomingOwner(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	blobs := w.storeCertified(t, 3, 50_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	joined, err := w.net.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.net.SetStake(ctx, joined, 100); err != nil {
		t.Fatal(err)
	}
	if err := w.net.StopNode(joined); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, phase, _ := w.net.Phase(ctx); phase != "handover" {
		t.Fatalf("phase %q with an incoming owner down", phase)
	}
	// Writes go on in the meantime (the dead node's shards are within f).
	more := w.register(randomBlob(t, 50_000))
	for i := range 4 {
		if err := w.storeOn(i, more); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.certify(more.ID, allNodes(4)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err == nil {
		t.Fatal("a plain advance during a handover was accepted")
	}
	if err := w.net.SetStake(ctx, joined, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, true); err != nil {
		t.Fatal(err)
	}
	w.awaitStable(t, 45*time.Second, "Stable after the forced advance")
	// Stable says every shard's holder is its owner; a shard that came
	// back to its holder (A → dead B → A) may still lack what B was sent,
	// and its owner rebuilds that in the background.
	after := w.owners(t)
	for s, owner := range after {
		var i int
		for j := range 4 {
			if string(w.net.NodeID(j)) == owner {
				i = j
			}
		}
		for _, enc := range append(blobs, more) {
			eventually(t, 20*time.Second, fmt.Sprintf("shard %d (owner %s) holding %s", s, owner, enc.ID), func() bool {
				has, _ := w.net.Node(i).Store().HasPair(uint32(s), enc.ID)
				return has
			})
		}
	}
}

// An incoming node stopped in the middle of a sync resumes after the last
// pair it wrote: what it verified before the stop is not fetched again.
func TestHandoverResumesAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 120 blobs")
	}
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	blobs := w.storeCertified(t, 120, 60_000)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	before := w.owners(t)
	joined, err := w.net.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.net.SetStake(ctx, joined, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	var want int64
	for s, owner := range w.owners(t) {
		if owner != before[s] {
			for _, enc := range blobs {
				pair := enc.PairOnShard(w.codec.Params(), s)
				want += int64(len(pair.Primary.Data) + len(pair.Secondary.Data))
			}
		}
	}
	node := w.net.Node(joined)
	for node.Stats().HandoverCopied == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := w.net.StopNode(joined); err != nil {
		t.Fatal(err)
	}
	first := node.Stats().HandoverCopied
	if first >= want {
		t.Skipf("the sync finished (%d bytes) before the stop; nothing to resume", first)
	}
	if err := w.net.StartNode(ctx, joined); err != nil {
		t.Fatal(err)
	}
	w.awaitStable(t, 60*time.Second, "the handover to finish (Stable)")
	second := w.net.Node(joined).Stats().HandoverCopied
	t.Logf("copied %d bytes before the stop and %d after, for %d bytes of slivers", first, second, want)
	if first+second != want {
		t.Fatalf("copied %d + %d bytes for %d: slivers were fetched twice or not at all", first, second, want)
	}
}

// Stores and reads run without pause through three epoch changes that
// replace every node of epoch 1 (two join and two leave, twice) and then
// change a stake: no operation fails, none returns other bytes, and a blob
// stored in epoch 1 is still read after all of its epoch-1 holders are
// gone.
func TestTrafficThroughChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("several epoch changes under load")
	}
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{Control: []string{w.net.ControlAddr}, Token: w.net.ClientToken, NodeTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := randomBlob(t, 250_000)
	firstID, _, err := c.Store(ctx, bytes.NewReader(first), client.StoreOptions{Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var ops, failures atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				blob := randomBlob(t, 40_000)
				id, _, err := c.Store(ctx, bytes.NewReader(blob), client.StoreOptions{Epochs: 20})
				if err == nil {
					var got []byte
					got, err = c.Read(ctx, id, client.ReadOptions{})
					if err == nil && !bytes.Equal(got, blob) {
						err = fmt.Errorf("read %s: other bytes", id)
					}
				}
				ops.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("operation during churn: %v", err)
				}
			}
		})
	}
	change := func(join int, leave ...int) {
		t.Helper()
		for range join {
			i, err := w.net.AddNode(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.net.SetStake(ctx, i, 100); err != nil {
				t.Fatal(err)
			}
		}
		for _, i := range leave {
			if err := w.net.SetStake(ctx, i, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
			t.Fatal(err)
		}
		w.awaitStable(t, 60*time.Second, "Stable")
	}
	change(2, 0, 1)
	change(2, 2, 3)
	if err := w.net.SetStake(ctx, 4, 300); err != nil {
		t.Fatal(err)
	}
	change(0)
	close(stop)
	wg.Wait()
	for i := range 4 {
		if err := w.net.StopNode(i); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Read(ctx, firstID, client.ReadOptions{})
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the epoch-1 blob after all its epoch-1 holders left: %v", err)
	}
	t.Logf("%d store+read operations through three epoch changes, %d failed", ops.Load(), failures.Load())
	if ops.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("%d operations, %d failed", ops.Load(), failures.Load())
	}
}

// A holder that serves corrupted slivers: the incoming owner checks every
// pair, copies none of the bad ones and rebuilds them by recovery.
func TestHandoverRebuildsWhatTheHolderServesWrong(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12, Faults: map[int]storage.Faults{0: {CorruptSlivers: true}}})
	blobs := w.storeCertified(t, 3, 80_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := w.owners(t)
	if err := w.net.SetStake(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	w.awaitStable(t, 45*time.Second, "Stable")
	after := w.owners(t)
	var copied, rebuilt, rejected int64
	for i := 1; i < 4; i++ {
		node := w.net.Node(i)
		for s := range after {
			if before[s] != string(w.net.NodeID(0)) || after[s] != string(w.net.NodeID(i)) {
				continue
			}
			for _, enc := range blobs {
				pair := enc.PairOnShard(w.codec.Params(), s)
				got, err := node.Store().Sliver(uint32(s), enc.ID, pair.Primary.Axis)
				if err != nil || string(got.Data) != string(pair.Primary.Data) {
					t.Fatalf("shard %d of %s on node %d: %v", s, enc.ID, i, err)
				}
			}
		}
		st := node.Stats()
		copied, rebuilt, rejected = copied+st.HandoverCopied, rebuilt+st.HandoverRebuilt, rejected+st.Rejected
	}
	if copied != 0 || rebuilt == 0 || rejected == 0 {
		t.Fatalf("copied %d bytes from a lying holder, rebuilt %d, rejected %d", copied, rebuilt, rejected)
	}
}

// awaitStable waits until the control plane's epoch is Stable.
func (w *writer) awaitStable(t *testing.T, d time.Duration, what string) {
	t.Helper()
	eventually(t, d, what, func() bool {
		_, phase, err := w.net.Phase(context.Background())
		return err == nil && phase == "stable"
	})
}
