package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Signed messages (DESIGN §4). Every byte string weft signs starts with an
// intent — message type, version, application ID — and the epoch, then a
// body whose layout the type fixes:
//
//	u8 type ‖ u8 version ‖ u8 app ID ‖ u64 epoch ‖ body     (big-endian)
//
// so a signature is valid for one purpose and one epoch only.

// MessageType is the purpose of a signed message.
type MessageType uint8

const (
	// MsgBlobStored: a storage node holds verified slivers of a blob for
	// every shard it owns in the epoch. Aggregated into availability
	// certificates.
	MsgBlobStored MessageType = 1
	// MsgBlobInvalid: a node verified an inconsistency proof for a blob.
	// Aggregated into invalid-blob certificates.
	MsgBlobInvalid MessageType = 2
	// MsgShardSyncRequest: an incoming owner asks a shard's holder for a
	// page of slivers during a handover.
	MsgShardSyncRequest MessageType = 3
	// MsgShardSynced: a shard's owner holds every blob of the shard.
	MsgShardSynced MessageType = 4
	// MsgChallengeResponse: a node's answer to a storage challenge.
	MsgChallengeResponse MessageType = 5
	// MsgNodeRequest: a node's call to the control plane.
	MsgNodeRequest MessageType = 6
)

func (t MessageType) String() string {
	switch t {
	case MsgBlobStored:
		return "blob-stored"
	case MsgBlobInvalid:
		return "blob-invalid"
	case MsgShardSyncRequest:
		return "shard-sync-request"
	case MsgShardSynced:
		return "shard-synced"
	case MsgChallengeResponse:
		return "challenge-response"
	case MsgNodeRequest:
		return "node-request"
	}
	return fmt.Sprintf("message-type(%d)", uint8(t))
}

const (
	// IntentVersion is the version of the intent and body layouts.
	IntentVersion = 1
	// AppID marks a signature as weft's, so that the same key format used
	// by another protocol cannot have its signatures replayed here.
	AppID = 0x77
	// messageHeader is the intent plus the epoch.
	messageHeader = 3 + 8
	// maxMethodLength bounds a node request's method name.
	maxMethodLength = 255
	// MaxNodeIDLength bounds a node request's node ID (the control plane's
	// registry takes no longer ID either).
	MaxNodeIDLength = 64
)

// MessageBody is the typed content of a signed message.
type MessageBody interface {
	MessageType() MessageType
	appendBody(b []byte) []byte
}

// BlobStored is the body of MsgBlobStored.
type BlobStored struct{ BlobID BlobID }

// BlobInvalid is the body of MsgBlobInvalid.
type BlobInvalid struct{ BlobID BlobID }

// ShardSyncRequest is the body of MsgShardSyncRequest: a page of up to
// Limit blobs of Shard, starting after blob ID After; Nonce makes each
// request distinct.
type ShardSyncRequest struct {
	Shard uint32
	After BlobID
	Limit uint32
	Nonce uint64
}

// ShardSynced is the body of MsgShardSynced.
type ShardSynced struct{ Shard uint32 }

// ChallengeResponse is the body of MsgChallengeResponse: the challenge
// round and a digest of the response's content.
type ChallengeResponse struct {
	Round  uint64
	Digest Digest
}

// NodeRequest is the body of MsgNodeRequest: the RPC method, the node ID
// the request speaks for, a digest of its payload and a nonce that the
// control plane accepts once. The node ID is signed so that a request
// cannot be relabelled as another node's on its way.
type NodeRequest struct {
	Nonce   uint64
	Method  string
	Node    string
	Payload Digest
}

func (BlobStored) MessageType() MessageType        { return MsgBlobStored }
func (BlobInvalid) MessageType() MessageType       { return MsgBlobInvalid }
func (ShardSyncRequest) MessageType() MessageType  { return MsgShardSyncRequest }
func (ShardSynced) MessageType() MessageType       { return MsgShardSynced }
func (ChallengeResponse) MessageType() MessageType { return MsgChallengeResponse }
func (NodeRequest) MessageType() MessageType       { return MsgNodeRequest }

func (m BlobStored) appendBody(b []byte) []byte  { return append(b, m.BlobID[:]...) }
func (m BlobInvalid) appendBody(b []byte) []byte { return append(b, m.BlobID[:]...) }
func (m ShardSyncRequest) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.Shard)
	b = append(b, m.After[:]...)
	b = binary.BigEndian.AppendUint32(b, m.Limit)
	return binary.BigEndian.AppendUint64(b, m.Nonce)
}
func (m ShardSynced) appendBody(b []byte) []byte { return binary.BigEndian.AppendUint32(b, m.Shard) }
func (m ChallengeResponse) appendBody(b []byte) []byte {
	return append(binary.BigEndian.AppendUint64(b, m.Round), m.Digest[:]...)
}
func (m NodeRequest) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Nonce)
	b = append(b, byte(len(m.Method)))
	b = append(b, m.Method...)
	b = append(b, byte(len(m.Node)))
	b = append(b, m.Node...)
	return append(b, m.Payload[:]...)
}

