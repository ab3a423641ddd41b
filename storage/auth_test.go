package storage_test

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire/wiretest"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// Every method of weft.v1.Storage is in the node's table, and SyncShard —
// the one not open to anyone — is refused without a node and signature
// over a real node's gRPC server (its chunk codec included). One that
// carries them passes the interceptor (so it read the first message's
// fields), and the handler still checks the signature itself.
func TestStorageAuthorizationTable(t *testing.T) {
	wiretest.RequireComplete(t, storage.Authorization, "weft.v1.Storage")

	w := startNet(t, devnet.Config{Nodes: 4, Shards: 12})
	conn := dial(t, w.net.NodeAddr(0))
	if calls := wiretest.RequireRefusedWithout(context.Background(), t, conn, storage.Authorization, "weft.v1.Storage"); calls != 1 {
		t.Fatalf("called %d methods, want 1 (SyncShard)", calls)
	}

	// Signed, but with a key that is not the owner's.
	a := w.net.Node(0).Assignment()
	stranger, err := crypto.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := crypto.EncodeMessage(a.Epoch, crypto.ShardSyncRequest{Shard: 0, Limit: 1, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := weftv1.NewStorageClient(conn).SyncShard(context.Background(), &weftv1.SyncShardRequest{
		Node: string(a.Owners[0]), Message: msg, Signature: stranger.Sign(msg).Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.PermissionDenied || err == io.EOF {
		t.Fatalf("a sync request signed with another key: %v, want PermissionDenied from the handler", err)
	}
	t.Logf("refused by the handler: %v", status.Convert(err).Message())
}
