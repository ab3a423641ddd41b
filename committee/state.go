package committee

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/epoch"
	"github.com/weftstore/weft/shardmap"
)

// The FSM's bbolt schema. Values are JSON — the records are small and the
// file stays readable with standard tools — except those written for every
// command or registration: results and events (records.go), and blob and
// object records (recordcodec.go, since #24; JSON ones still read), which
// have a compact binary form.
var (
	bucketMeta         = []byte("meta")          // config, epoch state, applied index
	bucketNodes        = []byte("nodes")         // node ID → NodeRecord
	bucketKeys         = []byte("keys")          // compressed public key → node ID
	bucketCommittees   = []byte("committees")    // u64 epoch → CommitteeRecord
	bucketBlobs        = []byte("blobs")         // blob ID → BlobRecord
	bucketCommands     = []byte("commands")      // command ID → Result (records.go)
	bucketCommandIndex = []byte("command-index") // u64 index ‖ command ID → nothing: the records by age
	bucketEvents       = []byte("events")        // u64 index ‖ u32 seq (u16 before blob objects) → Event (records.go)
	bucketClients      = []byte("clients")       // client ID → ClientRecord
	bucketTokens       = []byte("tokens")        // token hash → client ID
	bucketExpiry       = []byte("expiry")        // u64 end epoch ‖ u64 index → blob ID, for live blobs
	bucketPending      = []byte("pending")       // u64 registered epoch ‖ u64 index → blob ID, uncertified blobs
	bucketPeers        = []byte("peers")         // Raft server ID → gRPC address

	keyConfig  = []byte("config")
	keyEpoch   = []byte("epoch")
	keyApplied = []byte("applied")

	allBuckets = [][]byte{bucketMeta, bucketNodes, bucketKeys, bucketCommittees, bucketBlobs, bucketCommands, bucketCommandIndex, bucketEvents,
		bucketClients, bucketTokens, bucketExpiry, bucketPending, bucketPeers, bucketCertified, bucketChallenges}
)

// Config is fixed when the control plane is first created.
type Config struct {
	Shards     int `json:"shards"`
	PerNodeCap int `json:"per_node_cap"`
	// LapseEpochs: a registration not certified within this many epochs
	// lapses (0 means DefaultLapseEpochs).
	LapseEpochs uint64 `json:"lapse_epochs"`
	// RetainEpochs: events and the records of ended blobs are kept this
	// many epochs (0 means DefaultRetainEpochs; at least MinRetainEpochs).
	// Absent from state files written before compaction: they take the
	// default.
	RetainEpochs uint64 `json:"retain_epochs,omitempty"`
}

// DefaultLapseEpochs is how long an uncertified registration lives.
const DefaultLapseEpochs = 2

func (c Config) withDefaults() Config {
	if c.LapseEpochs == 0 {
		c.LapseEpochs = DefaultLapseEpochs
	}
	if c.RetainEpochs == 0 {
		c.RetainEpochs = DefaultRetainEpochs
	}
	return c
}

func (c Config) epochConfig() epoch.Config {
	return epoch.Config{Shards: c.Shards, PerNodeCap: c.PerNodeCap}
}

// NodeRecord is a registered storage node.
type NodeRecord struct {
	ID         shardmap.NodeID `json:"id"`
	PublicKey  []byte          `json:"public_key"`
	Address    string          `json:"address"`
	Stake      uint64          `json:"stake"`
	Registered uint64          `json:"registered_index"`
	LastNonce  uint64          `json:"last_nonce"`
}

// ClientRecord is a client credential and its quota in bytes × epochs.
type ClientRecord struct {
	ID        string        `json:"id"`
	TokenHash crypto.Digest `json:"token_hash"`
	Quota     uint64        `json:"quota"`
	Used      uint64        `json:"used"`
}

// Member is one node of an epoch's committee, in committee order.
type Member struct {
	Node      shardmap.NodeID `json:"node"`
	PublicKey []byte          `json:"public_key"`
	Weight    uint32          `json:"weight"`
}

// CommitteeRecord is an epoch's committee; every epoch's is kept, so that
// certificates of old epochs stay verifiable.
type CommitteeRecord struct {
	Epoch   uint64   `json:"epoch"`
	Members []Member `json:"members"`
}

