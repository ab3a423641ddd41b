package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// The registry states of a blob (BlobStatus.Status).
const (
	StatusRegistered = "registered"
	StatusCertified  = "certified"
	StatusInvalid    = "invalid"
	StatusExpired    = "expired"
	StatusDeleted    = "deleted" // its last object was deleted (issue #21)
)

// BlobStatus is a blob's registry entry at the control plane.
type BlobStatus struct {
	ID              crypto.BlobID
	Status          string // registered, certified, invalid, expired or deleted
	Encoding        coding.Encoding
	Shards          uint32
	Length          uint64
	EndEpoch        uint64 // the blob lives through EndEpoch−1
	RegisteredEpoch uint64
	CertifiedEpoch  uint64              // 0 until certified
	Certificate     *crypto.Certificate // nil until certified
	// Objects counts the live blob objects that keep it. The certificate
	// promises availability until PermanentEndEpoch (the latest end epoch
	// of a permanent object); past that, only while some deletable object
	// lives. Deleting: no object keeps it any more, and the nodes drop it
	// at EndEpoch's start (Status then "deleted").
	Objects           int
	PermanentEndEpoch uint64
	Deleting          bool
	// ContentType is the content type its objects name, when they agree.
	ContentType string
}

// Status returns a blob's registry entry; ErrNotFound when the control
// plane does not know the blob.
func (c *Client) Status(ctx context.Context, id crypto.BlobID) (*BlobStatus, error) {
	var resp *weftv1.BlobStatusResponse
	err := c.controlCall(ctx, "BlobStatus", func(ctx context.Context, conn *grpc.ClientConn) error {
		if err := c.caughtUp(ctx, conn); err != nil {
			return err
		}
		var err error
		resp, err = weftv1.NewClientClient(conn).BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: id[:]})
		if status.Code(err) == codes.NotFound || (err == nil && resp.Status == StatusRegistered) {
			// This voter may lag (another client may have just stored or
			// certified the blob, through the leader; a follower applies
			// it a heartbeat later): ask again once it has applied what
			// is committed. If it cannot learn what is committed (no
			// leader), its answer may be stale: the call moves on to
			// another voter, or is tried again, rather than return it.
			if err := catchUpCommitted(ctx, conn); err != nil {
				return err
			}
			resp, err = weftv1.NewClientClient(conn).BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: id[:]})
		}
		return err
	})
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	st := &BlobStatus{
		ID: id, Status: resp.Status, Encoding: coding.Encoding(resp.Encoding), Shards: resp.Shards, Length: resp.Length,
		EndEpoch: resp.EndEpoch, RegisteredEpoch: resp.RegisteredEpoch, CertifiedEpoch: resp.CertifiedEpoch,
		Objects: int(resp.Objects), PermanentEndEpoch: resp.PermanentEndEpoch, Deleting: resp.Deleting, ContentType: resp.ContentType,
	}
	if len(resp.Certificate) > 0 {
		var cert crypto.Certificate
		if err := cert.UnmarshalBinary(resp.Certificate); err != nil {
			return nil, fmt.Errorf("client: certificate of %s in the registry: %w", id, err)
		}
		st.Certificate = &cert
	}
	return st, nil
}

// Err maps a registry entry to the typed error a read of the blob returns
// (ErrInvalidBlob, ErrExpired, ErrDeleted, ErrNotCertified), or nil when the blob is
// certified. Callers that ask Status before a read of their own (the HTTP
// gateway's HEAD, or a GET served from its cache) answer with it as Read
// would.
func (st *BlobStatus) Err() error {
	switch st.Status {
	case StatusCertified:
		return nil
	case StatusInvalid:
		return fmt.Errorf("%w: %s", ErrInvalidBlob, st.ID)
	case StatusExpired:
		return fmt.Errorf("%w: %s (end epoch %d)", ErrExpired, st.ID, st.EndEpoch)
	case StatusDeleted:
		return fmt.Errorf("%w: %s (its last object was deleted; dropped at epoch %d)", ErrDeleted, st.ID, st.EndEpoch)
	case StatusRegistered:
		return fmt.Errorf("%w: %s (registered in epoch %d)", ErrNotCertified, st.ID, st.RegisteredEpoch)
	}
	return fmt.Errorf("client: blob %s has unknown status %q", st.ID, st.Status)
}

// Verify checks an availability certificate against the committee of its
// epoch: the right message type and epoch, signers who own a write quorum
// of shards, and one aggregate signature check. nil means valid; the
// error says what is wrong.
func Verify(cert *crypto.Certificate, view *crypto.CommitteeView) error {
	if cert == nil || view == nil {
		return errors.New("verify: a certificate and a committee are both needed")
	}
	if cert.Epoch != view.Epoch() {
		return fmt.Errorf("verify: certificate of epoch %d given the committee of epoch %d: %w", cert.Epoch, view.Epoch(), crypto.ErrWrongEpoch)
	}
	if err := cert.VerifyAvailability(view); err != nil {
		return fmt.Errorf("verify: certificate for blob %s of epoch %d is not valid: %w", cert.BlobID, cert.Epoch, err)
	}
	return nil
}

// VerifyCertificate verifies a certificate against its epoch's committee
// as the control plane records it.
func (c *Client) VerifyCertificate(ctx context.Context, cert *crypto.Certificate) error {
	view, err := c.Committee(ctx, cert.Epoch)
	if err != nil {
		return err
	}
	return Verify(cert, view)
}

// SignedWeight returns the shards a certificate's signers own in view,
// for reports; members beyond the view are ignored (Verify refuses them).
func SignedWeight(cert *crypto.Certificate, view *crypto.CommitteeView) uint64 {
	var w uint64
	for _, i := range cert.SignerIndices() {
		if i < view.Size() {
			_, weight := view.Member(i)
			w += uint64(weight)
		}
	}
	return w
}

// wrote records the index a write of this client made.
func (c *Client) wrote(index uint64) {
	for {
		cur := c.written.Load()
		if index <= cur || c.written.CompareAndSwap(cur, index) {
			return
		}
	}
}

// caughtUp waits (a blocking watch, at most a few seconds) until the voter
// behind conn has applied this client's latest write.
func (c *Client) caughtUp(ctx context.Context, conn *grpc.ClientConn) error {
	index := c.written.Load()
	if index == 0 {
		return nil
	}
	return waitApplied(ctx, conn, index)
}

// waitApplied waits (a blocking watch, at most a few seconds) until the
// voter behind conn has applied index. The watch returns at its timeout
// whether or not the voter got there: one still behind is Unavailable, so
// that the call moves on to another voter instead of answering from a
// state that lacks the write.
func waitApplied(ctx context.Context, conn *grpc.ClientConn, index uint64) error {
	st, err := weftv1.NewWatchClient(conn).WatchState(ctx, &weftv1.WatchStateRequest{AfterIndex: index - 1, TimeoutMs: 5000})
	if err != nil {
		return err
	}
	if st.Index < index {
		return status.Errorf(codes.Unavailable, "this voter has applied index %d, not yet %d", st.Index, index)
	}
	return nil
}

// catchUpCommitted waits until the voter behind conn has applied every
// entry committed now: a linearizable watch learns the committed index
// (leader check and read barrier), a plain one waits for it here.
func catchUpCommitted(ctx context.Context, conn *grpc.ClientConn) error {
	w := weftv1.NewWatchClient(conn)
	now, err := w.WatchState(ctx, &weftv1.WatchStateRequest{Linearizable: true})
	if err != nil || now.Index == 0 {
		return err
	}
	return waitApplied(ctx, conn, now.Index)
}
