package storage_test

import (
	"context"
	"testing"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/devnet"
)

// A peer that does not say which recovery-symbol encodings it decodes — a
// node of an earlier release in a rolling upgrade — gets version 1; one
// that announces coding.SymbolVersionCompact gets the compact version 2.
// Both decode to the same symbol.
func TestRecoverySymbolVersionAsked(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	enc := w.storeEverywhere(randomBlob(t, 20_000))
	pair := enc.PairOnShard(w.codec.Params(), int(w.net.Owned(0)[0]))
	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))
	var got [2]coding.RecoverySymbol
	for i, asked := range []uint32{0, coding.SymbolVersionCompact} {
		resp, err := st.GetRecoverySymbols(context.Background(), &weftv1.GetRecoverySymbolsRequest{
			BlobId: enc.ID[:], SymbolVersion: asked, WithProofs: true,
			Symbols: []*weftv1.SymbolRequest{{SourceAxis: uint32(pair.Primary.Axis), Source: pair.Primary.Index, Target: 1}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Symbols) != 1 {
			t.Fatalf("asked version %d: %d symbols", asked, len(resp.Symbols))
		}
		if want := max(byte(asked), 1); resp.Symbols[0][0] != want {
			t.Fatalf("asked for version %d, got version %d", asked, resp.Symbols[0][0])
		}
		if err := got[i].UnmarshalBinary(resp.Symbols[0]); err != nil {
			t.Fatal(err)
		}
		if err := got[i].Verify(enc.Metadata); err != nil {
			t.Fatalf("version %d symbol: %v", max(asked, uint32(1)), err)
		}
	}
	if string(got[0].Data) != string(got[1].Data) || got[0].SourceRef() != got[1].SourceRef() {
		t.Fatalf("the two versions carry different symbols: %+v, %+v", got[0], got[1])
	}
}
