package storage_test

import (
	"context"
	"testing"
	"time"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/devnet"
)

// signInvalidCalls is how many SignInvalid calls a node has received,
// whatever their answer (its RPC histogram's count).
func signInvalidCalls(t *testing.T, w *writer, i int) uint64 {
	t.Helper()
	families, err := w.net.Node(i).Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var calls uint64
	for _, f := range families {
		if f.GetName() != "weft_storage_rpc_seconds" {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "method" && l.GetValue() == "/weft.v1.Storage/SignInvalid" {
					calls += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return calls
}

// The node that proves a blob inconsistent asks for signatures only until
// their weight reaches f+1: over 7 nodes of 3 shards each (f+1 = 7) its
// own 3 and two peers' 6 suffice, so at most 2 (3 if a slow answer made
// it ask one more) of the 6 peers are asked — not all of them — and the
// certificate is accepted.
func TestInvalidBlobSignaturesStopAtThreshold(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	enc := w.certifyInconsistentWithoutNode6(t, 50_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.net.StartNode(ctx, 6); err != nil { // it recovers, and finds the blob inconsistent
		t.Fatal(err)
	}
	control := weftv1.NewClientClient(w.conn)
	eventually(t, 30*time.Second, "the blob marked invalid", func() bool {
		st, err := control.BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: enc.ID[:]})
		return err == nil && st.Status == "invalid"
	})
	var asked uint64
	for i := range 6 {
		asked += signInvalidCalls(t, w, i)
	}
	t.Logf("%d of 6 peers asked to sign", asked)
	if asked < 2 || asked > 3 {
		t.Fatalf("%d SignInvalid calls received; f+1 = 7 needs the reporter and 2 peers of weight 3", asked)
	}
}
