// Package committee is weft's replicated control plane (DESIGN §6): the
// storage-node registry, every epoch's committee and shard map, the epoch
// state machine and the blob registry, kept in bbolt by a Raft FSM.
//
// Commands are validated and their signatures checked before they are
// proposed; Apply only re-checks what depends on the state at apply time
// (the current epoch, a blob's end epoch, …), deterministically, and stores
// every effect together with the Raft index and the command's result in
// one bbolt transaction. A command carries an ID: proposing it again (after
// a lost leadership left its outcome unknown) returns the first outcome.
package committee

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Kind names a command.
type Kind string

const (
	KindRegisterNode  Kind = "register-node"
	KindUpdateAddress Kind = "update-address"
	KindSetStake      Kind = "set-stake"
	KindRemoveNode    Kind = "remove-node"
	KindAdvanceEpoch  Kind = "advance-epoch"
	KindShardSynced   Kind = "shard-synced"
	KindRegisterBlob  Kind = "register-blob"
	KindCertifyBlob   Kind = "certify-blob"
	KindMarkInvalid   Kind = "mark-blob-invalid"
	KindExtendBlob    Kind = "extend-blob"
	KindAddClient     Kind = "add-client"
	KindSetQuota      Kind = "set-quota"
	KindSetPeer       Kind = "set-peer"

	KindDeleteObject   Kind = "delete-object"
	KindTransferObject Kind = "transfer-object"
	KindSetAttributes  Kind = "set-attributes"
)

// Command is what goes through the Raft log.
type Command struct {
	ID   string          `json:"id"`
	Kind Kind            `json:"kind"`
	Body json.RawMessage `json:"body"`
	// Node and Nonce are set for requests a storage node signed (their
	// signature was checked before proposing). The FSM takes each node's
	// nonces only in increasing order, so a replayed request is refused
	// on every replica alike.
	Node  shardmap.NodeID `json:"node,omitempty"`
	Nonce uint64          `json:"nonce,omitempty"`

	// decoded is the body as the FSM's decodeFastCommand read it, if it
	// did (never in the log).
	decoded any
}

// NewCommand wraps a body.
func NewCommand(id string, kind Kind, body any) (Command, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return Command{}, err
	}
	return Command{ID: id, Kind: kind, Body: raw}, nil
}

// RegisterNode adds a storage node. Its proof of possession was verified
// before proposing; the key is stored compressed.
type RegisterNode struct {
	Node      shardmap.NodeID `json:"node"`
	PublicKey []byte          `json:"public_key"`
	Address   string          `json:"address"`
}

// UpdateAddress changes where a node is reached.
type UpdateAddress struct {
	Node    shardmap.NodeID `json:"node"`
	Address string          `json:"address"`
}

// SetStake sets a node's stake (operator); it takes effect at the next
// epoch change.
type SetStake struct {
	Node  shardmap.NodeID `json:"node"`
	Stake uint64          `json:"stake"`
	// KeyFingerprint, when set, is the fingerprint of the key the operator
	// means to stake (crypto.KeyFingerprint); the stake applies only while
	// the ID is registered to that key. Omitted when empty, so entries
	// written before it decode alike.
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
}

// RemoveNode removes a node from the registry; it must not be in the
// current committee or hold a shard (set its stake to zero and advance).
type RemoveNode struct {
	Node shardmap.NodeID `json:"node"`
}

// AdvanceEpoch starts the next epoch with the committee and shard map the
// leader computed from the registry. The FSM validates them instead of
// recomputing them.
type AdvanceEpoch struct {
	Force  bool              `json:"force"`
	Owners []shardmap.NodeID `json:"owners"`
	// Evict lists nodes whose stake drops to 0 with this change because
	// they failed or missed their last EvictAfter challenge rounds (the
	// leader's --auto-evict); the FSM re-checks each.
	Evict      []shardmap.NodeID `json:"evict,omitempty"`
	EvictAfter int               `json:"evict_after,omitempty"`
}

// ShardSynced is an owner's signed report that it holds a shard.
type ShardSynced struct {
	Epoch uint64          `json:"epoch"`
	Shard int             `json:"shard"`
	Node  shardmap.NodeID `json:"node"`
}

