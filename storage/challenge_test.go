package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/challenge"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

func (w *writer) operatorCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+w.net.OperatorToken)
}

// startRound opens a challenge round and returns its number.
func (w *writer) startRound(t *testing.T) uint64 {
	t.Helper()
	resp, err := weftv1.NewAdminClient(w.conn).StartChallenge(w.operatorCtx(), &weftv1.StartChallengeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Round
}

func (w *writer) round(t *testing.T, round uint64) *weftv1.GetChallengeResponse {
	t.Helper()
	resp, err := weftv1.NewClientClient(w.conn).GetChallenge(context.Background(), &weftv1.GetChallengeRequest{Round: round})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// awaitClosed waits until a round closes (every node has an outcome) and
// returns it.
func (w *writer) awaitClosed(t *testing.T, round uint64, d time.Duration) *weftv1.GetChallengeResponse {
	t.Helper()
	var r *weftv1.GetChallengeResponse
	eventually(t, d, "the challenge round to close", func() bool {
		r = w.round(t, round)
		return !r.Open
	})
	return r
}

func outcomes(r *weftv1.GetChallengeResponse) map[string]*weftv1.ChallengedNode {
	out := map[string]*weftv1.ChallengedNode{}
	for _, n := range r.Nodes {
		out[n.Node] = n
	}
	return out
}

// storeEligible stores blobs on every node, certifies them and advances
// the epoch: a round samples only blobs certified before its epoch.
func (w *writer) storeEligible(t *testing.T, count, size int) []*coding.Encoded {
	t.Helper()
	blobs := w.storeCertified(t, count, size)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	return blobs
}

// Honest nodes prove every round: each proves once, every other member
// verifies and reports "passed", and the round closes as soon as every
// node has its outcome.
func TestChallengeHonestNodesPass(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	w.storeEligible(t, 10, 5_000)
	for range 2 {
		round := w.startRound(t)
		r := w.awaitClosed(t, round, 30*time.Second)
		if len(r.Blobs) != 10 {
			t.Fatalf("round %d sampled %d blobs, want all 10", round, len(r.Blobs))
		}
		for _, n := range r.Nodes {
			if n.Outcome != "passed" {
				t.Fatalf("round %d: honest node %s: %s (reasons %v)", round, n.Node, n.Outcome, n.Reasons)
			}
		}
	}
	for i := range w.net.Nodes() {
		st := w.net.Node(i).Stats()
		if st.ChallengesProved < 2 || st.ChallengesFailed != 0 || st.ChallengesAbstained != 0 {
			t.Fatalf("node %d: %+v", i, st)
		}
	}
}

// A node that dropped 5% of its sliver pairs (while confirming them) is
// caught within two rounds with evidence — and so is a lazy one that
// tries to rebuild each challenged sliver from its peers: they refuse
// while the round is open. The honest nodes pass meanwhile.
func TestChallengeCatchesDroppedPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 60 blobs on 6 nodes")
	}
	const cheater, lazy = 4, 5
	w := startNet(t, devnet.Config{Nodes: 6, Shards: 18, Faults: map[int]storage.Faults{
		cheater: {DropPairs: 5},
		lazy:    {DropPairs: 5, LazyChallenge: true},
	}})
	w.storeEligible(t, 60, 2_000)
	caught := map[string]bool{}
	cheaters := []string{string(w.net.NodeID(cheater)), string(w.net.NodeID(lazy))}
	for attempt := 1; attempt <= 2 && len(caught) < 2; attempt++ {
		round := w.startRound(t)
		r := w.awaitClosed(t, round, 60*time.Second)
		if len(r.Blobs) != challenge.DefaultSamples {
			t.Fatalf("round %d sampled %d blobs", round, len(r.Blobs))
		}
		got := outcomes(r)
		for i := range 4 {
			if n := got[string(w.net.NodeID(i))]; n.Outcome != "passed" {
				t.Fatalf("round %d: honest node %s: %s %v", round, n.Node, n.Outcome, n.Reasons)
			}
		}
		for _, id := range cheaters {
			n := got[id]
			switch n.Outcome {
			case "failed":
				caught[id] = true
				if len(n.Reasons) == 0 || !strings.Contains(n.Reasons[0], "does not match") {
					t.Fatalf("round %d: %s failed without evidence: %v", round, id, n.Reasons)
				}
				t.Logf("round %d: %s failed: %s", round, id, n.Reasons[0])
			case "passed":
				t.Logf("round %d: %s passed (no dropped pair sampled)", round, id)
			default:
				t.Fatalf("round %d: %s: %s", round, id, n.Outcome)
			}
		}
	}
	if len(caught) != 2 {
		t.Fatalf("caught %v within two rounds", caught)
	}
	var embargoed int64
	for i := range 4 {
		embargoed += w.net.Node(i).Stats().EmbargoedRequests
	}
	if embargoed == 0 {
		t.Fatal("the lazy node rebuilt without asking its peers")
	}
	t.Logf("the honest nodes refused %d requests under the embargo", embargoed)
}

