package control

import (
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// EventKind names what happened in one entry of the control plane's
// ordered event stream. The names are on the wire and on disk: never
// rename one.
type EventKind string

// The kinds of event.
const (
	EventNodeRegistered     EventKind = "node-registered"
	EventNodeRemoved        EventKind = "node-removed"
	EventNodeEvicted        EventKind = "node-evicted"
	EventStakeSet           EventKind = "stake-set"
	EventAddressUpdated     EventKind = "address-updated"
	EventEpochStarted       EventKind = "epoch-started" // Moves lists the handover
	EventShardSynced        EventKind = "shard-synced"  // Node synced Shard
	EventEpochStable        EventKind = "epoch-stable"
	EventBlobRegistered     EventKind = "blob-registered"
	EventBlobCertified      EventKind = "blob-certified"
	EventBlobInvalid        EventKind = "blob-invalid"
	EventBlobExtended       EventKind = "blob-extended" // Epoch is the new end epoch
	EventBlobExpired        EventKind = "blob-expired"
	EventRegistrationLapsed EventKind = "registration-lapsed" // registered, never certified in time
	EventBlobDeleted        EventKind = "blob-deleted"        // its last object was deleted in the epoch before: nodes drop it
	EventObjectCreated      EventKind = "object-created"      // Client registered Object of BlobID
	EventObjectExtended     EventKind = "object-extended"     // Client moved Object's end epoch
	EventObjectTransferred  EventKind = "object-transferred"  // Client gave Object to To
	EventObjectDeleted      EventKind = "object-deleted"      // Client deleted Object
	EventObjectExpired      EventKind = "object-expired"      // Object ended with its end epoch, or with its blob
	EventAttributesSet      EventKind = "attributes-set"      // Client changed Object's attributes
	EventClientAdded        EventKind = "client-added"
	EventQuotaSet           EventKind = "quota-set"
	EventChallengeStarted   EventKind = "challenge-started"
	EventChallengeClosed    EventKind = "challenge-closed"
	EventChallengePassed    EventKind = "challenge-passed" // Node passed the round
	EventChallengeFailed    EventKind = "challenge-failed" // Node failed the round
	EventChallengeMissed    EventKind = "challenge-missed" // Node's round closed with no verdict
)

// ChallengeOutcome is the event kind of a node's outcome in a challenge
// round ("passed", "failed", "missed").
func ChallengeOutcome(outcome string) EventKind { return EventKind("challenge-" + outcome) }

// Event is one entry of the ordered event stream; Index is the Raft index
// of the command that made it.
type Event struct {
	Index  uint64          `json:"index"`
	Kind   EventKind       `json:"kind"`
	Epoch  uint64          `json:"epoch,omitempty"`
	Node   shardmap.NodeID `json:"node,omitempty"`
	Shard  int             `json:"shard,omitempty"`
	BlobID crypto.BlobID   `json:"blob_id,omitzero"`
	Moves  []shardmap.Move `json:"moves,omitempty"`
	// Object, Client and To say who did what to which blob object (issue
	// #21's audit trail): the object, the client that acted, and for a
	// transfer the new owner.
	Object uint64 `json:"object,omitempty"`
	Client string `json:"client,omitempty"`
	To     string `json:"to,omitempty"`
}

// Proto is the event as the Events call sends it.
func (e Event) Proto() *weftv1.Event {
	pe := &weftv1.Event{Index: e.Index, Kind: string(e.Kind), Epoch: e.Epoch, Node: string(e.Node), Shard: uint32(e.Shard),
		Object: e.Object, Client: e.Client, To: e.To}
	if e.BlobID != (crypto.BlobID{}) {
		pe.BlobId = e.BlobID[:]
	}
	for _, m := range e.Moves {
		pe.Moves = append(pe.Moves, &weftv1.Move{Shard: uint32(m.Shard), From: string(m.From), To: string(m.To)})
	}
	return pe
}

// EventFromProto reads an event as the Events call sends it. A blob ID
// of the wrong length is dropped (the event then names no blob), and a
// kind this build does not know is kept: a newer control plane may send
// one, and callers ignore what they do not handle.
func EventFromProto(pe *weftv1.Event) Event {
	e := Event{Index: pe.Index, Kind: EventKind(pe.Kind), Epoch: pe.Epoch, Node: shardmap.NodeID(pe.Node), Shard: int(pe.Shard),
		Object: pe.Object, Client: pe.Client, To: pe.To}
	if len(pe.BlobId) == crypto.DigestSize {
		e.BlobID = crypto.BlobID(pe.BlobId)
	}
	for _, m := range pe.Moves {
		e.Moves = append(e.Moves, shardmap.Move{Shard: int(m.Shard), From: shardmap.NodeID(m.From), To: shardmap.NodeID(m.To)})
	}
	return e
}
