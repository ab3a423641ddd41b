package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// Member is one storage node of an epoch's committee.
type Member struct {
	Node      string
	Address   string // where its storage service listens (as registered)
	PublicKey *crypto.PublicKey
	Weight    uint32 // the shards it owns in the epoch
}

// Committee is an epoch's committee as the control plane records it:
// members in committee order (the order of certificate signer bitmaps) and,
// for the current epoch, every shard's owner and holder.
type Committee struct {
	Epoch   uint64
	Members []Member
	// Owners and Holders name a node per shard. Owners come with the
	// current epoch's committee; Holders only with a read's layout (they
	// differ from owners during a handover, DESIGN §5). Both are nil for
	// a past epoch.
	Owners  []string
	Holders []string

	view   *crypto.CommitteeView
	byNode map[string]int
}

// View is what certificate verification needs: keys and weights in order.
func (c *Committee) View() *crypto.CommitteeView { return c.view }

// Member returns a member by node ID.
func (c *Committee) Member(node string) (Member, bool) {
	i, ok := c.byNode[node]
	if !ok {
		return Member{}, false
	}
	return c.Members[i], true
}

// Index returns a member's position in committee order.
func (c *Committee) Index(node string) (int, bool) {
	i, ok := c.byNode[node]
	return i, ok
}

// OwnedBy lists the shards a node owns, ascending.
func (c *Committee) OwnedBy(node string) []uint32 {
	var out []uint32
	for shard, o := range c.Owners {
		if o == node {
			out = append(out, uint32(shard))
		}
	}
	return out
}

// newCommittee checks a committee's shape and builds its view: keys
// decode and are valid, every member has weight, and when the shard map is
// given its per-node counts are the members' weights (a certificate's
// weight is counted from weights, the pairs sent from owners: the two must
// agree or a quorum of signatures would not mean a quorum of shards).
func newCommittee(epoch uint64, members []Member, owners []string) (*Committee, error) {
	keys := make([]*crypto.PublicKey, len(members))
	weights := make([]uint32, len(members))
	byNode := make(map[string]int, len(members))
	for i, m := range members {
		if _, dup := byNode[m.Node]; dup {
			return nil, fmt.Errorf("client: committee of epoch %d lists node %q twice", epoch, m.Node)
		}
		byNode[m.Node] = i
		keys[i], weights[i] = m.PublicKey, m.Weight
	}
	view, err := crypto.NewCommitteeView(epoch, keys, weights)
	if err != nil {
		return nil, fmt.Errorf("client: committee of epoch %d: %w", epoch, err)
	}
	if owners != nil {
		counts := make(map[string]uint32, len(members))
		for shard, o := range owners {
			if _, ok := byNode[o]; !ok {
				return nil, fmt.Errorf("client: shard %d of epoch %d is owned by %q, not a committee member", shard, epoch, o)
			}
			counts[o]++
		}
		for _, m := range members {
			if counts[m.Node] != m.Weight {
				return nil, fmt.Errorf("client: node %s has weight %d in epoch %d but owns %d shards", m.Node, m.Weight, epoch, counts[m.Node])
			}
		}
	}
	return &Committee{Epoch: epoch, Members: members, Owners: owners, view: view, byNode: byNode}, nil
}

func committeeFromProto(resp *weftv1.GetCommitteeResponse) (*Committee, error) {
	members := make([]Member, len(resp.Members))
	for i, m := range resp.Members {
		pk, err := crypto.PublicKeyFromBytes(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("client: key of member %s in epoch %d: %w", m.Node, resp.Epoch, err)
		}
		members[i] = Member{Node: m.Node, Address: m.Address, PublicKey: pk, Weight: m.Weight}
	}
	var owners []string
	if len(resp.Owners) > 0 {
		owners = resp.Owners
	}
	return newCommittee(resp.Epoch, members, owners)
}

// ErrNoCommittee is wrapped when the control plane has no committee for
// the epoch asked (before the first epoch, or one that has not happened).
var ErrNoCommittee = errors.New("client: no committee for that epoch")

