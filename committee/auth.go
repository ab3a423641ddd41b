package committee

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
)

// Authorization is the control plane's table: every method of the four
// services a voter serves and who may call it (TestAuthorizationTable
// holds it against the generated descriptors). Public reads are what
// readers and storage nodes verify against, sync or audit, and none is
// secret; a node signature is checked against the registered key (or, for
// RegisterNode, the key being registered and its proof of possession).
var Authorization = wire.Policy{
	"/weft.v1.Admin/Status":             wire.Operator,
	"/weft.v1.Admin/ListNodes":          wire.Operator,
	"/weft.v1.Admin/SetStake":           wire.Operator,
	"/weft.v1.Admin/RemoveNode":         wire.Operator,
	"/weft.v1.Admin/AdvanceEpoch":       wire.Operator,
	"/weft.v1.Admin/AddClient":          wire.Operator,
	"/weft.v1.Admin/SetQuota":           wire.Operator,
	"/weft.v1.Admin/ListClients":        wire.Operator,
	"/weft.v1.Admin/PeerInfo":           wire.Operator,
	"/weft.v1.Admin/ListPeers":          wire.Operator,
	"/weft.v1.Admin/AddPeer":            wire.Operator,
	"/weft.v1.Admin/RemovePeer":         wire.Operator,
	"/weft.v1.Admin/TransferLeadership": wire.Operator,
	"/weft.v1.Admin/AnnouncePeer":       wire.Operator,
	"/weft.v1.Admin/SaveSnapshot":       wire.Operator,
	"/weft.v1.Admin/RestoreSnapshot":    wire.Operator,
	"/weft.v1.Admin/StartChallenge":     wire.Operator,
	"/weft.v1.Admin/CloseChallenge":     wire.Operator,

	"/weft.v1.Node/RegisterNode":    wire.NodeSignature,
	"/weft.v1.Node/UpdateAddress":   wire.NodeSignature,
	"/weft.v1.Node/ShardSynced":     wire.NodeSignature,
	"/weft.v1.Node/MarkBlobInvalid": wire.NodeSignature,
	"/weft.v1.Node/ReportChallenge": wire.NodeSignature,

	"/weft.v1.Client/RegisterBlob":   wire.ClientToken,
	"/weft.v1.Client/CertifyBlob":    wire.ClientToken,
	"/weft.v1.Client/ExtendBlob":     wire.ClientToken,
	"/weft.v1.Client/DeleteObject":   wire.ClientToken,
	"/weft.v1.Client/TransferObject": wire.ClientToken,
	"/weft.v1.Client/SetAttributes":  wire.ClientToken,
	"/weft.v1.Client/ListObjects":    wire.ClientToken,
	"/weft.v1.Client/GetObject":      wire.Anyone,
	"/weft.v1.Client/GetClient":      wire.ClientToken,
	"/weft.v1.Client/BlobStatus":     wire.Anyone,
	"/weft.v1.Client/GetCommittee":   wire.Anyone,
	"/weft.v1.Client/ListCertified":  wire.Anyone,
	"/weft.v1.Client/GetChallenge":   wire.Anyone,
	"/weft.v1.Client/NetworkStatus":  wire.Anyone,

	"/weft.v1.Watch/WatchState": wire.Anyone,
	"/weft.v1.Watch/Events":     wire.Anyone,
}

// authorize is the table's check on this voter (wire.Check). The request
// ID header is validated first, for every method: it becomes part of a
// command ID, a bbolt key on every replica.
func (s *Service) authorize(ctx context.Context, method string, access wire.Access, req any) (context.Context, error) {
	if err := checkRequestID(ctx); err != nil {
		return nil, err
	}
	if method == "/weft.v1.Node/RegisterNode" {
		if err := s.registrations.allow(ctx); err != nil {
			return nil, err
		}
	}
	if m, ok := req.(proto.Message); ok {
		if err := checkStrings(m); err != nil {
			return nil, err
		}
	}
	switch access {
	case wire.Anyone:
		if _, given := bearer(ctx); given {
			return s.authenticateClient(ctx) // a credential, if given, must be good
		}
		return ctx, nil
	case wire.Operator:
		return ctx, s.authenticateOperator(ctx)
	case wire.ClientToken:
		return s.authenticateClient(ctx)
	case wire.NodeSignature:
		// The handler verifies the signature against the registered key
		// (it knows the signed payload); here: no request without one.
		signed, ok := req.(interface{ GetAuth() *weftv1.SignedRequest })
		if !ok || signed.GetAuth() == nil || signed.GetAuth().Node == "" || len(signed.GetAuth().Signature) == 0 {
			return nil, status.Error(codes.Unauthenticated, "signed node request required")
		}
		return ctx, nil
	}
	return nil, status.Errorf(codes.PermissionDenied, "no access rule %v", access)
}

// authenticateOperator checks the operator's bearer token: missing is
// Unauthenticated, wrong is PermissionDenied.
func (s *Service) authenticateOperator(ctx context.Context) error {
	token, ok := bearer(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "operator credential required (authorization: Bearer <token>)")
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.OperatorToken)) != 1 {
		return status.Error(codes.PermissionDenied, "operator credential not accepted")
	}
	return nil
}

// bearer is the call's bearer token, if it has an authorization header.
func bearer(ctx context.Context) (token string, present bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get(mdAuthorization)
	if len(values) == 0 {
		return "", false
	}
	token, _ = strings.CutPrefix(values[0], "Bearer ")
	return token, true
}

// MaxRequestIDLength bounds a caller's request ID (the client SDK sends
// 39 characters).
const MaxRequestIDLength = 64

// checkRequestID refuses a request ID that is too long or has characters
// outside [A-Za-z0-9._:-] (InvalidArgument).
func checkRequestID(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(mdRequestID) {
		if err := validRequestID(v); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s header: %v", mdRequestID, err)
		}
	}
	return nil
}
