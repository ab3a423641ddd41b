package control

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// State is the control plane's epoch state as a storage node follows it:
// an owner and a holder per shard (they differ during a handover).
type State struct {
	Index   uint64 // the control plane's state index
	Epoch   uint64
	Owners  []shardmap.NodeID
	Holders []shardmap.NodeID
}

// Owned lists the shards node owns, ascending.
func (s State) Owned(node shardmap.NodeID) []uint32 { return shardmap.OwnedBy(s.Owners, node) }

// Plane is what a storage node asks of the control plane. Errors are the
// control plane's, with their gRPC codes.
type Plane interface {
	// Watch returns the state once its index passes after, or the
	// current state at the timeout (0: at once).
	Watch(ctx context.Context, after uint64, timeout time.Duration) (State, error)
	// Events returns up to limit events after an index, waiting up to
	// the timeout for the first.
	Events(ctx context.Context, after uint64, limit int, timeout time.Duration) ([]Event, error)
	// Committee returns an epoch's committee (0: the current one, with
	// its owners), checked.
	Committee(ctx context.Context, epoch uint64) (*Committee, error)
	BlobStatus(ctx context.Context, id crypto.BlobID) (*weftv1.BlobStatusResponse, error)
	// ListCertified pages through the blobs certified before an epoch,
	// in blob ID order after the given one (zero: from the start).
	ListCertified(ctx context.Context, beforeEpoch uint64, after crypto.BlobID, limit int) (ids []crypto.BlobID, more bool, err error)
	// ListCertifiedBlobs pages the same blobs in certification order
	// (after: the last blob of the previous page), with each blob's
	// certification epoch: a storage node bootstrapping from state puts
	// them on its recovery list with it, and a page costs the control
	// plane the page, not the registry.
	ListCertifiedBlobs(ctx context.Context, beforeEpoch uint64, after crypto.BlobID, limit int) (blobs []CertifiedBlob, more bool, err error)
	// Challenge returns a challenge round (0: the latest).
	Challenge(ctx context.Context, round uint64) (*weftv1.GetChallengeResponse, error)
	// Report signs a node request for epoch and sends it.
	Report(ctx context.Context, epoch uint64, req NodeRequest) error
}

// MaxEventsPage bounds an Events answer a node takes. A page keeps each
// index's events whole (readers resume after an index), so one epoch
// change that ends many blobs and objects is one page whatever the limit:
// 64 MiB is about 600,000 events. Beyond it a node cannot follow until
// pages can resume inside an index.
const MaxEventsPage = 64 << 20

// Client is Plane over gRPC, signing as one storage node.
type Client struct {
	conn   *grpc.ClientConn
	node   shardmap.NodeID
	key    *crypto.SecretKey
	nonces *Nonces

	// last is the state Watch last returned: the base of the next delta
	// (watch.go).
	mu   sync.Mutex
	last *State
}

var _ Plane = (*Client)(nil)

// NewClient talks to the control plane through conn; node requests are
// signed by key as node (both may be zero for a caller that reports
// nothing), with nonces from NewNonces(nil) unless an option says.
func NewClient(conn *grpc.ClientConn, node shardmap.NodeID, key *crypto.SecretKey, opts ...ClientOption) *Client {
	c := &Client{conn: conn, node: node, key: key}
	for _, o := range opts {
		o(c)
	}
	if c.nonces == nil {
		c.nonces = NewNonces(nil)
	}
	return c
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithNonces signs node requests with nonces from n: a storage node passes
// the durable nonces it also signs its shard-sync requests with.
func WithNonces(n *Nonces) ClientOption { return func(c *Client) { c.nonces = n } }

// StateFromProto reads the epoch state as WatchState sends it.
func StateFromProto(resp *weftv1.WatchStateResponse) (State, error) {
	if len(resp.Holders) != len(resp.Owners) {
		return State{}, fmt.Errorf("control: state %d names %d owners and %d holders", resp.Index, len(resp.Owners), len(resp.Holders))
	}
	s := State{Index: resp.Index, Epoch: resp.Epoch}
	if len(resp.Owners) > 0 {
		s.Owners, s.Holders = NodeIDs(resp.Owners), NodeIDs(resp.Holders)
	}
	return s, nil
}

// Events implements Plane.
func (c *Client) Events(ctx context.Context, after uint64, limit int, timeout time.Duration) ([]Event, error) {
	resp, err := weftv1.NewWatchClient(c.conn).Events(ctx, &weftv1.EventsRequest{
		AfterIndex: after, Limit: uint32(limit), TimeoutMs: uint32(timeout.Milliseconds()),
	}, grpc.MaxCallRecvMsgSize(MaxEventsPage))
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(resp.Events))
	for i, pe := range resp.Events {
		out[i] = EventFromProto(pe)
	}
	return out, nil
}