// EncodeMessage returns the bytes that are signed for body in epoch.
func EncodeMessage(epoch uint64, body MessageBody) ([]byte, error) {
	if nr, ok := body.(NodeRequest); ok {
		if len(nr.Method) > maxMethodLength {
			return nil, fmt.Errorf("crypto: node request method of %d bytes, at most %d", len(nr.Method), maxMethodLength)
		}
		if len(nr.Node) > MaxNodeIDLength {
			return nil, fmt.Errorf("crypto: node request node ID of %d bytes, at most %d", len(nr.Node), MaxNodeIDLength)
		}
	}
	b := []byte{byte(body.MessageType()), IntentVersion, AppID}
	b = binary.BigEndian.AppendUint64(b, epoch)
	return body.appendBody(b), nil
}

// ErrMalformedMessage is wrapped by every DecodeMessage error.
var ErrMalformedMessage = errors.New("crypto: malformed signed message")

// DecodeMessage parses signed-message bytes: the intent must be weft's and
// known, and the body exactly the size its type fixes.
func DecodeMessage(b []byte) (epoch uint64, body MessageBody, err error) {
	if len(b) < messageHeader {
		return 0, nil, fmt.Errorf("%w: %d bytes, the intent and epoch take %d", ErrMalformedMessage, len(b), messageHeader)
	}
	if b[1] != IntentVersion || b[2] != AppID {
		return 0, nil, fmt.Errorf("%w: intent version %d app %#x, want %d and %#x", ErrMalformedMessage, b[1], b[2], IntentVersion, AppID)
	}
	epoch = binary.BigEndian.Uint64(b[3:11])
	rest := b[messageHeader:]
	fixed := func(n int) error {
		if len(rest) != n {
			return fmt.Errorf("%w: %s body of %d bytes, want %d", ErrMalformedMessage, MessageType(b[0]), len(rest), n)
		}
		return nil
	}
	switch MessageType(b[0]) {
	case MsgBlobStored, MsgBlobInvalid:
		if err := fixed(DigestSize); err != nil {
			return 0, nil, err
		}
		id := BlobID(rest)
		if MessageType(b[0]) == MsgBlobStored {
			return epoch, BlobStored{id}, nil
		}
		return epoch, BlobInvalid{id}, nil
	case MsgShardSyncRequest:
		if err := fixed(4 + DigestSize + 4 + 8); err != nil {
			return 0, nil, err
		}
		return epoch, ShardSyncRequest{
			Shard: binary.BigEndian.Uint32(rest[0:4]),
			After: BlobID(rest[4:36]),
			Limit: binary.BigEndian.Uint32(rest[36:40]),
			Nonce: binary.BigEndian.Uint64(rest[40:48]),
		}, nil
	case MsgShardSynced:
		if err := fixed(4); err != nil {
			return 0, nil, err
		}
		return epoch, ShardSynced{Shard: binary.BigEndian.Uint32(rest)}, nil
	case MsgChallengeResponse:
		if err := fixed(8 + DigestSize); err != nil {
			return 0, nil, err
		}
		return epoch, ChallengeResponse{Round: binary.BigEndian.Uint64(rest), Digest: Digest(rest[8:])}, nil
	case MsgNodeRequest:
		nr, err := decodeNodeRequest(rest)
		if err != nil {
			return 0, nil, err
		}
		return epoch, nr, nil
	}
	return 0, nil, fmt.Errorf("%w: unknown message type %d", ErrMalformedMessage, b[0])
}

// decodeNodeRequest parses u64 nonce ‖ u8 len ‖ method ‖ u8 len ‖ node ID
// ‖ payload digest, refusing a node ID longer than MaxNodeIDLength.
func decodeNodeRequest(rest []byte) (NodeRequest, error) {
	bad := func(why string) (NodeRequest, error) {
		return NodeRequest{}, fmt.Errorf("%w: node request body of %d bytes: %s", ErrMalformedMessage, len(rest), why)
	}
	if len(rest) < 9 {
		return bad("no method length")
	}
	m := int(rest[8])
	if len(rest) < 9+m+1 {
		return bad("no node ID length")
	}
	n := int(rest[9+m])
	if n > MaxNodeIDLength {
		return bad(fmt.Sprintf("node ID of %d bytes, at most %d", n, MaxNodeIDLength))
	}
	if len(rest) != 10+m+n+DigestSize {
		return bad(fmt.Sprintf("want %d", 10+m+n+DigestSize))
	}
	return NodeRequest{
		Nonce:   binary.BigEndian.Uint64(rest),
		Method:  string(rest[9 : 9+m]),
		Node:    string(rest[10+m : 10+m+n]),
		Payload: Digest(rest[10+m+n:]),
	}, nil
}

// SignMessage signs body for epoch.
func (sk *SecretKey) SignMessage(epoch uint64, body MessageBody) (*Signature, error) {
	msg, err := EncodeMessage(epoch, body)
	if err != nil {
		return nil, err
	}
	return sk.Sign(msg), nil
}

// VerifyMessage checks a signature of body for epoch; it fails for any
// other type, epoch or body.
func (pk *PublicKey) VerifyMessage(epoch uint64, body MessageBody, sig *Signature) error {
	msg, err := EncodeMessage(epoch, body)
	if err != nil {
		return err
	}
	return pk.Verify(msg, sig)
}
