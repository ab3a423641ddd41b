// Package control is the contract between the control plane and its
// callers: what a storage node signs and how the control plane checks it,
// the kinds of event in the control plane's stream, one Committee type,
// and Plane, the calls a storage node makes, with a gRPC implementation.
// It knows nothing of Raft or the FSM: storage and client depend on it,
// committee implements its server side.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// NodeRequest is a request a storage node signs: RegisterNode,
// ShardSynced, UpdateAddress, MarkBlobInvalid or ReportChallenge.
type NodeRequest interface {
	GetAuth() *weftv1.SignedRequest
}

// Describe returns the method a node request is for and the bytes its
// signature covers: per method, the request's fields in a fixed order
// (the payload digest of crypto.NodeRequest).
func Describe(req NodeRequest) (method string, payload []byte, err error) {
	m, err := methodOf(req)
	return m.name, m.payload, err
}

// nodeMethod is what the contract knows of one node request: its method
// name, the bytes its signature covers, where its signature goes and how
// it is sent. methodOf is the one place that lists the request types.
type nodeMethod struct {
	name    string
	payload []byte
	setAuth func(*weftv1.SignedRequest)
	send    func(context.Context, weftv1.NodeClient) error
}

func methodOf(req NodeRequest) (nodeMethod, error) {
	switch r := req.(type) {
	case *weftv1.RegisterNodeRequest:
		b := append([]byte(nil), r.PublicKey...)
		b = append(b, r.ProofOfPossession...)
		return nodeMethod{"RegisterNode", append(b, r.Address...), func(a *weftv1.SignedRequest) { r.Auth = a },
			func(ctx context.Context, c weftv1.NodeClient) error { _, err := c.RegisterNode(ctx, r); return err }}, nil
	case *weftv1.ShardSyncedRequest:
		b := binary.BigEndian.AppendUint64(nil, r.Epoch)
		return nodeMethod{"ShardSynced", binary.BigEndian.AppendUint32(b, r.Shard), func(a *weftv1.SignedRequest) { r.Auth = a },
			func(ctx context.Context, c weftv1.NodeClient) error { _, err := c.ShardSynced(ctx, r); return err }}, nil
	case *weftv1.UpdateAddressRequest:
		return nodeMethod{"UpdateAddress", []byte(r.Address), func(a *weftv1.SignedRequest) { r.Auth = a },
			func(ctx context.Context, c weftv1.NodeClient) error { _, err := c.UpdateAddress(ctx, r); return err }}, nil
	case *weftv1.MarkBlobInvalidRequest:
		return nodeMethod{"MarkBlobInvalid", append(append([]byte(nil), r.BlobId...), r.Certificate...), func(a *weftv1.SignedRequest) { r.Auth = a },
			func(ctx context.Context, c weftv1.NodeClient) error { _, err := c.MarkBlobInvalid(ctx, r); return err }}, nil
	case *weftv1.ReportChallengeRequest:
		return nodeMethod{"ReportChallenge", reportChallengePayload(r), func(a *weftv1.SignedRequest) { r.Auth = a },
			func(ctx context.Context, c weftv1.NodeClient) error { _, err := c.ReportChallenge(ctx, r); return err }}, nil
	}
	return nodeMethod{}, fmt.Errorf("control: %T is not a node request", req)
}

func reportChallengePayload(req *weftv1.ReportChallengeRequest) []byte {
	b := binary.BigEndian.AppendUint64(nil, req.Round)
	for _, v := range req.Verdicts {
		b = append(b, byte(len(v.Node)))
		b = append(b, v.Node...)
		if v.Passed {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(v.Reason)))
		b = append(b, v.Reason...)
	}
	return b
}

// Sign signs a node request in place (its Auth field): a crypto
// node-request message naming the method, the node and the digest of the
// payload, for epoch — the control plane's current epoch or the one before
// it — with a nonce above every earlier one of this node.
func Sign(req NodeRequest, sk *crypto.SecretKey, node shardmap.NodeID, epoch, nonce uint64) error {
	m, err := methodOf(req)
	if err != nil {
		return err
	}
	return m.sign(sk, node, epoch, nonce)
}

func (m nodeMethod) sign(sk *crypto.SecretKey, node shardmap.NodeID, epoch, nonce uint64) error {
	msg, err := crypto.EncodeMessage(epoch, crypto.NodeRequest{Nonce: nonce, Method: m.name, Node: string(node), Payload: sha256.Sum256(m.payload)})
	if err != nil {
		return err
	}
	m.setAuth(&weftv1.SignedRequest{Node: string(node), Message: msg, Signature: sk.Sign(msg).Bytes()})
	return nil
}

// Verify checks a signed node request against the signer's key: the
// signature covers this request's method and fields, the signed node ID
// is the one it is sent as, and the signed epoch lies in [lo, hi]. It
// returns the nonce. Errors carry gRPC codes: Unauthenticated for a
// missing or bad signature, PermissionDenied for a good signature over
// something else.
func Verify(req NodeRequest, key *crypto.PublicKey, lo, hi uint64) (uint64, error) {
	auth := req.GetAuth()
	if auth == nil || auth.Node == "" {
		return 0, status.Error(codes.Unauthenticated, "signed node request required")
	}
	method, payload, err := Describe(req)
	if err != nil {
		return 0, status.Error(codes.InvalidArgument, err.Error())
	}
	epoch, body, err := crypto.DecodeMessage(auth.Message)
	if err != nil {
		return 0, status.Errorf(codes.Unauthenticated, "node request: %v", err)
	}
	nr, ok := body.(crypto.NodeRequest)
	if !ok {
		return 0, status.Errorf(codes.Unauthenticated, "signed message is a %s, not a node request", body.MessageType())
	}
	if nr.Method != method || nr.Payload != crypto.Digest(sha256.Sum256(payload)) {
		return 0, status.Errorf(codes.PermissionDenied, "signature is for method %q or for other request fields", nr.Method)
	}
	if nr.Node != auth.Node {
		return 0, status.Errorf(codes.PermissionDenied, "node request signed for node %q, sent as %q", nr.Node, auth.Node)
	}
	if epoch < lo || epoch > hi {
		return 0, status.Errorf(codes.PermissionDenied, "node %s signed its %s request for epoch %d; this replica takes epochs %d to %d", auth.Node, method, epoch, lo, hi)
	}
	sig, err := crypto.SignatureFromBytes(auth.Signature)
	if err != nil {
		return 0, status.Errorf(codes.Unauthenticated, "node request signature: %v", err)
	}
	if err := key.Verify(auth.Message, sig); err != nil {
		return 0, status.Errorf(codes.Unauthenticated, "node request signature: %v", err)
	}
	return nr.Nonce, nil
}