// Committee implements Plane.
func (c *Client) Committee(ctx context.Context, epoch uint64) (*Committee, error) {
	resp, err := weftv1.NewClientClient(c.conn).GetCommittee(ctx, &weftv1.GetCommitteeRequest{Epoch: epoch})
	if err != nil {
		return nil, err
	}
	if epoch != 0 && resp.Epoch != epoch {
		return nil, fmt.Errorf("control: asked for the committee of epoch %d, got epoch %d", epoch, resp.Epoch)
	}
	return CommitteeFromProto(resp)
}

// BlobStatus implements Plane.
func (c *Client) BlobStatus(ctx context.Context, id crypto.BlobID) (*weftv1.BlobStatusResponse, error) {
	return weftv1.NewClientClient(c.conn).BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: id[:]})
}

// ListCertified implements Plane: in blob ID order.
func (c *Client) ListCertified(ctx context.Context, beforeEpoch uint64, after crypto.BlobID, limit int) ([]crypto.BlobID, bool, error) {
	blobs, more, err := c.listCertified(ctx, beforeEpoch, after, limit, false)
	if err != nil {
		return nil, false, err
	}
	ids := make([]crypto.BlobID, len(blobs))
	for i, b := range blobs {
		ids[i] = b.ID
	}
	return ids, more, nil
}

// Challenge implements Plane.
func (c *Client) Challenge(ctx context.Context, round uint64) (*weftv1.GetChallengeResponse, error) {
	return weftv1.NewClientClient(c.conn).GetChallenge(ctx, &weftv1.GetChallengeRequest{Round: round})
}

// Report implements Plane, with the client's nonces (Nonces: they grow
// whatever the clock does).
func (c *Client) Report(ctx context.Context, epoch uint64, req NodeRequest) error {
	if c.key == nil {
		return fmt.Errorf("control: no key to sign a node request with")
	}
	m, err := methodOf(req)
	if err != nil {
		return err
	}
	nonce, err := c.nonces.Next()
	if err != nil {
		return err
	}
	if err := m.sign(c.key, c.node, epoch, nonce); err != nil {
		return err
	}
	return m.send(ctx, weftv1.NewNodeClient(c.conn))
}

// CertifiedBlob is a live certified blob as ListCertified pages it.
type CertifiedBlob struct {
	ID    crypto.BlobID
	Epoch uint64 // the epoch it was certified in
}

// ListCertifiedBlobs implements Plane. The pages come in certification
// order (by epoch); `after` is the last blob of the previous page.
func (c *Client) ListCertifiedBlobs(ctx context.Context, beforeEpoch uint64, after crypto.BlobID, limit int) ([]CertifiedBlob, bool, error) {
	return c.listCertified(ctx, beforeEpoch, after, limit, true)
}

func (c *Client) listCertified(ctx context.Context, beforeEpoch uint64, after crypto.BlobID, limit int, inCertOrder bool) ([]CertifiedBlob, bool, error) {
	req := &weftv1.ListCertifiedRequest{BeforeEpoch: beforeEpoch, Limit: uint32(limit), InCertificationOrder: inCertOrder}
	if after != (crypto.BlobID{}) {
		req.After = after[:]
	}
	page, err := weftv1.NewClientClient(c.conn).ListCertified(ctx, req)
	if err != nil {
		return nil, false, err
	}
	blobs := make([]CertifiedBlob, 0, len(page.Blobs))
	for _, b := range page.Blobs {
		if len(b.BlobId) != crypto.DigestSize {
			return nil, false, fmt.Errorf("control: ListCertified sent a %d-byte blob ID", len(b.BlobId))
		}
		blobs = append(blobs, CertifiedBlob{ID: crypto.BlobID(b.BlobId), Epoch: b.CertifiedEpoch})
	}
	return blobs, page.More, nil
}
