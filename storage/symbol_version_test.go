package storage_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
)

// A peer that does not say which recovery-symbol encodings it decodes — a
// node of an earlier release in a rolling upgrade — gets version 1 symbols;
// one that announces coding.SymbolVersionCompact gets the compact version
// 2; one that announces coding.SymbolVersionBatch gets one batch for all
// its requests, with a bitmap when some were not served. All decode to the
// same symbols.
func TestRecoverySymbolVersionAsked(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	enc := w.storeEverywhere(randomBlob(t, 20_000))
	params := w.codec.Params()
	owned := w.net.Owned(0)
	pair := enc.PairOnShard(params, int(owned[0]))
	var other coding.SliverPair // a pair on a shard node 0 does not hold
	for shard := range params.Shards {
		if !slices.Contains(owned, uint32(shard)) {
			other = enc.PairOnShard(params, shard)
			break
		}
	}
	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))
	held := []coding.SymbolRequest{{Source: pair.Primary.SliverRef, Target: 1}, {Source: pair.Primary.SliverRef, Target: 4}}
	partial := []coding.SymbolRequest{held[0], {Source: other.Primary.SliverRef, Target: 1}, held[1]}
	ask := func(version uint32, reqs []coding.SymbolRequest) *weftv1.GetRecoverySymbolsResponse {
		t.Helper()
		req := &weftv1.GetRecoverySymbolsRequest{BlobId: enc.ID[:], SymbolVersion: version, WithProofs: true}
		for _, q := range reqs {
			req.Symbols = append(req.Symbols, &weftv1.SymbolRequest{SourceAxis: uint32(q.Source.Axis), Source: q.Source.Index, Target: q.Target})
		}
		resp, err := st.GetRecoverySymbols(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	check := func(version uint32, syms []coding.RecoverySymbol) {
		t.Helper()
		if len(syms) != len(held) {
			t.Fatalf("asked version %d: %d symbols, want %d", version, len(syms), len(held))
		}
		for i, sym := range syms {
			if sym.SourceRef() != held[i].Source || sym.Target != held[i].Target {
				t.Fatalf("asked version %d: symbol %d is %s→%d, want %s", version, i, sym.SourceRef(), sym.Target, held[i])
			}
			if err := sym.Verify(enc.Metadata); err != nil {
				t.Fatalf("version %d symbol: %v", version, err)
			}
		}
	}
	var perSymbol [][]coding.RecoverySymbol
	for _, version := range []uint32{0, coding.SymbolVersionCompact} {
		resp := ask(version, partial)
		if len(resp.Batch) != 0 {
			t.Fatalf("asked version %d: got a batch", version)
		}
		var syms []coding.RecoverySymbol
		for _, raw := range resp.Symbols {
			if want := max(byte(version), 1); raw[0] != want {
				t.Fatalf("asked for version %d, got version %d", version, raw[0])
			}
			var sym coding.RecoverySymbol
			if err := sym.UnmarshalBinary(raw); err != nil {
				t.Fatal(err)
			}
			syms = append(syms, sym)
		}
		check(version, syms)
		perSymbol = append(perSymbol, syms)
	}
	for _, reqs := range [][]coding.SymbolRequest{partial, held} {
		resp := ask(coding.SymbolVersionBatch, reqs)
		if len(resp.Symbols) != 0 || len(resp.Batch) == 0 {
			t.Fatalf("asked version 3: %d symbols and a batch of %d bytes", len(resp.Symbols), len(resp.Batch))
		}
		// Flags: proofs, and a bitmap only when a request was not served.
		wantFlags := byte(1)
		if len(reqs) > len(held) {
			wantFlags |= 2
		}
		if resp.Batch[0] != coding.SymbolVersionBatch || resp.Batch[1] != wantFlags {
			t.Fatalf("batch for %d requests starts %x, want version 3, flags %#x", len(reqs), resp.Batch[:2], wantFlags)
		}
		batch := coding.SymbolBatch{Asked: reqs, SymbolSize: enc.SymbolSize, Proofs: true}
		if err := batch.UnmarshalBinary(resp.Batch); err != nil {
			t.Fatal(err)
		}
		check(coding.SymbolVersionBatch, batch.Symbols)
		for i, sym := range batch.Symbols {
			for _, other := range perSymbol {
				if !bytes.Equal(sym.Data, other[i].Data) {
					t.Fatalf("batch symbol %d differs from the per-symbol answer", i)
				}
			}
		}
		// The requester's own list is what the batch is read against: read
		// against another list of as many requests, its proofs fail.
		wrong := coding.SymbolBatch{Asked: slices.Clone(reqs), SymbolSize: enc.SymbolSize, Proofs: true}
		wrong.Asked[0].Source = coding.SliverRef{Axis: crypto.Primary, Index: (pair.Primary.Index + 1) % uint32(params.Shards)}
		if wrong.UnmarshalBinary(resp.Batch) == nil && wrong.Symbols[0].Verify(enc.Metadata) == nil {
			t.Fatal("a symbol read against the wrong request verifies")
		}
	}
	// A node of the previous release answers a batch request symbol by
	// symbol, in version 2.
	w.net.Node(0).AnswerSymbolsUpTo(coding.SymbolVersionCompact)
	resp := ask(coding.SymbolVersionBatch, partial)
	if len(resp.Batch) != 0 || len(resp.Symbols) != len(held) || resp.Symbols[0][0] != coding.SymbolVersionCompact {
		t.Fatalf("capped at version 2, asked 3: a batch of %d bytes and %d symbols", len(resp.Batch), len(resp.Symbols))
	}
}

// A rolling upgrade: nodes 0–2 answer as the previous release does,
// symbol by symbol (version 2) whatever is asked, the others in batches.
// A node that missed a write recovers its pairs from both — it needs some
// of each: its primary slivers need 14 symbols and nodes 3–5 hold only 9
// sources — and fetches about its slivers' size.
func TestRecoveryFromMixedReleases(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	for i := range 3 {
		w.net.Node(i).AnswerSymbolsUpTo(coding.SymbolVersionCompact)
	}
	if err := w.net.StopNode(6); err != nil {
		t.Fatal(err)
	}
	enc := w.register(randomBlob(t, 300_000))
	for i := range 6 {
		if err := w.storeOn(i, enc); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := w.certify(enc.ID, allNodes(6)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.net.StartNode(ctx, 6); err != nil {
		t.Fatal(err)
	}
	node := w.net.Node(6)
	owned := w.net.Owned(6)
	eventually(t, 30*time.Second, "recovery from old and new nodes", func() bool {
		for _, shard := range owned {
			if has, _ := node.Store().HasPair(shard, enc.ID); !has {
				return false
			}
		}
		return true
	})
	var sliverBytes int64
	for _, shard := range owned {
		want := enc.PairOnShard(w.codec.Params(), int(shard))
		for _, sl := range []coding.Sliver{want.Primary, want.Secondary} {
			got, err := node.Store().Sliver(shard, enc.ID, sl.Axis)
			if err != nil || !bytes.Equal(got.Data, sl.Data) {
				t.Fatalf("shard %d: recovered %s differs (%v)", shard, sl.SliverRef, err)
			}
			sliverBytes += int64(len(sl.Data))
		}
	}
	st := node.Stats()
	ratio := float64(st.RecoveryBytesFetched) / float64(sliverBytes)
	t.Logf("fetched %d bytes for %d bytes of slivers (%.3fx)", st.RecoveryBytesFetched, sliverBytes, ratio)
	if ratio < 0.8 || ratio > 1.3 || st.Rejected != 0 {
		t.Fatalf("recovery fetched %.2fx its slivers' size, rejected %d", ratio, st.Rejected)
	}
}