// View returns the committee as crypto needs it to verify certificates.
func (c CommitteeRecord) View() (*crypto.CommitteeView, error) {
	members := make([]control.Member, len(c.Members))
	for i, m := range c.Members {
		var err error
		if members[i], err = control.MemberFromKey(m.Node, "", m.PublicKey, m.Weight); err != nil {
			return nil, fmt.Errorf("committee: epoch %d: %w", c.Epoch, err)
		}
	}
	com, err := control.NewCommittee(c.Epoch, members, nil)
	if err != nil {
		return nil, err
	}
	return com.View(), nil
}

// BlobRecord is a registered blob.
type BlobRecord struct {
	ID              crypto.BlobID `json:"id"`
	Encoding        uint8         `json:"encoding"`
	Shards          uint32        `json:"shards"`
	Length          uint64        `json:"length"`
	Root            crypto.Digest `json:"root"`
	EndEpoch        uint64        `json:"end_epoch"`
	RegisteredEpoch uint64        `json:"registered_epoch"`
	CertifiedEpoch  uint64        `json:"certified_epoch,omitempty"` // 0: not certified
	Certificate     []byte        `json:"certificate,omitempty"`
	Client          string        `json:"client"`
	Invalid         bool          `json:"invalid,omitempty"`
	InvalidProof    []byte        `json:"invalid_certificate,omitempty"`
	Expired         bool          `json:"expired,omitempty"`     // past its end epoch, or lapsed uncertified
	RegisteredIndex uint64        `json:"registered_index"`      // keys the pending index
	ExpiryIndex     uint64        `json:"expiry_index"`          // keys the expiry index
	CertSeq         uint64        `json:"cert_seq,omitempty"`    // 1 + its place in the challenge sampling sequence; 0 before certification
	EndedIndex      uint64        `json:"ended_index,omitempty"` // the index that expired it: keys the ended-blobs index
	// Objects counts the live blob objects that reference the blob
	// (objects.go); EndEpoch is the latest of their end epochs and
	// PermanentEndEpoch. A blob registered before objects existed has
	// none and ends at its EndEpoch.
	Objects int `json:"objects,omitempty"`
	// PermanentEndEpoch is the latest end epoch any permanent object of
	// the blob has had: the certificate promises availability until then.
	PermanentEndEpoch uint64 `json:"permanent_end_epoch,omitempty"`
	// Deleted: no object references the blob any more (the last one was
	// deleted); it ends at EndEpoch, the epoch after that deletion, with
	// an EventBlobDeleted instead of EventBlobExpired.
	Deleted bool `json:"deleted,omitempty"`
}

// ObjectRecord is a blob object (issue #21): one client's claim on a
// blob's bytes, made by a registration. The blob's bytes are kept while
// any live object references them.
type ObjectRecord struct {
	ID           uint64            `json:"id"` // the Raft index of the registration that created it
	Owner        string            `json:"owner"`
	BlobID       crypto.BlobID     `json:"blob_id"`
	EndEpoch     uint64            `json:"end_epoch"`
	Deletable    bool              `json:"deletable,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	CreatedEpoch uint64            `json:"created_epoch"`
	Stored       uint64            `json:"stored"` // the blob's encoded bytes over all shards: one epoch of it costs this
}

// Live reports whether the blob's data must be kept: registered or
// certified, neither invalid nor expired.
func (b BlobRecord) Live() bool { return !b.Invalid && !b.Expired }

// Event is one entry of the ordered event stream (the contract's type).
type Event = control.Event

// epochRecord is how the epoch state machine's state is stored.
type epochRecord struct {
	Epoch   uint64            `json:"epoch"`
	Owners  []shardmap.NodeID `json:"owners,omitempty"`
	Holders []shardmap.NodeID `json:"holders,omitempty"`
}

func u64Key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func readEpoch(tx *bolt.Tx) (epoch.State, error) {
	var rec epochRecord
	if _, err := getJSON(tx.Bucket(bucketMeta), keyEpoch, &rec); err != nil {
		return epoch.State{}, err
	}
	return epoch.FromParts(rec.Epoch, rec.Owners, rec.Holders)
}

func writeEpoch(tx *bolt.Tx, s epoch.State) error {
	return putJSON(tx.Bucket(bucketMeta), keyEpoch, epochRecord{Epoch: s.Epoch(), Owners: s.Owners(), Holders: s.Holders()})
}

// readU64 reads a big-endian counter (0 when absent).
func readU64(b *bolt.Bucket, key []byte) uint64 {
	if raw := b.Get(key); len(raw) == 8 {
		return binary.BigEndian.Uint64(raw)
	}
	return 0
}

func readApplied(tx *bolt.Tx) uint64 { return readU64(tx.Bucket(bucketMeta), keyApplied) }