// While a round is open nobody serves a sampled blob's slivers or symbols
// (to clients neither: a lazy node could pose as one), except a shard's
// owner syncing it; a restarted node applies the open round's embargo from
// its first request; once the round closes, reads succeed again.
func TestChallengeEmbargo(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	blobs := w.storeEligible(t, 6, 20_000)
	// A stopped node cannot answer: the round stays open.
	const down = 3
	if err := w.net.StopNode(down); err != nil {
		t.Fatal(err)
	}
	round := w.startRound(t)
	id := crypto.BlobID(w.round(t, round).Blobs[0])
	enc := blobs[0]
	for _, b := range blobs {
		if b.ID == id {
			enc = b
		}
	}
	ctx := context.Background()
	node := 0
	shard := w.net.Owned(node)[0]
	pair := enc.PairOnShard(w.codec.Params(), int(shard))
	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(node)))
	getSliver := func(st weftv1.StorageClient) error {
		stream, err := st.GetSliver(ctx, &weftv1.GetSliverRequest{BlobId: id[:], Axis: uint32(pair.Primary.Axis), Index: pair.Primary.Index})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
	eventually(t, 10*time.Second, "node 0 to apply the embargo", func() bool {
		return status.Code(getSliver(st)) == codes.Unavailable
	})
	err := getSliver(st)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "under storage challenge round") {
		t.Fatalf("GetSliver under the embargo: %v", err)
	}
	_, err = st.GetRecoverySymbols(ctx, &weftv1.GetRecoverySymbolsRequest{BlobId: id[:], Symbols: []*weftv1.SymbolRequest{
		{SourceAxis: uint32(pair.Primary.Axis), Source: pair.Primary.Index, Target: 0}}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetRecoverySymbols under the embargo: %v", err)
	}
	// The proof: the same signed bytes for every challenger, and they
	// verify; an unknown round is refused.
	var proofs [2][]byte
	for i := range proofs {
		resp, err := st.ProveChallenge(ctx, &weftv1.ProveChallengeRequest{Round: round})
		if err != nil {
			t.Fatal(err)
		}
		proofs[i] = resp.Response
	}
	if string(proofs[0]) != string(proofs[1]) {
		t.Fatal("two challengers got different proofs")
	}
	r := w.round(t, round)
	var rsp challenge.Response
	if err := rsp.UnmarshalBinary(proofs[0]); err != nil {
		t.Fatal(err)
	}
	var shards []uint32
	for _, n := range r.Nodes {
		if n.Node == string(w.net.NodeID(node)) {
			shards = n.Shards
		}
	}
	var sampled []crypto.BlobID
	for _, b := range r.Blobs {
		sampled = append(sampled, crypto.BlobID(b))
	}
	metas := map[crypto.BlobID]*crypto.Metadata{}
	for _, b := range blobs {
		metas[b.ID] = b.Metadata
	}
	want := challenge.Positions(challenge.Seed(r.Seed), sampled, shards, uint32(w.codec.Params().Shards), int(r.ShardsPerBlob))
	if err := challenge.Verify(&rsp, r.Epoch, round, string(w.net.NodeID(node)), w.net.Key(node).PublicKey(), want,
		func(id crypto.BlobID) (*crypto.Metadata, error) { return metas[id], nil }); err != nil || len(want) == 0 {
		t.Fatalf("%d positions: %v", len(want), err)
	}
	if _, err := st.ProveChallenge(ctx, &weftv1.ProveChallengeRequest{Round: round + 1}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ProveChallenge of an unknown round: %v", err)
	}
	// A shard's owner syncing it is served.
	epoch := w.net.Node(node).Assignment().Epoch
	msg, err := crypto.EncodeMessage(epoch, crypto.ShardSyncRequest{Shard: shard, Limit: 100, Nonce: uint64(time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	sync, err := st.SyncShard(ctx, &weftv1.SyncShardRequest{Node: string(w.net.NodeID(node)), Message: msg, Signature: w.net.Key(node).Sign(msg).Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	synced := false
	for {
		item, err := sync.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SyncShard under the embargo: %v", err)
		}
		synced = synced || string(item.BlobId) == string(id[:])
	}
	if !synced {
		t.Fatal("the shard's sync left out the embargoed blob")
	}
	// A client read fails while the round is open.
	reader, err := client.New(client.Config{Control: []string{w.net.ControlAddr}, NodeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = reader.Read(rctx, id, client.ReadOptions{NoChallengeWait: true})
	cancel()
	if !errors.Is(err, client.ErrUnderChallenge) {
		t.Fatalf("a read that does not wait, under the embargo: %v, want ErrUnderChallenge", err)
	}
	t.Logf("client read under the embargo: %v", err)
	// A plain read waits for the round to close, then reads.
	waited := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		got, err := reader.Read(wctx, id, client.ReadOptions{})
		if err == nil && uint64(len(got)) != enc.Metadata.Length {
			err = fmt.Errorf("read %d bytes", len(got))
		}
		waited <- err
	}()
	// The stopped node restarts: it refuses from its first request on
	// (unless the round closed meanwhile: its challengers reach it).
	if err := w.net.StartNode(ctx, down); err != nil {
		t.Fatal(err)
	}
	err = getSliver(weftv1.NewStorageClient(dial(t, w.net.NodeAddr(down))))
	if open := w.round(t, round).Open; open && status.Code(err) != codes.Unavailable {
		t.Fatalf("restarted node served a sampled blob under an open round: %v", err)
	} else if open {
		t.Logf("restarted node under the open round: %v", err)
	}
	r = w.awaitClosed(t, round, 60*time.Second)
	for _, n := range r.Nodes {
		if n.Outcome != "passed" {
			t.Fatalf("node %s: %s %v", n.Node, n.Outcome, n.Reasons)
		}
	}
	eventually(t, 10*time.Second, "reads after the round closed", func() bool { return getSliver(st) == nil })
	if err := <-waited; err != nil {
		t.Fatalf("a read started under the open round, after it closed: %v", err)
	}
	if _, err := st.ProveChallenge(ctx, &weftv1.ProveChallengeRequest{Round: round}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ProveChallenge of a closed round: %v", err)
	}
	rctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got, err := reader.Read(rctx, id, client.ReadOptions{})
	if err != nil || uint64(len(got)) != enc.Metadata.Length { // Read checks the bytes against the blob ID
		t.Fatalf("read after the round closed: %v", err)
	}
	if w.net.Node(node).Stats().EmbargoedRequests == 0 {
		t.Fatal("no embargoed request counted")
	}
}
