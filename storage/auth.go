package storage

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/wire"
)

// Authorization is the storage node's table: every method of
// weft.v1.Storage and who may call it (TestStorageAuthorizationTable holds
// it against the generated descriptors). Nearly everything is open, on
// purpose:
//
//   - StoreMetadata, StorePairs: what they take is checked before it is
//     kept — metadata against the blob ID, the blob registered (and
//     neither invalid nor expired) at the control plane, each pair
//     against the metadata and for a shard the node owns. Who sends the
//     bytes does not matter; the client's token is spent at registration.
//   - GetMetadata, GetSliver, GetRecoverySymbols: public data that readers
//     verify (against the blob ID, the pair hashes, the Merkle proofs).
//     A node cannot tell a client from a peer anyway: requests are not
//     signed (the challenge embargo relies on refusing everyone).
//   - GetConfirmation: the node signs "blob stored" only over pairs on its
//     disk; the signature is evidence anyone may hold (the writer
//     aggregates it, the control plane checks it).
//   - SignInvalid: the inconsistency proof verifies on its own; the node
//     signs only what it checked, whoever brings it (a peer, a reader).
//   - ProveChallenge: computed once per round, the same signed bytes for
//     every asker (no work per caller); a proof is evidence meant to be
//     checked, and anyone may check it.
//   - NodeStatus: the epoch, the shard states and progress counters the
//     control plane's state makes public anyway.
//   - SyncShard: a signed request of the shard's owner. The interceptor
//     refuses one without node and signature (Unauthenticated); the
//     handler verifies the signature against the committee's key, the
//     epoch, the ownership and the nonce (authorizeSync) before it reads
//     anything.
var Authorization = wire.Policy{
	"/weft.v1.Storage/StoreMetadata":      wire.Anyone,
	"/weft.v1.Storage/StorePairs":         wire.Anyone,
	"/weft.v1.Storage/GetMetadata":        wire.Anyone,
	"/weft.v1.Storage/GetSliver":          wire.Anyone,
	"/weft.v1.Storage/GetRecoverySymbols": wire.Anyone,
	"/weft.v1.Storage/GetConfirmation":    wire.Anyone,
	"/weft.v1.Storage/SignInvalid":        wire.Anyone,
	"/weft.v1.Storage/NodeStatus":         wire.Anyone,
	"/weft.v1.Storage/SyncShard":          wire.NodeSignature,
	"/weft.v1.Storage/ProveChallenge":     wire.Anyone,
}

// authorize is the table's check (wire.Check). req is a SyncShard
// request for a NodeSignature method: it is a protobuf the chunk codec
// decodes as the standard codec does (only SliverChunk takes its own
// path), so its fields are there to look at.
func authorize(ctx context.Context, method string, access wire.Access, req any) (context.Context, error) {
	switch access {
	case wire.Anyone:
		return ctx, nil
	case wire.NodeSignature:
		signed, ok := req.(interface {
			GetNode() string
			GetSignature() []byte
		})
		if !ok || signed.GetNode() == "" || len(signed.GetSignature()) == 0 {
			return nil, status.Errorf(codes.Unauthenticated, "%s needs a signed node request (node and signature)", method)
		}
		return ctx, nil
	}
	return nil, status.Errorf(codes.PermissionDenied, "%s: no access rule %v on a storage node", method, access)
}