// CommitteeInfo returns an epoch's committee with the members' addresses
// (epoch 0: the current one, with its shard map).
func (c *Client) CommitteeInfo(ctx context.Context, epoch uint64) (*Committee, error) {
	return c.committeeInfo(ctx, epoch, false)
}

// committeeInfo is CommitteeInfo; fresh first waits until the voter asked
// has applied everything committed, so that epoch 0 is the current epoch
// as the leader knows it.
func (c *Client) committeeInfo(ctx context.Context, epoch uint64, fresh bool) (*Committee, error) {
	var resp *weftv1.GetCommitteeResponse
	err := c.controlCall(ctx, "GetCommittee", func(ctx context.Context, conn *grpc.ClientConn) error {
		if fresh {
			if err := catchUpCommitted(ctx, conn); err != nil {
				return err
			}
		}
		var err error
		resp, err = weftv1.NewClientClient(conn).GetCommittee(ctx, &weftv1.GetCommitteeRequest{Epoch: epoch})
		return err
	})
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%w %d: %w", ErrNoCommittee, epoch, err)
	}
	if err != nil {
		return nil, err
	}
	if epoch != 0 && resp.Epoch != epoch {
		return nil, fmt.Errorf("client: asked for the committee of epoch %d, got epoch %d", epoch, resp.Epoch)
	}
	com, err := committeeFromProto(resp)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.views[com.Epoch] = com.view
	c.mu.Unlock()
	return com, nil
}

// Committee returns an epoch's committee view (epoch 0: the current one),
// for verifying certificates. Past committees never change, so views are
// cached.
func (c *Client) Committee(ctx context.Context, epoch uint64) (*crypto.CommitteeView, error) {
	if epoch != 0 {
		c.mu.Lock()
		v, ok := c.views[epoch]
		c.mu.Unlock()
		if ok {
			return v, nil
		}
	}
	com, err := c.CommitteeInfo(ctx, epoch)
	if err != nil {
		return nil, err
	}
	return com.view, nil
}

// currentCommittee returns the current epoch's committee with its shard
// map, which a write needs. fresh asks a voter that has applied everything
// committed: a follower learns of a commit a heartbeat after the leader,
// so right after the leader refused a write for its epoch, a plain read
// could still show the old epoch.
func (c *Client) currentCommittee(ctx context.Context, fresh bool) (*Committee, error) {
	com, err := c.committeeInfo(ctx, 0, fresh)
	if err != nil {
		return nil, err
	}
	if len(com.Owners) == 0 {
		// The epoch moved between reading the state and the committee:
		// the control plane only sends the map for the current epoch.
		return nil, fmt.Errorf("client: the control plane sent no shard map with the committee of epoch %d", com.Epoch)
	}
	return com, nil
}

// committeeJSON is the file format of a committee (`weft committee -o
// json`, `weft verify --committee`): keys in hex.
type committeeJSON struct {
	Epoch   uint64       `json:"epoch"`
	Members []memberJSON `json:"members"`
	Owners  []string     `json:"owners,omitempty"`
}

type memberJSON struct {
	Node      string `json:"node"`
	Address   string `json:"address,omitempty"`
	PublicKey string `json:"public_key"`
	Weight    uint32 `json:"weight"`
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
		return nil, fmt.Errorf("client: committee file: %w", err)
	}
	if len(in.Members) == 0 {
		return nil, errors.New("client: committee file lists no members")
	}
	members := make([]Member, len(in.Members))
	for i, m := range in.Members {
		raw, err := hex.DecodeString(m.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("client: committee file: key of member %q: %w", m.Node, err)
		}
		pk, err := crypto.PublicKeyFromBytes(raw)
		if err != nil {
			return nil, fmt.Errorf("client: committee file: key of member %q: %w", m.Node, err)
		}
		members[i] = Member{Node: m.Node, Address: m.Address, PublicKey: pk, Weight: m.Weight}
	}
	return newCommittee(in.Epoch, members, in.Owners)
}
