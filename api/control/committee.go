package control

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Member is one storage node of an epoch's committee.
type Member struct {
	Node      shardmap.NodeID
	Address   string // where its storage service listens (as registered)
	PublicKey *crypto.PublicKey
	Weight    uint32 // the shards it owns in the epoch
}

// Committee is an epoch's committee as the control plane records it:
// members in committee order (the order of certificate signer bitmaps) and,
// for the current epoch, every shard's owner. It is checked when built:
// keys are valid, every member has weight, and a shard map's per-node
// counts are the members' weights.
type Committee struct {
	Epoch   uint64
	Members []Member
	// Owners names a node per shard; it comes with the current epoch's
	// committee and is nil for a past epoch. Holders (set by whoever knows
	// them: a read's layout, a node's assignment) differ from the owners
	// during a handover (DESIGN §5).
	Owners  []shardmap.NodeID
	Holders []shardmap.NodeID

	view   *crypto.CommitteeView
	byNode map[shardmap.NodeID]int
}

// View is what certificate verification needs: keys and weights in order.
func (c *Committee) View() *crypto.CommitteeView { return c.view }

// Member returns a member by node ID.
func (c *Committee) Member(node shardmap.NodeID) (Member, bool) {
	i, ok := c.byNode[node]
	if !ok {
		return Member{}, false
	}
	return c.Members[i], true
}

// Index returns a member's position in committee order.
func (c *Committee) Index(node shardmap.NodeID) (int, bool) {
	i, ok := c.byNode[node]
	return i, ok
}

// OwnedBy lists the shards a node owns, ascending.
func (c *Committee) OwnedBy(node shardmap.NodeID) []uint32 { return shardmap.OwnedBy(c.Owners, node) }

// NewCommittee checks a committee's shape and builds its view: keys
// are valid, every member has weight, and when the shard map is given its
// per-node counts are the members' weights (a certificate's weight is
// counted from weights, the pairs sent from owners: the two must agree or
// a quorum of signatures would not mean a quorum of shards).
func NewCommittee(epoch uint64, members []Member, owners []shardmap.NodeID) (*Committee, error) {
	keys := make([]*crypto.PublicKey, len(members))
	weights := make([]uint32, len(members))
	byNode := make(map[shardmap.NodeID]int, len(members))
	for i, m := range members {
		if _, dup := byNode[m.Node]; dup {
			return nil, fmt.Errorf("control: committee of epoch %d lists node %q twice", epoch, m.Node)
		}
		byNode[m.Node] = i
		keys[i], weights[i] = m.PublicKey, m.Weight
	}
	view, err := crypto.NewCommitteeView(epoch, keys, weights)
	if err != nil {
		return nil, fmt.Errorf("control: committee of epoch %d: %w", epoch, err)
	}
	if owners != nil {
		if err := checkOwners(epoch, members, byNode, owners); err != nil {
			return nil, err
		}
	}
	return &Committee{Epoch: epoch, Members: members, Owners: owners, view: view, byNode: byNode}, nil
}

func checkOwners(epoch uint64, members []Member, byNode map[shardmap.NodeID]int, owners []shardmap.NodeID) error {
	counts := make(map[shardmap.NodeID]uint32, len(members))
	for shard, o := range owners {
		if _, ok := byNode[o]; !ok {
			return fmt.Errorf("control: shard %d of epoch %d is owned by %q, not a committee member", shard, epoch, o)
		}
		counts[o]++
	}
	for _, m := range members {
		if counts[m.Node] != m.Weight {
			return fmt.Errorf("control: node %s has weight %d in epoch %d but owns %d shards", m.Node, m.Weight, epoch, counts[m.Node])
		}
	}
	return nil
}

// MemberFromKey is a member whose key is in its wire form.
func MemberFromKey(node shardmap.NodeID, address string, key []byte, weight uint32) (Member, error) {
	pk, err := crypto.PublicKeyFromBytes(key)
	if err != nil {
		return Member{}, fmt.Errorf("control: key of member %s: %w", node, err)
	}
	return Member{Node: node, Address: address, PublicKey: pk, Weight: weight}, nil
}

// CommitteeFromProto reads and checks a committee as GetCommittee sends it.
func CommitteeFromProto(resp *weftv1.GetCommitteeResponse) (*Committee, error) {
	members := make([]Member, len(resp.Members))
	for i, m := range resp.Members {
		var err error
		if members[i], err = MemberFromKey(shardmap.NodeID(m.Node), m.Address, m.PublicKey, m.Weight); err != nil {
			return nil, fmt.Errorf("%w (epoch %d)", err, resp.Epoch)
		}
	}
	var owners []shardmap.NodeID
	if len(resp.Owners) > 0 {
		owners = NodeIDs(resp.Owners)
	}
	return NewCommittee(resp.Epoch, members, owners)
}

// NodeIDs converts node IDs as the wire carries them.
func NodeIDs(ids []string) []shardmap.NodeID {
	out := make([]shardmap.NodeID, len(ids))
	for i, id := range ids {
		out[i] = shardmap.NodeID(id)
	}
	return out
}

// committeeJSON is the file format of a committee (`weft committee -o
// json`, `weft verify --committee`): keys in hex.
type committeeJSON struct {
	Epoch   uint64            `json:"epoch"`
	Members []memberJSON      `json:"members"`
	Owners  []shardmap.NodeID `json:"owners,omitempty"`
}

type memberJSON struct {
	Node      shardmap.NodeID `json:"node"`
	Address   string          `json:"address,omitempty"`
	PublicKey string          `json:"public_key"`
	Weight    uint32          `json:"weight"`
}

// MarshalJSON writes the committee in its file format.
func (c *Committee) MarshalJSON() ([]byte, error) {
	out := committeeJSON{Epoch: c.Epoch, Owners: c.Owners, Members: make([]memberJSON, len(c.Members))}
	for i, m := range c.Members {
		out.Members[i] = memberJSON{Node: m.Node, Address: m.Address, PublicKey: hex.EncodeToString(m.PublicKey.Bytes()), Weight: m.Weight}
	}
	return json.Marshal(out)
}

// ParseCommittee reads a committee file (as MarshalJSON writes it) and
// checks it as one from the control plane is checked.
func ParseCommittee(data []byte) (*Committee, error) {
	var in committeeJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("control: committee file: %w", err)
	}
	if len(in.Members) == 0 {
		return nil, errors.New("control: committee file lists no members")
	}
	members := make([]Member, len(in.Members))
	for i, m := range in.Members {
		raw, err := hex.DecodeString(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("control: committee file: key of member %q: %w", m.Node, err)
		}
		if members[i], err = MemberFromKey(m.Node, m.Address, raw, m.Weight); err != nil {
			return nil, fmt.Errorf("control: committee file: %w", err)
		}
	}
	return NewCommittee(in.Epoch, members, in.Owners)
}