// RegisterBlob registers a blob's encoding; the FSM derives its ID and
// charges the client's quota its encoded size × the epochs it is paid for.
type RegisterBlob struct {
	Client   string        `json:"client"`
	Encoding uint8         `json:"encoding"`
	Shards   uint32        `json:"shards"`
	Length   uint64        `json:"length"`
	Root     crypto.Digest `json:"root"`
	EndEpoch uint64        `json:"end_epoch"`
	// The object the registration creates: deletable by its owner before
	// its end epoch or not, and its attributes (control.ValidateAttributes).
	Deletable  bool              `json:"deletable,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// CertifyBlob records an availability certificate whose signatures were
// verified against the current committee before proposing.
type CertifyBlob struct {
	BlobID      crypto.BlobID `json:"blob_id"`
	Certificate []byte        `json:"certificate"`
}

// MarkBlobInvalid records an invalid-blob certificate (signers' weight
// ≥ f+1, verified before proposing).
type MarkBlobInvalid struct {
	BlobID      crypto.BlobID `json:"blob_id"`
	Certificate []byte        `json:"certificate"`
}

// ExtendBlob moves the end epoch of one of the client's objects of a blob
// later, charged to the client: Object, or with none its object of the
// blob that ends last.
type ExtendBlob struct {
	Client   string        `json:"client"`
	BlobID   crypto.BlobID `json:"blob_id"`
	EndEpoch uint64        `json:"end_epoch"`
	Object   uint64        `json:"object,omitempty"`
}

// DeleteObject deletes one of the client's deletable objects; its unused
// epochs go back to the client's quota.
type DeleteObject struct {
	Client string `json:"client"`
	Object uint64 `json:"object"`
}

// TransferObject gives one of the client's objects to another client.
type TransferObject struct {
	Client string `json:"client"`
	Object uint64 `json:"object"`
	To     string `json:"to"`
}

// SetAttributes changes one of the client's objects' attributes: Set
// adds or replaces, Remove deletes.
type SetAttributes struct {
	Client string            `json:"client"`
	Object uint64            `json:"object"`
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// AddClient creates a client credential: the SHA-256 of its bearer token
// (the token itself is never stored) and its quota in bytes × epochs.
type AddClient struct {
	Client    string        `json:"client"`
	TokenHash crypto.Digest `json:"token_hash"`
	Quota     uint64        `json:"quota"`
}

// SetQuota changes a client's quota.
type SetQuota struct {
	Client string `json:"client"`
	Quota  uint64 `json:"quota"`
}

// SetPeer records where a control-plane voter serves gRPC, so that
// followers can forward writes to whichever voter leads. A new leader
// proposes its own.
type SetPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// Result is what applying a command returned.
type Result struct {
	Index  uint64        `json:"index"` // the Raft index that applied the command first
	Error  *CommandError `json:"error,omitempty"`
	BlobID crypto.BlobID `json:"blob_id,omitzero"`
	Epoch  uint64        `json:"epoch,omitempty"`
	Object uint64        `json:"object,omitempty"` // the blob object a registration created or a command acted on
	Refund uint64        `json:"refund,omitempty"` // bytes × epochs a deletion gave back
}

// Err returns the command's error, if it was rejected.
func (r *Result) Err() error {
	if r.Error == nil {
		return nil
	}
	return r.Error
}

// Code classifies a rejected command, for mapping to gRPC status codes.
type Code string

const (
	CodeInvalidArgument    Code = "invalid-argument"
	CodeNotFound           Code = "not-found"
	CodeAlreadyExists      Code = "already-exists"
	CodeFailedPrecondition Code = "failed-precondition"
	CodePermissionDenied   Code = "permission-denied"
	CodeResourceExhausted  Code = "resource-exhausted"
)

// CommandError is a rejection decided by the FSM: every replica reaches
// the same one, and the state is unchanged.
type CommandError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *CommandError) Error() string { return fmt.Sprintf("committee: %s: %s", e.Code, e.Message) }

// Is lets errors.Is match a code: errors.Is(err, &CommandError{Code: CodeNotFound}).
func (e *CommandError) Is(target error) bool {
	var t *CommandError
	return errors.As(target, &t) && t.Message == "" && t.Code == e.Code
}

func reject(code Code, format string, args ...any) *CommandError {
	return &CommandError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// maxCommandIDLength bounds a command ID: its principal ("node/" and a
// node ID, "client/" and a client ID, or "operator"), a slash and a
// request ID. The FSM records a command under its ID, a bbolt key.
const maxCommandIDLength = 16 + maxNodeIDLength + MaxRequestIDLength

// validRequestID checks a caller's request ID: 1–MaxRequestIDLength
// characters of [A-Za-z0-9._:-].
func validRequestID(id string) error {
	if id == "" || len(id) > MaxRequestIDLength {
		return fmt.Errorf("request ID of %d bytes (1–%d)", len(id), MaxRequestIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isIDChar(c) {
			return fmt.Errorf("request ID has %q at byte %d (allowed: letters, digits, '.', '_', ':', '-')", c, i)
		}
	}
	return nil
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

// validCommandID checks what the FSM keys a command's record by.
func validCommandID(id string) error {
	if id == "" || len(id) > maxCommandIDLength {
		return fmt.Errorf("command ID of %d bytes (1–%d)", len(id), maxCommandIDLength)
	}
	return nil
}
